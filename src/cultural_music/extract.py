"""Turn recordings into cached features, in parallel processes, skipping and reporting bad files.

For every recording: hash its bytes, look the features up in the :class:`FeatureCache`, and only
on a miss decode it (streaming), cut clips and compute log-mels.  Training recordings also get
``cfg.augment.n_variants`` augmented copies, drawn from a generator seeded by
``(seed, file hash)`` so the result does not depend on worker order.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from .audio import audio_info, iter_clips
from .cache import FeatureCache
from .config import Config
from .dataset import Recording, Skipped, file_sha256
from .errors import AudioLoadError
from .features import compute_features

__all__ = ["FeatureEntry", "ExtractResult", "extract_features", "default_workers"]

_BATCH = 8  # clips per log-mel call: bounds memory for long files


@dataclass(frozen=True)
class FeatureEntry:
    """Cached features of one recording: ``clean_path`` holds ``(n_clips, n_mels, frames)``,
    ``aug_path`` (training only) ``(n_variants, n_clips, n_mels, frames)``."""

    rel_path: str
    sha: str
    n_clips: int
    duration: float
    clean_path: Path
    aug_path: Path | None = None


@dataclass
class ExtractResult:
    """Entries by ``rel_path``, files skipped with reasons, and how many files were decoded."""

    entries: dict[str, FeatureEntry] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    n_decoded: int = 0


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _features_of_file(path: str, cfg: Config, augment: Any | None, rng: np.random.Generator | None) -> np.ndarray:
    """Clean (``augment is None``) or one augmented variant's features ``(n_clips, n_mels, frames)``."""
    sr = cfg.audio.sample_rate
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for _, clip in iter_clips(path, cfg.audio):
        batch.append(clip if augment is None else augment(clip, sr, rng))
        if len(batch) == _BATCH:
            out.append(compute_features(np.stack(batch), cfg))
            batch = []
    if batch:
        out.append(compute_features(np.stack(batch), cfg))
    return np.concatenate(out)


def _extract_one(path: str, rel_path: str, want_aug: bool, cfg_dict: dict, cache_root: str) -> dict:
    """Worker job: returns a dict describing the entry, or ``{"error": reason}``."""
    cfg = Config.from_dict(cfg_dict)
    cache = FeatureCache(cache_root)
    try:
        info = audio_info(path)
        try:
            sha = file_sha256(path)
        except OSError as err:
            raise AudioLoadError(path, f"cannot read file ({err.strerror or err})") from err
        fkey = cfg.feature_key()
        clean_path = cache.path(fkey, sha)
        decoded = False
        clean = cache.load(clean_path, expect_mels=cfg.features.n_mels)
        if clean is None:
            clean = _features_of_file(path, cfg, None, None)
            cache.store(clean_path, clean)
            decoded = True
        aug_path = None
        if want_aug and cfg.augment.n_variants > 0:
            aug_path = cache.path(fkey, sha, cfg.augment_key())
            aug = cache.load(aug_path, expect_mels=cfg.features.n_mels)
            if aug is None or aug.shape[:2] != (cfg.augment.n_variants, clean.shape[0]):
                from .augment.compose import from_config

                transform = from_config(cfg.augment)
                variants = []
                for v in range(cfg.augment.n_variants):
                    rng = np.random.default_rng([cfg.train.seed, int(sha[:12], 16), v])
                    variants.append(_features_of_file(path, cfg, transform, rng))
                cache.store(aug_path, np.stack(variants))
                decoded = True
        return {
            "rel_path": rel_path,
            "sha": sha,
            "n_clips": int(clean.shape[0]),
            "duration": float(info.duration),
            "clean_path": str(clean_path),
            "aug_path": None if aug_path is None else str(aug_path),
            "decoded": decoded,
        }
    except AudioLoadError as err:
        return {"rel_path": rel_path, "error": err.reason}
    except MemoryError:
        return {"rel_path": rel_path, "error": "out of memory while decoding"}


def extract_features(
    recordings: list[Recording],
    cfg: Config,
    cache: FeatureCache,
    *,
    augment_splits: tuple[str, ...] = ("train",),
    workers: int = 1,
    progress: bool = True,
    desc: str = "features",
) -> ExtractResult:
    """Features for every recording, from the cache or computed (in ``workers`` processes).

    Unreadable files are not fatal: each is listed in ``result.skipped`` with its reason.
    """
    jobs = [(str(r.path), r.rel_path, r.split in augment_splits) for r in recordings]
    by_rel = {r.rel_path: r for r in recordings}
    cfg_dict = cfg.to_dict()
    root = str(cache.root)
    result = ExtractResult()
    bar = _progress(len(jobs), desc, progress)

    def collect(out: dict) -> None:
        if "error" in out:
            result.skipped.append(Skipped(str(by_rel[out["rel_path"]].path), out["error"]))
        else:
            result.entries[out["rel_path"]] = FeatureEntry(
                rel_path=out["rel_path"],
                sha=out["sha"],
                n_clips=out["n_clips"],
                duration=out["duration"],
                clean_path=Path(out["clean_path"]),
                aug_path=None if out["aug_path"] is None else Path(out["aug_path"]),
            )
            result.n_decoded += int(out["decoded"])
        bar.update(1)

    if workers <= 1 or len(jobs) < 4:
        for job in jobs:
            collect(_extract_one(*job, cfg_dict, root))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_extract_one, *job, cfg_dict, root) for job in jobs]
            for fut in as_completed(futures):
                collect(fut.result())
    bar.close()
    result.skipped.sort(key=lambda s: s.path)
    return result


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="file", dynamic_ncols=True)
