"""Synthetic cached features for the benchmarks: ``.npy`` files written straight into a cache
folder (no audio decoded), and the recordings / extraction result pointing at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cultural_music.features.cache import FeatureCache
from cultural_music.data.dataset import Recording
from cultural_music.features.extract import ExtractResult, FeatureEntry


def make_cache(root: Path, *, n_clips: int, n_mels: int = 128, frames: int = 1292, n_variants: int = 2,
               n_classes: int = 10, split: str = "train", seed: int = 0,
               write: bool = True) -> tuple[list[Recording], ExtractResult]:
    """``n_clips`` one-clip files (plus ``n_variants`` augmented copies each) in a cache under ``root``
    (``write=False``: only the entries, for files written before)."""
    cache = FeatureCache(root)
    g = np.random.default_rng(seed)
    recs, result = [], ExtractResult()
    base = g.random((n_mels, frames), dtype=np.float32)
    for i in range(n_clips):
        sha = f"{i:064x}"
        clean = cache.path("bench0000000000", sha)
        aug = cache.path("bench0000000000", sha, "aug0000000000000") if n_variants else None
        if write:
            x = np.roll(base, i, axis=1)[None]
            cache.store(clean, x)
            if aug is not None:
                cache.store(aug, np.stack([x * 0.9] * n_variants))
        rel = f"c{i % n_classes}/f{i:05d}.wav"
        recs.append(Recording(Path("/nonexistent") / rel, rel, f"c{i % n_classes}", str(i), split))
        result.entries[rel] = FeatureEntry(rel, sha, 1, 30.0, clean, aug, n_variants)
    return recs, result
