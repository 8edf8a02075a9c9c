"""Export a model folder's network to ``model.onnx`` (run it with onnxruntime, no torch).

The graph is the WHOLE network: it takes the network's input ``(batch, 1, rows, frames)`` named
``features`` and returns logits ``(batch, n_classes)`` named ``logits``.  For the log-mel kinds
the input is the model's features (``rows`` = mel bands).  For embedding models (a frozen
pretrained backbone + head, whose training features are cached embeddings) the input is the
backbone's own input: for ``musicnn`` the musicnn log-mel ``(batch, 1, 96, frames)`` computed by
numpy code, for ``yamnet`` and ``fusion`` the 16 kHz waveform ``(batch, 1, samples)`` (their front
ends are in the graph, :mod:`~cultural_music.inference.waveform_net`); the
graph cuts it into the same 3 s patches as :func:`~cultural_music.backbones.musicnn.embed_logmels`,
runs the backbone and the head, so ONNX prediction needs neither torch nor the cached
embeddings (metadata ``input_kind`` names the input).  The batch axis
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

from cultural_music import __version__
from cultural_music.training.artifact import load_artifact
from cultural_music.config import MUSICNN_EMBEDDING_DIM, Config
from cultural_music.atomic import atomic_path
from cultural_music.errors import CulturalMusicError, OutputError
from cultural_music.metrics.classification import softmax
from cultural_music.inference.classifier import ONNX_FILE
from cultural_music.inference.onnx_backend import WAVEFORM, network_input_config, network_input_kind

__all__ = ["ONNX_FILE", "export_onnx", "exportable", "WholeNetwork"]

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


class WholeNetwork(nn.Module):
    """Backbone + head as one module: musicnn log-mel clips in, logits out.

    Parameters
    ----------
    backbone
        The frozen musicnn backbone (``embedding``: ``(patches, 187, 96)`` -> ``(patches, 1506)``).
    head
        The model trained on cached embeddings ``(batch, 1, 1506, patches)``.
    frames
        Log-mel frames of one clip (fixed by the model's clip length).

    The patches are :func:`~cultural_music.backbones.musicnn.covering_patches` with the
    ``covering_index(frames)`` kept as a buffer (fixed frame indices, repeat padding included).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, frames: int) -> None:
        super().__init__()
        from cultural_music.backbones.musicnn import covering_index

        self.backbone, self.head = backbone, head
        index = covering_index(frames)
        self.register_buffer("index", torch.from_numpy(index.astype(np.int64)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, 96, frames)`` log-mel -> ``(batch, n_classes)`` logits."""
        from cultural_music.backbones.musicnn import covering_patches

        n, p = x.shape[0], self.index.shape[0]
        patches = covering_patches(x[:, 0].transpose(1, 2), self.index)  # (batch * p, 187, 96)
        # sizes spelt out (not -1): the exporter needs a known channel count for the head's norm
        emb = self.backbone.embedding(patches).reshape(n, p, MUSICNN_EMBEDDING_DIM).transpose(1, 2)  # (batch, 1506, patches)
        return self.head(emb[:, None])


def _network(art: Any, cfg: Config) -> tuple[nn.Module, tuple[int, ...]]:
    """The module to export, and the shape of one input item (``(1, rows, frames)``, or
    ``(1, samples)`` for a waveform input)."""
    from cultural_music.features.compute import compute_features

    if network_input_kind(cfg) == WAVEFORM:
        from cultural_music.inference.waveform_net import waveform_network

        return waveform_network(art.model, cfg), (1, cfg.audio.clip_samples)
    net_cfg = network_input_config(cfg)
    rows, frames = compute_features(np.zeros((1, cfg.audio.clip_samples), dtype=np.float32), net_cfg).shape[1:]
    if net_cfg is cfg:
        return art.model, (1, rows, frames)
    from cultural_music.backbones.musicnn import pretrained

    return WholeNetwork(pretrained(cfg.features.backbone), art.model, frames).eval(), (1, rows, frames)


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

    art = load_artifact(model_dir)
    cfg = art.config
    whole, item = _network(art, cfg)
    example = torch.zeros(2, *item)
    net = exportable(whole, example)
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
                 "input_shape": ",".join(["batch", *map(str, item)]), "input_kind": network_input_kind(cfg),
                 "package_version": __version__}
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        try:
            onnx.save(proto, str(tmp))
        except OSError as err:
            raise OutputError(f"{target}: cannot write ({err.strerror or err})") from err
        diff = _parity(whole, tmp, item, waveform=network_input_kind(cfg) == WAVEFORM) if check else None
        if diff is not None and diff > PARITY_TOLERANCE:
            raise CulturalMusicError(f"{target}: ONNX probabilities differ from PyTorch by {diff:.2g} "
                                     f"(> {PARITY_TOLERANCE}); file not written")
    return {"path": str(target), "frames": item[-1], "max_abs_diff": diff}


def _parity(model: nn.Module, onnx_path: Path, item: tuple[int, ...], *, waveform: bool) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    g = np.random.default_rng(0)
    worst = 0.0
    for n in (1, 3):
        if waveform:  # noise and a tone, in [-1, 1]
            t = np.arange(item[-1], dtype=np.float32) / 16000
            x = (0.2 * g.standard_normal((n, *item)) + 0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        else:
            x = 4 * g.random((n, *item), dtype=np.float32)  # beyond 0..1: log-mels of the musicnn kinds reach ~5
        with torch.no_grad():
            ref = softmax(model(torch.from_numpy(x)).numpy())
        got = softmax(session.run(None, {"features": x})[0])
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst
