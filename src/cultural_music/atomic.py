"""Atomic file writes: write a temp file in the target folder, then ``os.replace``.

A crash or a full disk leaves the previous good file (or none), never a half-written one.
OS errors become :class:`~cultural_music.errors.OutputError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cultural_music.errors import OutputError

__all__ = ["atomic_path", "atomic_open", "atomic_write_text", "atomic_write_json", "ensure_dir"]


def ensure_dir(path: str | Path) -> Path:
    """Create a folder (and parents); permission or disk errors become :class:`OutputError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path}: cannot create folder ({err.strerror or err})") from err
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is renamed onto ``path``.

    Use for writers that take a file name (``np.save``, ``safetensors``, ``savefig``).  Pass
    ``suffix`` when the writer infers the format from the extension.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from err
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        os.replace(tmp_path, path)
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from err
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, mode, **kwargs) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise OutputError(f"{path}: cannot write ({err.strerror or err})") from err


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write an object as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
