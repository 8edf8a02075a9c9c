"""ONNX Runtime for the packaged, frozen backbones' patch embeddings (feature extraction).

The packaged networks (``"MSD_musicnn"``, ``"MTT_musicnn"``, ``"yamnet"``) are exported once per
machine to ONNX (``torch.onnx.export``, TorchScript exporter, opset :data:`OPSET`, dynamic batch
axis; the graph is the network's ``embedding``: musicnn ``(b, 187, 96) -> (b, 1506)``, YAMNet
``(b, 96, 64) -> (b, 1024)``) and run by ONNX Runtime: 2.6x (musicnn) and 1.6x (YAMNet) the
patches/s of torch with one thread here (``bench/archive.py --sections runtime``).

- Stored in ``$CULTURAL_MUSIC_BACKBONE_DIR`` (default ``$XDG_CACHE_HOME/cultural-music/backbones``,
  or ``~/.cache/...``), the file name keyed by the packaged weights' SHA-256, the torch version
  and the opset, written atomically, with a JSON beside it (weights SHA-256, the .onnx file's
  own SHA-256, versions).  A stored file whose SHA-256 is not its JSON's (damaged, or half
  written by another process) is exported again; an unwritable folder only costs the export
  in every process.
- Checked, on the first session of a process, against torch on a fixed seeded probe batch:
  ``max |ort - torch| <= 1e-5 * max |torch|`` (:data:`PARITY`), else one warning and torch.
- Sessions: intra-op threads = ``torch.get_num_threads()`` when created (feature workers run one
  thread), one inter-op thread, sequential; cached per process per (name, threads), made lazily
  in the process that runs them (pool and Ray workers), never pickled.
- Chosen by ``$CULTURAL_MUSIC_BACKBONE_RUNTIME``: ``auto`` (default: ONNX Runtime when ``onnx`` is
  installed, ``onnxruntime`` imports and the export and parity check succeed, else torch),
  ``onnxruntime`` (an error when it cannot be used), ``torch``.

ONNX Runtime and torch agree to about 2e-6 of the largest embedding value, so the feature cache
keys do not name the runtime: cached embeddings of either serve both.

This module imports neither ``musicnn`` nor ``yamnet`` (they call it): the caller passes the
frozen network, marked by :func:`mark_packaged`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cultural_music.atomic import atomic_path, atomic_write_json
from cultural_music.backbones.packaged import WEIGHTS_SHA256
from cultural_music.config import MUSICNN_BACKBONES, MUSICNN_N_MELS, MUSICNN_PATCH_FRAMES, YAMNET
from cultural_music.errors import CulturalMusicError, OutputError, ParameterError

__all__ = [
    "RUNTIME_ENV", "DIR_ENV", "RUNTIMES", "OPSET", "PARITY", "INSTALL_HINT", "BATCH_SIZES",
    "EmbeddingSession", "embedding_session", "session_for", "runtime_choice", "backbone_dir",
    "mark_packaged", "clear_sessions",
]  # fmt: skip

RUNTIME_ENV = "CULTURAL_MUSIC_BACKBONE_RUNTIME"
DIR_ENV = "CULTURAL_MUSIC_BACKBONE_DIR"
RUNTIMES = ("auto", "onnxruntime", "torch")
OPSET = 17
PARITY = 1e-5  #: max |ort - torch| allowed, relative to max |torch| on the probe batch
INSTALL_HINT = "pip install 'cultural-music[onnx]'"
#: patches per ONNX Runtime call, the fastest measured with one thread (bench/archive.py)
BATCH_SIZES = {**{name: 4 for name in MUSICNN_BACKBONES}, YAMNET: 4}
#: the input of one patch, (frames, mels)
PATCH_SHAPES = {**{name: (MUSICNN_PATCH_FRAMES, MUSICNN_N_MELS) for name in MUSICNN_BACKBONES}, YAMNET: (96, 64)}

log = logging.getLogger(__name__)
_PACKAGED: dict[str, Any] = {}  # name -> the frozen packaged instance (mark_packaged)
_SESSIONS: dict[tuple[str, int], "EmbeddingSession"] = {}
_REFUSED: set[tuple[str, int]] = set()  # (name, threads) that fell back to torch (warned once)
_OWNER = [os.getpid()]  # sessions belong to the process that made them (not to a fork)


class EmbeddingSession:
    """An ONNX Runtime session computing a packaged backbone's patch embeddings.

    ``run(x)``: float32 ``(b, frames, mels)`` patches -> float32 ``(b, dim)`` embeddings, the same
    as the torch module's ``embedding`` (to :data:`PARITY`).  ``batch_size`` is the patches per
    call that measured fastest; ``path`` the stored ``.onnx`` file (None when it could not be
    stored).
    """

    def __init__(self, name: str, session: Any, threads: int, path: Path | None) -> None:
        self.name, self.threads, self.path = name, threads, path
        self.batch_size = BATCH_SIZES[name]
        self._session = session
        self._input = session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """``(b, frames, mels)`` -> ``(b, dim)`` float32 embeddings."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self._session.run(None, {self._input: x})[0]

    def __reduce__(self) -> Any:
        raise TypeError("an EmbeddingSession is made in the process that runs it; it is not pickled")


def mark_packaged(network: Any, name: str) -> Any:
    """Mark ``network`` as the frozen packaged backbone ``name`` (done by ``pretrained()`` /
    ``pretrained_yamnet()``); only that very instance runs on ONNX Runtime (not a copy, which
    may be trained).  Returns ``network``."""
    _PACKAGED[name] = network
    return network


def runtime_choice() -> str:
    """``$CULTURAL_MUSIC_BACKBONE_RUNTIME``: ``"auto"`` (unset or empty), ``"onnxruntime"`` or
    ``"torch"``; another value is a :class:`ParameterError`."""
    value = os.environ.get(RUNTIME_ENV, "").strip().lower() or "auto"
    if value not in RUNTIMES:
        raise ParameterError(f"The {RUNTIME_ENV} environment variable must be one of {list(RUNTIMES)}. "
                             f"Got {os.environ[RUNTIME_ENV]!r} instead.")
    return value


def backbone_dir() -> Path:
    """Folder of the exported backbones: ``$CULTURAL_MUSIC_BACKBONE_DIR``, default
    ``$XDG_CACHE_HOME/cultural-music/backbones`` (or ``~/.cache/cultural-music/backbones``)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cultural-music" / "backbones"


def clear_sessions() -> None:
    """Forget this process's sessions and fallbacks (the next use loads and checks again)."""
    _SESSIONS.clear()
    _REFUSED.clear()


def session_for(network: Any) -> EmbeddingSession | None:
    """The session to use for ``network``'s embeddings, or None for torch.

    None when ``network`` is not the marked packaged backbone (:func:`mark_packaged`) in eval mode with frozen weights
    (e.g. one being fine-tuned), when ``$CULTURAL_MUSIC_BACKBONE_RUNTIME`` is ``torch``, or (``auto``)
    when ONNX Runtime is missing or its export or parity check fails (one log line per process).

    Raises
    ------
    CulturalMusicError
        The runtime is forced to ``onnxruntime`` and it cannot be used (the message names the
        extra to install, or what failed).
    """
    name = next((n for n, net in _PACKAGED.items() if net is network), None)
    if name is None or network.training or any(p.requires_grad for p in network.parameters()):
        return None
    choice = runtime_choice()
    if choice == "torch":
        return None
    _forget_if_forked()
    key = (name, _torch_threads())
    if key in _SESSIONS or choice == "onnxruntime":
        return embedding_session(name, network)
    if key in _REFUSED:
        return None
    try:
        return embedding_session(name, network)
    except CulturalMusicError as err:
        _REFUSED.add(key)
        level = logging.DEBUG if isinstance(err, _Unavailable) else logging.WARNING
        log.log(level, "%s embeddings run on torch: %s", name, err)
        return None


class _Unavailable(CulturalMusicError):
    """onnx or onnxruntime does not import (auto: torch, silently but for a debug line)."""


def embedding_session(name: str, network: Any) -> EmbeddingSession:
    """The ONNX Runtime session of packaged backbone ``name``, made once per process per torch
    thread count (exported on first use on this machine, checked against torch once).

    Parameters
    ----------
    name
        ``"MSD_musicnn"``, ``"MTT_musicnn"`` or ``"yamnet"``.
    network
        Its frozen torch module (``pretrained(name)`` / ``pretrained_yamnet()``): what is exported
        and what the parity check compares with.

    Raises
    ------
    CulturalMusicError
        onnx / onnxruntime missing (names the ``onnx`` extra), export failed, or the parity
        check failed.
    """
    if name not in PATCH_SHAPES:
        raise ParameterError(f"The 'name' parameter of embedding_session must be one of {list(PATCH_SHAPES)}. "
                             f"Got {name!r} instead.")
    _forget_if_forked()
    key = (name, _torch_threads())
    if key not in _SESSIONS:
        ort = _import_ort()
        data, path = _stored_or_exported(name, network)
        session = EmbeddingSession(name, _ort_session(ort, data, key[1]), key[1], path)
        _check_parity(session, network)
        _SESSIONS[key] = session
    return _SESSIONS[key]


def _torch_threads() -> int:
    return int(torch.get_num_threads())


def _forget_if_forked() -> None:
    if _OWNER[0] != os.getpid():
        _OWNER[0] = os.getpid()
        clear_sessions()


def _import_ort() -> Any:
    try:
        import onnxruntime

        if importlib.util.find_spec("onnx") is None:  # the exporter needs it; imported (0.8 s) only to export
            raise ImportError("No module named 'onnx'")
    except (ImportError, OSError) as err:  # OSError: a shared library that does not load
        raise _Unavailable(f"ONNX Runtime for the backbones needs onnx and onnxruntime ({err}): {INSTALL_HINT}, "
                           f"or set {RUNTIME_ENV}=torch") from err
    return onnxruntime


def _ort_session(ort: Any, data: bytes, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types: any means torch
        raise CulturalMusicError(f"ONNX Runtime cannot load the exported backbone ({type(err).__name__}: {err})") from err


def _file_stem(name: str) -> str:
    weights = WEIGHTS_SHA256[f"{name}.safetensors"]
    return f"{name}-{weights[:16]}-torch{torch.__version__}-opset{OPSET}"


def _stored_or_exported(name: str, network: Any) -> tuple[bytes, Path | None]:
    """The ``.onnx`` bytes of ``name``: the stored file when its SHA-256 matches its JSON, else
    a new export, stored (atomically) when the folder is writable.  Returns (bytes, stored path)."""
    path = backbone_dir() / f"{_file_stem(name)}.onnx"
    meta_path = path.with_suffix(".json")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = path.read_bytes()  # read once: the hash checked is of the bytes loaded
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta["onnx_sha256"] == hashlib.sha256(data).hexdigest() and meta["weights_sha256"] == WEIGHTS_SHA256[f"{name}.safetensors"]:
            return data, path
    data = _export_bytes(name, network)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        atomic_write_json(meta_path, _metadata(name, data))
    except OutputError as err:
        log.debug("%s: cannot store the ONNX export (%s); it is made again in each process", path, err)
        return data, None
    return data, path


def _metadata(name: str, data: bytes) -> dict[str, Any]:
    import onnxruntime

    return {"backbone": name, "weights_sha256": WEIGHTS_SHA256[f"{name}.safetensors"],
            "onnx_sha256": hashlib.sha256(data).hexdigest(), "opset": OPSET,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _export_bytes(name: str, network: Any) -> bytes:
    """``network.embedding`` exported to ONNX (dynamic batch axis ``batch``), as bytes."""
    wrapper = _EmbeddingGraph(network)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks: shapes are fixed but the batch
            torch.onnx.export(wrapper, (_probe(name, 2),), buf, dynamo=False, opset_version=OPSET,
                              input_names=["patches"], output_names=["embedding"],
                              dynamic_axes={"patches": {0: "batch"}, "embedding": {0: "batch"}})
    except Exception as err:  # noqa: BLE001 - any exporter failure means: use torch
        raise CulturalMusicError(f"{name}: ONNX export of the backbone failed ({type(err).__name__}: {err})") from err
    return buf.getvalue()


class _EmbeddingGraph(torch.nn.Module):
    """``net.embedding`` as ``forward`` (what the exporter traces), in eval mode."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.eval()  # the exporter restores the top module's mode recursively

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embedding(x)


def _probe(name: str, n: int = 3) -> Any:
    """A fixed seeded float32 ``(n, frames, mels)`` tensor in the range of the network's input
    (musicnn log-mel 0..~4, YAMNet log-mel about -7..2)."""
    g = torch.Generator().manual_seed(18)
    x = torch.rand(n, *PATCH_SHAPES[name], generator=g)
    return 4.0 * x if name in MUSICNN_BACKBONES else 9.0 * x - 7.0


def _check_parity(session: EmbeddingSession, network: Any) -> None:
    """Raise :class:`CulturalMusicError` unless ``session`` gives ``network.embedding`` of
    :func:`_probe` to :data:`PARITY`."""
    x = _probe(session.name)
    with torch.inference_mode():
        ref = network.embedding(x).numpy()
    got = session.run(x.numpy())
    diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
    if not diff <= PARITY * float(np.abs(ref).max()):
        raise CulturalMusicError(f"{session.path or session.name}: ONNX Runtime embeddings differ from torch by "
                                 f"{diff:.2e} (allowed {PARITY:g} of {float(np.abs(ref).max()):.3g}); "
                                 f"delete the file or set {RUNTIME_ENV}=torch")
