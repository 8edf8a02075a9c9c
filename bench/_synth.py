"""Synthetic data for the benchmarks: chord recordings written as audio files, and cached
features (``.npy`` files written straight into a cache folder, no audio decoded) with the
recordings / extraction result pointing at them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cultural_music.features.cache import FeatureCache
from cultural_music.data.dataset import Recording
from cultural_music.features.extract import ExtractResult, FeatureEntry


def write_chords(folder: Path, n: int, seconds: float, *, sr: int, name: Callable[[int], str],
                 harmonics: tuple[int, ...] = (1, 2, 3), random_phase: bool = False, stereo: bool = False) -> list[Path]:
    """``n`` audio files ``folder/name(i)`` of ``seconds`` s at ``sr`` Hz: a chord (random
    fundamental 100..400 Hz, amplitude 0.2/k for each harmonic k, random phases if
    ``random_phase``) plus noise of std 0.02; ``stereo``: the noisy chord left, the clean chord
    x 0.8 right (``(samples, 2)``).  ``.mp3`` names are written as MP3, others by their extension;
    seeded, so every run writes the same files."""
    import soundfile as sf

    g = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        f0 = g.uniform(100, 400)
        y = sum(0.2 / k * np.sin(2 * np.pi * f0 * k * t + (g.uniform(0, 6) if random_phase else 0.0)) for k in harmonics)
        noisy = y + 0.02 * g.standard_normal(len(t))
        p = folder / name(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), (np.stack([noisy, y * 0.8], axis=1) if stereo else noisy).astype(np.float32), sr,
                 **({"format": "MP3"} if p.suffix == ".mp3" else {}))
        paths.append(p)
    return paths


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
