"""The pretrained weights shipped inside the package (``backbones/weights/*.safetensors``).

Each file is a safetensors state dict in the PyTorch layout of its network, converted once from
the original TensorFlow checkpoint by ``scripts/convert_weights.py`` (see README "Pretrained
weights"; licences and attribution in ``weights/NOTICE`` and ``weights/LICENSE-*``).  Every file is
pinned by its SHA-256 below and checked on each load, so an edited or damaged file is refused
with an error naming it, instead of silently giving wrong embeddings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cultural_music.errors import ModelLoadError, ParameterError

__all__ = ["WEIGHTS_DIR", "WEIGHTS_SHA256", "weights_path", "load_weights"]

WEIGHTS_DIR = Path(__file__).resolve().with_name("weights")

#: file name -> SHA-256 (hex) of the shipped bytes; printed by ``scripts/convert_weights.py``.
WEIGHTS_SHA256: dict[str, str] = {
    "MSD_musicnn.safetensors": "1e333de17aa9c62b3f10164dfd90304ad29ba01f8fb3099d968544b78c1404d4",
    "MTT_musicnn.safetensors": "e9de2ce03f38f5f77f7a06d0ff06fcaf76ddcfa5dde6b9f9213d71fa5ffb1a33",
    "yamnet.safetensors": "cfbaebd9feb100b1c90b4f6263e9428bc4f5a711d8dc3287a30eb7384ffe35f0",
}

_REINSTALL = "reinstall cultural-music (pip install --force-reinstall --no-deps cultural-music)"


def weights_path(name: str) -> Path:
    """Path of the packaged weights file of network ``name`` (e.g. ``"MSD_musicnn"``, ``"yamnet"``)."""
    file = f"{name}.safetensors"
    if file not in WEIGHTS_SHA256:
        names = sorted(f.removesuffix(".safetensors") for f in WEIGHTS_SHA256)
        raise ParameterError(
            f"The 'name' parameter of weights_path must be one of {names}. Got {name!r} instead."
        )
    return WEIGHTS_DIR / file


def load_weights(name: str, path: str | Path | None = None) -> tuple[dict, dict[str, str]]:
    """Read and check the packaged weights of network ``name``.

    Parameters
    ----------
    name
        Network name, a key of :data:`WEIGHTS_SHA256` without ``.safetensors``.
    path
        Read this file instead of the packaged one (still checked against ``name``'s SHA-256).

    Returns
    -------
    tuple
        (state dict: parameter name -> float32 ``torch.Tensor`` in the PyTorch layout,
        safetensors metadata: str -> str, e.g. ``"source"``, ``"license"``, ``"labels"`` as JSON).

    Raises
    ------
    ModelLoadError
        The file is missing or unreadable, or its SHA-256 is not the pinned one.
    """
    from safetensors.torch import load as load_bytes

    file = Path(path) if path is not None else weights_path(name)
    expected = WEIGHTS_SHA256[weights_path(name).name]
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"{file}: cannot read the pretrained {name} weights ({exc.strerror}); {_REINSTALL}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ModelLoadError(
            f"{file}: SHA-256 {digest[:12]}... is not the pinned {expected[:12]}... of the {name} "
            f"weights (edited or damaged file); {_REINSTALL}"
        )
    return load_bytes(data), _metadata(data)


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's JSON header (already SHA-checked)."""
    n = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + n]).get("__metadata__") or {})
