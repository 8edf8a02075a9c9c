"""Export a model folder's network to ``model.onnx`` (run it with onnxruntime, no torch).

The graph takes features ``(batch, 1, rows, frames)`` named ``features`` (``rows`` = mel bands
for the log-mel kinds) and returns logits ``(batch, n_classes)`` named ``logits``; the batch axis
is dynamic, the others are fixed by the model's clip length (prediction feeds whole clips).  Adaptive pooling layers, which the
ONNX exporters cannot translate for sizes that do not divide evenly, are replaced for export by
an exact equivalent with the pooling bins fixed for that input size.  The file records the
SHA-256 of the weights it came from, so a predictor can refuse a stale export.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .artifact import load_artifact
from .atomic import atomic_path
from .errors import CulturalMusicError, OutputError
from .metrics import softmax
from .predict_onnx import ONNX_FILE

__all__ = ["ONNX_FILE", "export_onnx", "exportable"]

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-4


class _FixedBinsPool(nn.Module):
    """Adaptive max/avg pooling with its bins computed once for a known input ``(H, W)``.

    Bins follow PyTorch: bin ``i`` of ``n`` over a length ``L`` spans
    ``[floor(i * L / n), ceil((i + 1) * L / n))``.  Both reductions are separable over a
    rectangle, so pooling rows then columns gives exactly the adaptive result.
    """

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int], mode: str) -> None:
        super().__init__()
        self.rows = _bins(size_in[0], size_out[0])
        self.cols = _bins(size_in[1], size_out[1])
        self.mode = mode

    def _reduce(self, x: torch.Tensor, dim: int, lo: int, hi: int) -> torch.Tensor:
        part = x.narrow(dim, lo, hi - lo)
        return part.amax(dim=dim, keepdim=True) if self.mode == "max" else part.mean(dim=dim, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, H, W)`` -> ``(batch, channels, *size_out)``."""
        x = torch.cat([self._reduce(x, 2, lo, hi) for lo, hi in self.rows], dim=2)
        return torch.cat([self._reduce(x, 3, lo, hi) for lo, hi in self.cols], dim=3)


def _bins(length: int, n: int) -> list[tuple[int, int]]:
    return [(math.floor(i * length / n), math.ceil((i + 1) * length / n)) for i in range(n)]


def _pair(v: Any, like: tuple[int, int]) -> tuple[int, int]:
    v = v if isinstance(v, (tuple, list)) else (v, v)
    return tuple(like[i] if v[i] is None else int(v[i]) for i in range(2))  # type: ignore[return-value]


def exportable(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (eval mode) with every 2-D adaptive pool replaced by :class:`_FixedBinsPool`
    for inputs shaped like ``example``."""
    model = copy.deepcopy(model).eval()
    shapes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(inp[0].shape[-2:])))
             for name, m in model.named_modules() if isinstance(m, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d))]
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    for name, size_in in shapes.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, attr)
        mode = "max" if isinstance(old, nn.AdaptiveMaxPool2d) else "avg"
        setattr(parent, attr, _FixedBinsPool(size_in, _pair(old.output_size, size_in), mode))
    return model


def export_onnx(model_dir: str | Path, *, opset: int = DEFAULT_OPSET, check: bool = True) -> dict[str, Any]:
    """Write ``MODEL_DIR/model.onnx`` (atomically) and check it against PyTorch.

    Parameters
    ----------
    model_dir
        A model folder written by training.
    opset
        ONNX opset version.
    check
        Run the file with onnxruntime on random features (batch sizes 1 and 3) and require every
        probability to match PyTorch within :data:`PARITY_TOLERANCE`.

    Returns
    -------
    dict
        ``path``, ``frames`` and ``max_abs_diff`` (largest probability difference, or None).

    Raises
    ------
    CulturalMusicError
        The network cannot be exported, or the exported file disagrees with PyTorch.
    """
    import onnx

    from .features import compute_features

    art = load_artifact(model_dir)
    cfg = art.config
    rows, frames = compute_features(np.zeros((1, cfg.audio.clip_samples), dtype=np.float32), cfg).shape[1:]
    example = torch.zeros(2, 1, rows, frames)
    net = exportable(art.model, example)
    target = Path(model_dir) / ONNX_FILE
    with atomic_path(target, suffix=".onnx") as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (example,), str(tmp), dynamo=False, input_names=["features"], output_names=["logits"],
                                  dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset)
        except RuntimeError as err:  # OnnxExporterError and SymbolicValueError included
            raise CulturalMusicError(f"{model_dir}: cannot export '{art.meta['model']['name']}' to ONNX ({err})") from err
        proto = onnx.load(str(tmp))
        props = {"weights_sha256": art.meta["weights_sha256"], "classes": "\n".join(art.classes),
                 "input_shape": f"batch,1,{rows},{frames}", "package_version": __version__}
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        try:
            onnx.save(proto, str(tmp))
        except OSError as err:
            raise OutputError(f"{target}: cannot write ({err.strerror or err})") from err
        diff = _parity(art.model, tmp, rows, frames) if check else None
        if diff is not None and diff > PARITY_TOLERANCE:
            raise CulturalMusicError(f"{target}: ONNX probabilities differ from PyTorch by {diff:.2g} "
                                     f"(> {PARITY_TOLERANCE}); file not written")
    return {"path": str(target), "frames": frames, "max_abs_diff": diff}


def _parity(model: nn.Module, onnx_path: Path, rows: int, frames: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    g = np.random.default_rng(0)
    worst = 0.0
    for n in (1, 3):
        x = g.random((n, 1, rows, frames), dtype=np.float32)
        with torch.no_grad():
            ref = softmax(model(torch.from_numpy(x)).numpy())
        got = softmax(session.run(None, {"features": x})[0])
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst
