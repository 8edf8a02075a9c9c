"""The model folder: weights in safetensors plus ``model.json`` (labels, settings, summary).

No pickle anywhere: weights are plain tensors, everything else is JSON.  Loading checks that
every file is there and that the weights are the ones ``model.json`` was written for.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cultural_music import __version__
from cultural_music.atomic import atomic_path, atomic_write_json, ensure_dir
from cultural_music.config import Config
from cultural_music.errors import CulturalMusicError, ModelLoadError

if TYPE_CHECKING:  # torch is imported only by the functions that need it
    from torch import nn

__all__ = ["WEIGHTS_FILE", "META_FILE", "SPLIT_FILE", "FORMAT_VERSION", "Artifact", "save_artifact", "load_artifact",
           "read_meta", "checked_split_csv", "file_sha256"]

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
SPLIT_FILE = "split.csv"
FORMAT_VERSION = 1


@dataclass
class Artifact:
    """A loaded model folder: the network (eval mode), its classes, config and metadata."""

    directory: Path
    model: "nn.Module"
    classes: list[str]
    config: Config
    meta: dict[str, Any]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return _sha256(Path(path))


def checked_split_csv(art: Artifact) -> Path:
    """``split.csv`` of a model folder, checked against the SHA-256 recorded in ``model.json``.

    Raises :class:`DatasetError` when the file is missing and :class:`ModelLoadError` when it is
    not the split the model was trained on (e.g. left behind by an interrupted retrain).  A
    folder written before the checksum was recorded (no ``split_sha256``) is not checked.
    """
    from cultural_music.errors import DatasetError

    path = art.directory / SPLIT_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: missing; pass --data DIR to evaluate on a labelled folder")
    want = art.meta.get("split_sha256")
    if want is not None and _sha256(path) != want:
        raise ModelLoadError(f"{path}: not the split this model was trained on (SHA-256 differs from model.json's "
                             "'split_sha256'); retrain into this folder, or pass --data DIR")
    return path


def save_artifact(
    out_dir: str | Path,
    model: "nn.Module",
    *,
    classes: list[str],
    config: Config,
    model_name: str,
    model_kwargs: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``out_dir`` (atomically, weights first).

    ``extra`` entries (training summary, data summary, ...) are stored in ``model.json`` as is.
    """
    from safetensors.torch import save_file

    out = ensure_dir(out_dir)
    weights = out / WEIGHTS_FILE
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(weights, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    meta = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(classes),
        "model": {"name": model_name, "kwargs": dict(model_kwargs or {})},
        "config": config.to_dict(),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256(weights),
        **(extra or {}),
    }
    atomic_write_json(out / META_FILE, meta)
    return out


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """Parse and check ``model.json`` of a model folder."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelLoadError(f"{d}: model folder does not exist (train one with 'cultural-music train DATA_DIR --out {d}')")
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise ModelLoadError(f"{meta_path}: missing; {d} is not a cultural-music model folder")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{meta_path}: must hold a JSON object; got {type(meta).__name__}")
    missing = [k for k in ("classes", "model", "config", "weights_sha256", "format_version") if k not in meta]
    if missing:
        raise ModelLoadError(f"{meta_path}: missing key(s) {missing}")
    _check_meta(meta, meta_path)
    return meta


def _bad(meta_path: Path, field: str, what: str, value: Any) -> ModelLoadError:
    return ModelLoadError(f"{meta_path}: '{field}' must be {what}; got {value!r:.80} (retrain, or restore the file)")


def _check_meta(meta: dict[str, Any], meta_path: Path) -> None:
    """Types and values of the fields loading relies on; each failure names the field."""
    version = meta["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(meta_path, "format_version", "a whole number >= 1", version)
    if version > FORMAT_VERSION:
        raise ModelLoadError(f"{meta_path}: written by a newer cultural-music (format {version}); upgrade cultural-music")
    classes = meta["classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise _bad(meta_path, "classes", "a list of at least 2 non-empty class names", classes)
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise _bad(meta_path, "classes", "a list of distinct class names (duplicates: " + ", ".join(dupes) + ")", classes)
    model = meta["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("kwargs", {}), dict):
        raise _bad(meta_path, "model", 'an object {"name": str, "kwargs": {...}}', model)
    for field in ("weights_sha256", "split_sha256"):
        if field in meta and not (isinstance(meta[field], str) and len(meta[field]) == 64):
            raise _bad(meta_path, field, "a SHA-256 hex digest (64 characters)", meta[field])
    _check_weights_file(meta.get("weights_file", WEIGHTS_FILE), meta_path)
    _check_config_sections(meta["config"], meta_path)


def _check_weights_file(name: Any, meta_path: Path) -> None:
    """Only a file inside the model folder may be read: a plain relative name, no ``..``."""
    from pathlib import PurePosixPath, PureWindowsPath

    ok = isinstance(name, str) and name and "\\" not in name and not PureWindowsPath(name).drive
    parts = PurePosixPath(name).parts if ok else ()
    if not ok or PurePosixPath(name).is_absolute() or ".." in parts or not parts:
        raise _bad(meta_path, "weights_file", "a file name inside the model folder (no absolute path, no '..')", name)


def _check_config_sections(config: Any, meta_path: Path) -> None:
    """Every config section present; audio and features complete (prediction rebuilds its
    features from them, so a default would silently change what the model sees)."""
    import dataclasses

    from cultural_music.config import _SECTIONS, SAVED_DEFAULTS

    if not isinstance(config, dict):
        raise _bad(meta_path, "config", "an object with sections " + ", ".join(_SECTIONS), config)
    for name, section in _SECTIONS.items():
        values = config.get(name)
        if not isinstance(values, dict):
            raise _bad(meta_path, f"config.{name}", "an object (the section is missing)", values)
        if name in ("audio", "features"):
            missing = [f.name for f in dataclasses.fields(section)
                       if f.name not in values and f.name not in SAVED_DEFAULTS.get(name, {})]
            if missing:
                raise ModelLoadError(f"{meta_path}: 'config.{name}' lacks {missing}; retrain, or restore the file")


def load_artifact(model_dir: str | Path) -> Artifact:
    """Load and verify a model folder; the network is returned in eval mode.

    Raises
    ------
    ModelLoadError
        Missing folder or file, invalid JSON, weights edited after saving (checksum mismatch),
        or weights that do not fit the recorded architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cultural_music.models import build_model

    d = Path(model_dir)
    meta = read_meta(d)
    weights = d / meta.get("weights_file", WEIGHTS_FILE)
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: weights file missing")
    if _sha256(weights) != meta["weights_sha256"]:
        raise ModelLoadError(f"{weights}: checksum does not match model.json (file edited or corrupted)")
    try:
        config = Config.from_saved(meta["config"])
    except (CulturalMusicError, TypeError, ValueError) as err:
        raise ModelLoadError(f"{d / META_FILE}: 'config' is invalid ({err})") from err
    try:
        model = build_model(meta["model"]["name"], n_classes=len(meta["classes"]), n_rows=config.features.n_rows,
                            **meta["model"].get("kwargs", {}))
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, KeyError, TypeError, CulturalMusicError) as err:
        raise ModelLoadError(f"{d}: cannot rebuild the model ({err})") from err
    model.eval()
    return Artifact(directory=d, model=model, classes=list(meta["classes"]), config=config, meta=meta)

