"""On-disk feature cache: memory-mappable ``.npy`` files keyed by file content and settings.

Layout: ``<root>/<feature_key>/<sha[:2]>/<sha>.npy`` holds the clean features of one file,
float32 ``(n_clips, n_mels, frames)``; ``<root>/<feature_key>/aug-<augment_key>/<sha[:2]>/<sha>.npy``
holds its augmented variants ``(n_variants, n_clips, n_mels, frames)``.  ``feature_key`` hashes
the audio + feature settings, so changing any of them never reuses stale features; the file's
SHA-256 means a renamed file is still a hit and an edited one is a miss.  Entries are written
atomically; an entry that cannot be read back is treated as a miss and rebuilt.

``<root>/files-index.json`` (:class:`FileIndex`) remembers the SHA-256 and duration of files
already hashed, keyed by path and ``stat`` signature, so a rerun neither decodes nor re-hashes
an unchanged file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cultural_music.atomic import atomic_path, atomic_write_text, ensure_dir

__all__ = ["FeatureCache", "FeatureEntry", "FileIndex", "FileSignature", "default_cache_dir", "read_npy_header", "INDEX_NAME"]

INDEX_NAME = "files-index.json"
RACY_SECONDS = 2.0  #: a file changed this recently (s) is not indexed: its mtime may not move on the next edit
_KEY_DIR = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class FeatureEntry:
    """Cached features of one recording: ``clean_path`` holds float32 ``(n_clips, n_mels, frames)``,
    ``aug_path`` (training files only) ``(n_variants, n_clips, n_mels, frames)``; ``duration`` is
    the file's length in seconds, ``sha`` its SHA-256 (hex)."""

    rel_path: str
    sha: str
    n_clips: int
    duration: float
    clean_path: Path
    aug_path: Path | None = None
    n_variants: int = 0


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cultural-music`` (or ``~/.cache/cultural-music``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cultural-music"


_COPY_ROWS = 16  # clips copied per step when assembling a streamed entry


def read_npy_header(fh: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` file open at its start; leaves ``fh``
    at the first data byte.  Raises ``ValueError`` on a bad or unsupported (not 1.0/2.0) header."""
    version = np.lib.format.read_magic(fh)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unsupported .npy version {version}")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(fh)


class FeatureCache:
    """Feature store under one root folder.

    Parameters
    ----------
    root
        Cache folder (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    @property
    def index_path(self) -> Path:
        """Where the :class:`FileIndex` of this cache lives."""
        return self.root / INDEX_NAME

    def path(self, feature_key: str, sha: str, augment_key: str | None = None) -> Path:
        """Where the entry for this content/settings lives (whether or not it exists)."""
        base = self.root / feature_key
        if augment_key is not None:
            base = base / f"aug-{augment_key}"
        return base / sha[:2] / f"{sha}.npy"

    def load(self, path: Path, *, mmap: bool = True, expect_mels: int | None = None) -> np.ndarray | None:
        """The array at ``path`` (memory-mapped by default: only the header is read), or ``None``
        when missing or unreadable (then removed)."""
        if not path.exists():
            return None
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            ok = arr.dtype == np.float32 and arr.ndim >= 3 and arr.shape[-3] > 0
            if ok and expect_mels is not None:
                ok = arr.shape[-2] == expect_mels
        except (OSError, ValueError, EOFError):
            ok = False
        if not ok:
            path.unlink(missing_ok=True)
            return None
        return arr

    def shape(self, path: Path, *, expect_mels: int | None = None) -> tuple[int, ...] | None:
        """Shape of the entry at ``path`` from its header alone (nothing mapped or read beyond
        it), or ``None`` when missing, unreadable or truncated (then removed)."""
        try:
            with open(path, "rb") as fh:
                shape, fortran, dtype = read_npy_header(fh)
                size = fh.tell() + 4 * int(np.prod(shape))
                ok = (dtype == np.float32 and not fortran and len(shape) >= 3 and shape[-3] > 0
                      and os.fstat(fh.fileno()).st_size == size)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, SyntaxError, TypeError):
            ok = False
        if ok and expect_mels is not None:
            ok = shape[-2] == expect_mels
        if not ok:
            path.unlink(missing_ok=True)
            return None
        return tuple(int(n) for n in shape)

    def store(self, path: Path, array: np.ndarray) -> None:
        """Write ``array`` (float32) at ``path`` atomically."""
        ensure_dir(path.parent)
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)

    def store_chunks(self, path: Path, chunks: Iterable[np.ndarray], *, lead: int | None = None) -> tuple[int, ...]:
        """Write chunks ``(k, rows, columns)`` joined along axis 0 at ``path``, streaming.

        Memory stays bounded by one chunk whatever the total (a 3-hour file's features never sit
        in RAM at once): chunks go to a raw temp file, then are copied into the ``.npy`` through
        memory maps; the entry appears atomically.  With ``lead`` the array is stored as
        ``(lead, total // lead, rows, columns)`` (augmented variants one after another).

        Returns the stored shape.
        """
        ensure_dir(path.parent)
        with atomic_path(path, suffix=".npy") as tmp:
            raw = tmp.with_name(tmp.name + ".raw")
            try:
                n, tail = 0, None
                with open(raw, "wb") as fh:
                    for chunk in chunks:
                        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
                        tail, n = chunk.shape[1:], n + chunk.shape[0]
                        fh.write(chunk.tobytes())
                if tail is None or n == 0:
                    raise ValueError(f"{path}: no features to store")
                shape = (n, *tail) if lead is None else (lead, n // lead, *tail)
                src = np.memmap(raw, dtype=np.float32, mode="r", shape=(n, *tail))
                dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
                flat = dst.reshape((n, *tail))
                for i in range(0, n, _COPY_ROWS):
                    flat[i : i + _COPY_ROWS] = src[i : i + _COPY_ROWS]
                dst.flush()
                del src, dst, flat
            finally:
                raw.unlink(missing_ok=True)
        return shape

    def _key_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _KEY_DIR.match(p.name))

    def info(self) -> dict[str, object]:
        """Entry count and size in bytes, in total and per feature key, and indexed files."""
        per_key: dict[str, dict[str, int]] = {}
        for key_dir in self._key_dirs():
            files = list(key_dir.rglob("*.npy"))
            per_key[key_dir.name] = {"entries": len(files), "bytes": sum(p.stat().st_size for p in files)}
        return {
            "root": str(self.root),
            "entries": sum(v["entries"] for v in per_key.values()),
            "bytes": sum(v["bytes"] for v in per_key.values()),
            "indexed_files": len(FileIndex.load(self.index_path)),
            "feature_keys": per_key,
        }

    def clear(self) -> int:
        """Delete every entry and the file index; returns how many ``.npy`` files were removed.

        Only what this cache writes is removed (feature-key folders and the index), so a cache
        folder pointed at by mistake at a folder holding other files loses none of them.
        """
        n = 0
        for key_dir in self._key_dirs():
            n += sum(1 for _ in key_dir.rglob("*.npy"))
            shutil.rmtree(key_dir)
        self.index_path.unlink(missing_ok=True)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()
        return n


@dataclass(frozen=True)
class FileSignature:
    """What ``stat`` says of a file: size (bytes), modification and change times (ns), inode."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str | Path) -> "FileSignature":
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def settled(self, now_ns: int | None = None) -> bool:
        """True when the file last changed more than :data:`RACY_SECONDS` ago, so that a later
        edit is sure to change the signature (file-system clocks are coarse: up to 2 s)."""
        now = time.time_ns() if now_ns is None else now_ns
        return max(self.mtime_ns, self.ctime_ns) < now - int(RACY_SECONDS * 1e9)


class FileIndex:
    """Resolved path -> (signature, SHA-256, duration in seconds) of files already hashed.

    An entry counts only while the file's :class:`FileSignature` is unchanged; anything else is a
    miss and the file is hashed again.  Saved atomically; a corrupt index is treated as empty.
    """

    VERSION = 1

    def __init__(self, path: Path, files: dict[str, list] | None = None) -> None:
        self.path = path
        self.files: dict[str, list] = files or {}
        self._new: dict[str, list] = {}

    @classmethod
    def load(cls, path: str | Path) -> "FileIndex":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = data["files"] if data.get("version") == cls.VERSION else {}
            if not isinstance(files, dict):
                files = {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            files = {}
        return cls(path, files)

    def __len__(self) -> int:
        return len(self.files)

    def get(self, path: str | Path, sig: FileSignature) -> tuple[str, float] | None:
        """``(sha256, duration)`` of ``path`` if indexed with the same signature."""
        row = self.files.get(str(path))
        if not isinstance(row, list) or len(row) != 6 or row[:4] != [sig.size, sig.mtime_ns, sig.ctime_ns, sig.inode]:
            return None
        return str(row[4]), float(row[5])

    def put(self, path: str | Path, sig: FileSignature, sha: str, duration: float) -> None:
        """Remember a hashed file (call :meth:`save` to write)."""
        row = [sig.size, sig.mtime_ns, sig.ctime_ns, sig.inode, sha, float(duration)]
        self.files[str(path)] = row
        self._new[str(path)] = row

    def save(self) -> None:
        """Write new entries, merged into what is on disk now (another run may have added some);
        entries of files that no longer exist are dropped."""
        if not self._new:
            return
        merged = {p: row for p, row in FileIndex.load(self.path).files.items() if os.path.exists(p)}
        merged.update(self._new)
        atomic_write_text(self.path, json.dumps({"version": self.VERSION, "files": merged}, separators=(",", ":")))
        self.files = merged
        self._new = {}
