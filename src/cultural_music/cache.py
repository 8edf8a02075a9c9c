"""On-disk feature cache: memory-mappable ``.npy`` files keyed by file content and settings.

Layout: ``<root>/<feature_key>/<sha[:2]>/<sha>.npy`` holds the clean features of one file,
float32 ``(n_clips, n_mels, frames)``; ``<root>/<feature_key>/aug-<augment_key>/<sha[:2]>/<sha>.npy``
holds its augmented variants ``(n_variants, n_clips, n_mels, frames)``.  ``feature_key`` hashes
the audio + feature settings, so changing any of them never reuses stale features; the file's
SHA-256 means a renamed file is still a hit and an edited one is a miss.  Entries are written
atomically; an entry that cannot be read back is treated as a miss and rebuilt.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .atomic import atomic_path, ensure_dir

__all__ = ["FeatureCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cultural-music`` (or ``~/.cache/cultural-music``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cultural-music"


class FeatureCache:
    """Feature store under one root folder.

    Parameters
    ----------
    root
        Cache folder (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path(self, feature_key: str, sha: str, augment_key: str | None = None) -> Path:
        """Where the entry for this content/settings lives (whether or not it exists)."""
        base = self.root / feature_key
        if augment_key is not None:
            base = base / f"aug-{augment_key}"
        return base / sha[:2] / f"{sha}.npy"

    def load(self, path: Path, *, mmap: bool = True, expect_mels: int | None = None) -> np.ndarray | None:
        """The array at ``path``, or ``None`` when missing or unreadable (then removed)."""
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

    def store(self, path: Path, array: np.ndarray) -> None:
        """Write ``array`` (float32) at ``path`` atomically."""
        ensure_dir(path.parent)
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)

    def info(self) -> dict[str, object]:
        """Entry count and size in bytes, in total and per feature key."""
        per_key: dict[str, dict[str, int]] = {}
        if self.root.exists():
            for key_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
                files = [p for p in key_dir.rglob("*.npy")]
                per_key[key_dir.name] = {"entries": len(files), "bytes": sum(p.stat().st_size for p in files)}
        return {
            "root": str(self.root),
            "entries": sum(v["entries"] for v in per_key.values()),
            "bytes": sum(v["bytes"] for v in per_key.values()),
            "feature_keys": per_key,
        }

    def clear(self) -> int:
        """Delete every entry; returns how many ``.npy`` files were removed."""
        if not self.root.exists():
            return 0
        n = sum(1 for _ in self.root.rglob("*.npy"))
        shutil.rmtree(self.root)
        return n
