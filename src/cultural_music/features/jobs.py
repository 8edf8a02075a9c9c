"""Per-file extraction jobs, and the local runner that runs them.

A job hashes one file, then loads its features from the :class:`FeatureCache` or, on a miss,
decodes it (streaming), cuts clips and computes the features (plus ``cfg.augment.n_variants``
augmented variants for training files, seeded by ``(seed, file hash, variant)`` so that the
result does not depend on which worker ran it).

Where jobs (and training) run is one object chosen once, by the CLI's ``--backend``: a
:class:`Runner`.  :class:`LocalRunner` runs the jobs in this process, or in a pool of worker
processes started with ``forkserver`` (a clean server imports the audio libraries once, about
2 s, and forks ready workers; unlike ``fork`` it is safe after torch has started its threads);
``cultural_music.cluster.runner.RayRunner`` runs the same jobs as Ray tasks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cultural_music.features.audio import audio_info
from cultural_music.features.cache import FeatureCache, FeatureEntry, FileSignature
from cultural_music.config import FUSION_EMBEDDING, Config
from cultural_music.data.dataset import file_sha256
from cultural_music.errors import AudioLoadError, CulturalMusicError
from cultural_music.features.compute import component_configs, feature_batches, fuse_embeddings
from cultural_music.features.orphan import exit_with_owner, owner_token

__all__ = ["ExtractJob", "JobResult", "Runner", "LocalRunner", "extract_one", "entry_for", "chunk_size", "default_workers"]

_BATCH = 8  # clips per feature call: bounds memory for long files
_MIN_PARALLEL = 4  # fewer files than this are done in this process
_MAX_CHUNK = 16  # files per worker task, at most
# Imported once by the forkserver, so forked workers start with them loaded; librosa (about 1 s)
# only when training files need waveform augmentation (features themselves do not use it).
_PRELOAD = ("cultural_music.features.jobs", "cultural_music.features.melspec")
_PRELOAD_AUGMENT = ("librosa.effects", "librosa.core.spectrum", "librosa.filters")


@dataclass(frozen=True)
class ExtractJob:
    """One file to extract: its path, its name within the data set, and whether it also needs
    augmented variants."""

    path: str
    rel_path: str
    augment: bool = False


@dataclass(frozen=True)
class JobResult:
    """What a job produced: the file's :class:`FeatureEntry`, or ``error`` (the reason the file
    is skipped).  ``decoded``: the features were computed (not found in the cache);
    ``signature``: the file's ``stat`` taken before hashing, when old enough to index."""

    rel_path: str
    entry: FeatureEntry | None = None
    decoded: bool = False
    signature: FileSignature | None = None
    error: str | None = None


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def chunk_size(n_jobs: int, workers: int) -> int:
    """Files per worker task: about 8 tasks per worker, at most :data:`_MAX_CHUNK` files, so that
    thousands of short files do not pay one round trip each and the load stays balanced."""
    return max(1, min(_MAX_CHUNK, n_jobs // (8 * max(1, workers))))


def _feature_chunks(path: str, cfg: Config, augment: Any | None, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Clean (``augment is None``) or one augmented variant's features, as chunks
    ``(<= _BATCH, n_mels, frames)``: memory stays bounded whatever the file length."""
    sr = cfg.audio.sample_rate
    transform = None if augment is None else (lambda clip: augment(clip, sr, rng))
    for _, feats in feature_batches(path, cfg, batch_size=_BATCH, transform=transform):
        yield feats


def _augmented_chunks(path: str, cfg: Config, sha: str) -> Iterator[np.ndarray]:
    """Variants one after another (stored as ``(n_variants, n_clips, n_mels, frames)``);
    variant ``v`` is seeded by ``(seed, sha, v)``."""
    from cultural_music.augment.compose import from_config

    transform = from_config(cfg.augment)
    for v in range(cfg.augment.n_variants):
        rng = np.random.default_rng([cfg.train.seed, int(sha[:12], 16), v])
        yield from _feature_chunks(path, cfg, transform, rng)


def entry_for(job: ExtractJob, cfg: Config, cache: FeatureCache, sha: str, duration: float, *,
              compute: bool, signature: FileSignature | None = None) -> JobResult | None:
    """The job's entry from the cache, computing what is missing if ``compute`` (else ``None``)."""
    fkey, akey = _keys(cfg)
    mels = cfg.features.n_rows
    clean_path = cache.path(fkey, sha)
    decoded = False
    clean = cache.shape(clean_path, expect_mels=mels)  # the header is enough on a hit
    if clean is None:
        if not compute:
            return None
        if cfg.features.kind == FUSION_EMBEDDING:
            clean, decoded = _store_fused(job, cfg, cache, sha, duration, clean_path, augmented=False)
        else:
            clean, decoded = cache.store_chunks(clean_path, _feature_chunks(job.path, cfg, None, None)), True
    aug_path, n_var = None, 0
    if job.augment and cfg.augment.n_variants > 0:
        aug_path = cache.path(fkey, sha, akey)
        aug = cache.shape(aug_path, expect_mels=mels)
        if aug is None or aug[:2] != (cfg.augment.n_variants, clean[0]):
            if not compute:
                return None
            if cfg.features.kind == FUSION_EMBEDDING:
                aug, fresh = _store_fused(job, cfg, cache, sha, duration, aug_path, augmented=True)
            else:
                aug, fresh = cache.store_chunks(aug_path, _augmented_chunks(job.path, cfg, sha), lead=cfg.augment.n_variants), True
            decoded = decoded or fresh
        n_var = int(aug[0])
    entry = FeatureEntry(job.rel_path, sha, int(clean[0]), float(duration), Path(clean_path),
                         None if aug_path is None else Path(aug_path), n_var)
    return JobResult(job.rel_path, entry, decoded, signature)


def _store_fused(job: ExtractJob, cfg: Config, cache: FeatureCache, sha: str, duration: float, path: Path, *,
                 augmented: bool) -> tuple[tuple[int, ...], bool]:
    """Store a fusion entry joined from its two components' entries (each looked up in, or
    computed into, the cache under its own key, so a file is never embedded twice by one
    backbone); returns the stored shape and whether anything was decoded."""
    parts, decoded = [], False
    for part_cfg in component_configs(cfg):
        result = entry_for(ExtractJob(job.path, job.rel_path, augmented), part_cfg, cache, sha, duration, compute=True)
        assert result is not None and result.entry is not None
        entry = result.entry
        parts.append(cache.load(entry.aug_path if augmented else entry.clean_path, mmap=False))
        decoded = decoded or result.decoded
    if any(p is None for p in parts):
        raise AudioLoadError(job.path, "a component of the fused features vanished from the cache")
    fused = fuse_embeddings(parts[0], parts[1], cfg.audio.clip_samples)
    cache.store(path, fused)
    return tuple(int(n) for n in fused.shape), decoded


def _keys(cfg: Config) -> tuple[str, str]:
    """``(feature_key, augment_key)`` of a config, computed once per config (they hash JSON)."""
    try:
        return _cached_keys(cfg)
    except TypeError:  # an unhashable field, e.g. Config().replace(augment={"noise_snr_db": [10, 30]}) keeps the list
        return cfg.feature_key(), cfg.augment_key()


@lru_cache(maxsize=16)
def _cached_keys(cfg: Config) -> tuple[str, str]:
    return cfg.feature_key(), cfg.augment_key()


def extract_one(job: ExtractJob, cfg: Config, cache: FeatureCache) -> JobResult:
    """Hash one file, then load its features from the cache or compute and store them.

    Unreadable files give a result with ``error`` set rather than raising.
    """
    try:
        try:
            sig: FileSignature | None = FileSignature.of(job.path)  # before hashing: see FileIndex
        except OSError:
            sig = None
        info = audio_info(job.path)
        try:
            sha = file_sha256(job.path)
        except OSError as err:
            raise AudioLoadError(job.path, f"cannot read file ({err.strerror or err})") from err
        sig = sig if sig is not None and sig.settled() else None
        result = entry_for(job, cfg, cache, sha, info.duration, compute=True, signature=sig)
        assert result is not None
        return result
    except AudioLoadError as err:
        return JobResult(job.rel_path, error=err.reason)
    except MemoryError:
        return JobResult(job.rel_path, error="out of memory while decoding")


_WORKER: dict[str, Any] = {}


def _init_worker(cfg_dict: dict, cache_root: str, owner: tuple[int, str | None]) -> None:
    """One BLAS/OpenMP thread per worker (the pool already uses every core), torch and the
    backbones' ONNX Runtime sessions included (torch, imported later, would reset OpenMP to one
    thread per core: ``OMP_NUM_THREADS=1`` keeps it at one); the worker exits when ``owner``
    (the pool's process, :func:`orphan.owner_token`) dies, even by SIGKILL."""
    import sys

    from threadpoolctl import threadpool_limits

    exit_with_owner(owner)
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _WORKER["threads"] = threadpool_limits(1)
    _WORKER["cfg"] = Config.from_dict(cfg_dict)
    _WORKER["cache"] = FeatureCache(cache_root)


def _extract_batch(jobs: list[ExtractJob]) -> list[JobResult]:
    return [extract_one(job, _WORKER["cfg"], _WORKER["cache"]) for job in jobs]


def _mp_context(augment: bool = False) -> BaseContext:
    """``forkserver`` (workers forked from a clean server that preloaded the audio libraries; safe
    after torch has started threads, unlike ``fork``), else ``spawn``.  The preload list counts
    only when this process starts its server (its first pool)."""
    if "forkserver" in get_all_start_methods():
        ctx = get_context("forkserver")
        ctx.set_forkserver_preload(list(_PRELOAD + (_PRELOAD_AUGMENT if augment else ())))
        return ctx
    return get_context("spawn")  # pragma: no cover - Windows


class Runner(Protocol):
    """Where the work runs, chosen once (the CLI's ``--backend``) and handed down the pipeline.

    ``workers``: processes (local) or training workers (Ray).  ``run_jobs`` yields exactly one
    :class:`JobResult` per job, in completion order (unreadable files have ``error`` set).
    ``train`` trains ``model`` and returns what ``local`` (the in-process trainer,
    ``training.loop.train_model``, handed in because features cannot import training) returns.
    """

    @property
    def workers(self) -> int: ...

    def run_jobs(self, jobs: Sequence[ExtractJob], cfg: Config, cache_root: str | Path) -> Iterator[JobResult]: ...

    def train(self, model: Any, train_ds: Any, val_ds: Any, train_cfg: Any, *, local: Callable[..., Any], **kwargs: Any) -> Any: ...


class LocalRunner:
    """Jobs in this process (one worker, or fewer than 4 jobs) or in a pool of ``workers``
    processes (default: every CPU this process may use); training in this process."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = default_workers() if workers is None else max(1, int(workers))

    @property
    def workers(self) -> int:
        return self._workers

    def __repr__(self) -> str:
        return f"LocalRunner(workers={self._workers})"

    def run_jobs(self, jobs: Sequence[ExtractJob], cfg: Config, cache_root: str | Path) -> Iterator[JobResult]:
        """Results of ``jobs`` as they finish (see :class:`Runner`)."""
        return _run_local(list(jobs), cfg, str(cache_root), self._workers)

    def train(self, model: Any, train_ds: Any, val_ds: Any, train_cfg: Any, *, local: Callable[..., Any], **kwargs: Any) -> Any:
        """``local(model, train_ds, val_ds, train_cfg, **kwargs)``: training in this process."""
        return local(model, train_ds, val_ds, train_cfg, **kwargs)


def _run_local(jobs: list[ExtractJob], cfg: Config, cache_root: str, workers: int) -> Iterator[JobResult]:
    """Run jobs here (``workers <= 1`` or few jobs) or in a process pool; results as they finish."""
    if workers <= 1 or len(jobs) < _MIN_PARALLEL:
        cache = FeatureCache(cache_root)
        for job in jobs:
            yield extract_one(job, cfg, cache)
        return
    size = chunk_size(len(jobs), workers)
    batches = [list(jobs[i:i + size]) for i in range(0, len(jobs), size)]
    pool = ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=_mp_context(any(j.augment for j in jobs)),
                               initializer=_init_worker, initargs=(cfg.to_dict(), cache_root, owner_token()))
    try:
        futures = [pool.submit(_extract_batch, batch) for batch in batches]
        for fut in as_completed(futures):
            try:
                done = fut.result()
            except BrokenProcessPool as err:
                raise CulturalMusicError(
                    "a feature worker process died (out of memory?); retry with fewer --workers"
                ) from err
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
