"""Turn recordings into cached features, in parallel, skipping and reporting bad files.

:func:`extract_features` gives the features of every recording: first through the fast path
(a file whose ``stat`` signature matches the cache's :class:`FileIndex` and whose features are
cached is neither hashed nor decoded, and when every file is such a hit no process is started),
then through the :class:`~cultural_music.features.jobs.Runner`'s ``run_jobs`` for the rest (hash,
cache lookup, decode on a miss), with a progress bar showing files/s and the time left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cultural_music.config import Config
from cultural_music.data.dataset import DatasetScan, Recording, Skipped, scan_folder
from cultural_music.features.cache import FeatureCache, FeatureEntry, FileIndex, FileSignature
from cultural_music.features.jobs import ExtractJob, JobResult, LocalRunner, Runner, default_workers, entry_for

__all__ = ["FeatureEntry", "ExtractResult", "extract_features", "fill_cache", "default_workers"]


@dataclass
class ExtractResult:
    """Entries by ``rel_path``, files skipped with reasons, how many files were decoded, and how
    many were found through the file index (neither hashed nor decoded)."""

    entries: dict[str, FeatureEntry] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    n_decoded: int = 0
    n_indexed: int = 0


def extract_features(
    recordings: list[Recording],
    cfg: Config,
    cache: FeatureCache,
    *,
    augment_splits: tuple[str, ...] = ("train",),
    runner: Runner | None = None,
    workers: int = 1,
    progress: bool = True,
    desc: str = "features",
    use_index: bool = True,
) -> ExtractResult:
    """Features for every recording, from the cache or computed by ``runner``.

    Parameters
    ----------
    recordings
        Files to extract; those whose ``split`` is in ``augment_splits`` also get
        ``cfg.augment.n_variants`` augmented variants.
    cfg
        Audio, feature and augmentation settings (they key the cache).
    cache
        Where features are looked up and stored.
    runner
        Runs the files that are not indexed (:class:`~cultural_music.features.jobs.LocalRunner`,
        or ``cluster.runner.RayRunner``); default: a ``LocalRunner`` of ``workers`` processes
        (1: in this process).
    progress, desc
        Show a progress bar (files/s and time left) labelled ``desc``.
    use_index
        Skip hashing files whose ``stat`` signature matches the cache's :class:`FileIndex`.

    Returns
    -------
    ExtractResult
        Entries in the order of ``recordings``; unreadable files are not fatal, each is listed
        in ``skipped`` with its reason.
    """
    runner = LocalRunner(workers) if runner is None else runner
    jobs = [ExtractJob(os.path.abspath(r.path), r.rel_path, r.split in augment_splits) for r in recordings]
    index = FileIndex.load(cache.index_path) if use_index else None
    result = ExtractResult()
    entries, pending = _split_indexed(jobs, cfg, cache, index)
    result.n_indexed = len(entries)
    bar = _progress(len(jobs), len(entries), desc, progress and bool(pending))
    stream = runner.run_jobs(pending, cfg, cache.root)
    try:
        _collect(stream, {r.rel_path: r for r in recordings}, {j.rel_path: j.path for j in pending}, index, entries, result, bar)
    finally:  # stop the workers now on an error; an interrupted run still remembers what it hashed
        getattr(stream, "close", lambda: None)()
        bar.close()
        if index is not None:
            index.save()
    result.entries = {j.rel_path: entries[j.rel_path] for j in jobs if j.rel_path in entries}
    result.skipped.sort(key=lambda s: s.path)
    return result


def _split_indexed(jobs: list[ExtractJob], cfg: Config, cache: FeatureCache,
                   index: FileIndex | None) -> tuple[dict[str, FeatureEntry], list[ExtractJob]]:
    """Entries of the jobs found through the file index, and the jobs still to run."""
    entries: dict[str, FeatureEntry] = {}
    pending: list[ExtractJob] = []
    for job in jobs:
        hit = _indexed(job, cfg, cache, index) if index is not None else None
        if hit is None or hit.entry is None:
            pending.append(job)
        else:
            entries[job.rel_path] = hit.entry
    return entries, pending


def _collect(stream: Iterator[JobResult], by_rel: dict[str, Recording], path_of: dict[str, str], index: FileIndex | None,
             entries: dict[str, FeatureEntry], result: ExtractResult, bar: Any) -> None:
    """Put each job result into ``entries`` (or ``result.skipped``) and the file index."""
    for out in stream:
        if out.error is not None or out.entry is None:
            result.skipped.append(Skipped(str(by_rel[out.rel_path].path), out.error or "no features"))
        else:
            entries[out.rel_path] = out.entry
            result.n_decoded += int(out.decoded)
            if index is not None and out.signature is not None:
                index.put(path_of[out.rel_path], out.signature, out.entry.sha, out.entry.duration)
        bar.update(1)
        bar.set_postfix(decoded=result.n_decoded, refresh=False)


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


def fill_cache(data_dir: str | Path, cfg: Config, cache: FeatureCache, *, runner: Runner | None = None, workers: int = 1,
               progress: bool = True) -> tuple[DatasetScan, ExtractResult]:
    """Compute the clean features of every audio file under ``data_dir/<class>/`` into ``cache``
    (by ``runner``, default a :class:`LocalRunner` of ``workers`` processes).

    Returns the scan (its ``skipped`` includes files that could not be decoded) and the result.
    """
    scan = scan_folder(data_dir, min_classes=1)
    result = extract_features(scan.recordings, cfg, cache, augment_splits=(), runner=runner, workers=workers, progress=progress,
                              desc="decode + features")
    scan.skipped.extend(result.skipped)
    return scan, result


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (elapsed, ETA, files/s), silent unless ``enabled``; ``initial`` files were already done."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="file", dynamic_ncols=True, smoothing=0.1,
                disable=not enabled)
