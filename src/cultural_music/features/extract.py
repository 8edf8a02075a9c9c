"""Turn recordings into cached features, in parallel, skipping and reporting bad files.

:func:`extract_features` gives the features of every recording: first through the fast path
(a file whose ``stat`` signature matches the cache's :class:`FileIndex` and whose features are
cached is neither hashed nor decoded, and when every file is such a hit no process is started),
then through :func:`~cultural_music.features.jobs.run_jobs` for the rest (hash, cache lookup, decode on a
miss), with a progress bar showing files/s and the time left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cultural_music.features.cache import FeatureCache, FileIndex, FileSignature
from cultural_music.config import Config
from cultural_music.data.dataset import DatasetScan, Recording, Skipped, scan_folder
from cultural_music.features.jobs import ExtractJob, JobResult, entry_for, run_jobs

__all__ = ["FeatureEntry", "ExtractResult", "extract_features", "fill_cache", "default_workers"]


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
    n_variants: int = 0


@dataclass
class ExtractResult:
    """Entries by ``rel_path``, files skipped with reasons, how many files were decoded, and how
    many were found through the file index (neither hashed nor decoded)."""

    entries: dict[str, FeatureEntry] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    n_decoded: int = 0
    n_indexed: int = 0


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def extract_features(
    recordings: list[Recording],
    cfg: Config,
    cache: FeatureCache,
    *,
    augment_splits: tuple[str, ...] = ("train",),
    workers: int = 1,
    progress: bool = True,
    desc: str = "features",
    backend: str = "local",
    use_index: bool = True,
) -> ExtractResult:
    """Features for every recording, from the cache or computed (in ``workers`` processes).

    Parameters
    ----------
    recordings
        Files to extract; those whose ``split`` is in ``augment_splits`` also get
        ``cfg.augment.n_variants`` augmented variants.
    cfg
        Audio, feature and augmentation settings (they key the cache).
    cache
        Where features are looked up and stored.
    workers
        Processes for the files that are not cached (1: in this process).
    progress
        Show a progress bar (files/s and time left).
    desc
        Label of the progress bar.
    backend
        Name of the :func:`~cultural_music.features.jobs.run_jobs` backend: ``"local"`` (processes on
        this machine) or ``"ray"`` (Ray tasks; needs ``cultural-music[cluster]``).
    use_index
        Skip hashing files whose ``stat`` signature matches the cache's :class:`FileIndex`.

    Returns
    -------
    ExtractResult
        Entries in the order of ``recordings``; unreadable files are not fatal, each is listed
        in ``skipped`` with its reason.
    """
    _load_backend(backend)
    jobs = [ExtractJob(os.path.abspath(r.path), r.rel_path, r.split in augment_splits) for r in recordings]
    by_rel = {r.rel_path: r for r in recordings}
    index = FileIndex.load(cache.index_path) if use_index else None
    result = ExtractResult()
    entries: dict[str, FeatureEntry] = {}
    pending: list[ExtractJob] = []
    for job in jobs:
        hit = _indexed(job, cfg, cache, index) if index is not None else None
        if hit is None:
            pending.append(job)
        else:
            entries[job.rel_path] = _to_entry(hit)
    result.n_indexed = len(entries)
    path_of = {j.rel_path: j.path for j in pending}
    bar = _progress(len(jobs), len(entries), desc, progress and bool(pending))
    stream = run_jobs(pending, cfg, cache.root, workers=workers, backend=backend)
    try:
        for out in stream:
            if out.error is not None:
                result.skipped.append(Skipped(str(by_rel[out.rel_path].path), out.error))
            else:
                entries[out.rel_path] = _to_entry(out)
                result.n_decoded += int(out.decoded)
                if index is not None and out.signature is not None:
                    index.put(path_of[out.rel_path], out.signature, out.sha, out.duration)
            bar.update(1)
            bar.set_postfix(decoded=result.n_decoded, refresh=False)
    finally:  # stop the workers now on an error; an interrupted run still remembers what it hashed
        getattr(stream, "close", lambda: None)()
        bar.close()
        if index is not None:
            index.save()
    result.entries = {j.rel_path: entries[j.rel_path] for j in jobs if j.rel_path in entries}
    result.skipped.sort(key=lambda s: s.path)
    return result


def _load_backend(backend: str) -> None:
    """Register an optional backend on first use (the Ray one is imported only when asked for)."""
    if backend == "ray":
        from cultural_music.cluster import ray_features


def _indexed(job: ExtractJob, cfg: Config, cache: FeatureCache, index: FileIndex) -> JobResult | None:
    """The job's entry when the file is unchanged since it was indexed and its features are cached."""
    try:
        sig = FileSignature.of(job.path)
    except OSError:
        return None
    known = index.get(job.path, sig)
    if known is None:
        return None
    return entry_for(job, cfg, cache, known[0], known[1], compute=False)


def _to_entry(out: JobResult) -> FeatureEntry:
    return FeatureEntry(out.rel_path, out.sha, out.n_clips, out.duration, Path(out.clean_path),
                        None if out.aug_path is None else Path(out.aug_path), out.n_variants)


def fill_cache(data_dir: str | Path, cfg: Config, cache: FeatureCache, *, workers: int = 1, backend: str = "local",
               progress: bool = True) -> tuple[DatasetScan, ExtractResult]:
    """Compute the clean features of every audio file under ``data_dir/<class>/`` into ``cache``.

    Returns the scan (its ``skipped`` includes files that could not be decoded) and the result.
    """
    scan = scan_folder(data_dir, min_classes=1)
    result = extract_features(scan.recordings, cfg, cache, augment_splits=(), workers=workers, progress=progress,
                              desc="decode + features", backend=backend)
    scan.skipped.extend(result.skipped)
    return scan, result


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (elapsed, ETA, files/s), silent unless ``enabled``; ``initial`` files were already done."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="file", dynamic_ncols=True, smoothing=0.1,
                disable=not enabled)
