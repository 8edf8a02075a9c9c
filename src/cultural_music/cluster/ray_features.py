"""Files extracted by Ray tasks: what :class:`~cultural_music.cluster.runner.RayRunner` runs its jobs with.

Each task runs :func:`~cultural_music.features.jobs.extract_one` on a chunk of files, exactly as a local
worker process does, writing into the same :class:`~cultural_music.features.cache.FeatureCache` (so the
cache folder must be at the same path on every node: a shared file system).  Unreadable files
come back as results with ``error`` set, as locally.  A task whose worker dies (out of memory,
a lost node) or that raises ``OSError`` (a flaky network file system) is retried by Ray up to
``max_retries`` times; a chunk that still fails is split into one task per file, so only the
file that kills its worker is reported (``error`` says so) and the others complete.  Tasks of a
lost node are resubmitted by Ray; a cluster left with no CPU at all is an error after
:data:`NO_CPU_WAIT_S`, not a hang.

Only :mod:`cultural_music.cluster.runner` imports this module (the CLI's ``--backend ray``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import time
from typing import Any

from cultural_music.features.cache import FeatureCache
from cultural_music.config import Config
from cultural_music.errors import CulturalMusicError
from cultural_music.features.jobs import ExtractJob, JobResult, chunk_size, extract_one
from cultural_music.cluster.session import cluster_cpus, connect

__all__ = ["ray_backend", "MAX_RETRIES"]

MAX_RETRIES = 3  #: Ray retries of a task whose worker died or that raised OSError
NO_CPU_WAIT_S = 120.0  #: how long (s) a run waits for a CPU when every worker node is gone, then fails
_POLL_S = 2.0  # how often (s) a waiting driver checks that the cluster still has a CPU
_IN_FLIGHT_PER_CPU = 4  # tasks submitted ahead per cluster CPU (backpressure, quick cancel)


def extract_chunk(jobs: list[ExtractJob], cfg_dict: dict, cache_root: str) -> list[JobResult]:
    """What one Ray task does: :func:`extract_one` for each job, in order."""
    cfg = Config.from_dict(cfg_dict)
    cache = FeatureCache(cache_root)
    return [extract_one(job, cfg, cache) for job in jobs]


def ray_backend(jobs: Sequence[ExtractJob], cfg: Config, cache_root: str, workers: int, *,
                max_retries: int = MAX_RETRIES, task: Callable[..., list[JobResult]] = extract_chunk,
                chunk: int | None = None) -> Iterator[JobResult]:
    """Results of ``jobs`` computed by Ray tasks, yielded as tasks finish.

    Parameters
    ----------
    workers
        CPUs of the local Ray instance started when this process has not joined Ray yet
        (a joined cluster uses all of its CPUs).
    max_retries
        Ray retries per task; a chunk that still fails is retried file by file.
    task
        The function a task runs (``extract_chunk``; tests pass one that crashes).
    chunk
        Files per task; default :func:`~cultural_music.features.jobs.chunk_size` (about 8 tasks
        per cluster CPU, at most 16 files).
    """
    ray = connect(None, num_cpus=workers)
    if not jobs:
        return
    from ray.exceptions import RayError

    remote = ray.remote(task).options(num_cpus=1, max_retries=max_retries, retry_exceptions=[OSError])
    cfg_ref = ray.put(cfg.to_dict())
    cpus = cluster_cpus()
    size = chunk_size(len(jobs), cpus) if chunk is None else max(1, int(chunk))
    todo = [list(jobs[i:i + size]) for i in range(0, len(jobs), size)]
    todo.reverse()  # popped from the end: submitted in order
    running: dict[Any, list[ExtractJob]] = {}
    limit = _IN_FLIGHT_PER_CPU * cpus
    try:
        while todo or running:
            while todo and len(running) < limit:
                part = todo.pop()
                running[remote.remote(part, cfg_ref, cache_root)] = part
            for ref in _wait_one(ray, list(running)):
                part = running.pop(ref)
                try:
                    results = ray.get(ref)
                except RayError as err:
                    if len(part) > 1:  # find the file that fails: one task each
                        todo.extend([job] for job in reversed(part))
                        continue
                    results = [JobResult(part[0].rel_path, error=_failure(err, max_retries))]
                yield from results
    finally:  # an error or interrupt downstream: stop what is still queued
        for ref in running:
            ray.cancel(ref)


def _wait_one(ray: Any, refs: list[Any]) -> list[Any]:
    """The refs of finished tasks (at least one).  A lost node's tasks are resubmitted by Ray
    itself; but while the cluster has no CPU left at all, nothing can ever finish, so after
    :data:`NO_CPU_WAIT_S` seconds without one (time for a node to come back) this raises."""
    since = None
    while True:
        done, _ = ray.wait(refs, num_returns=1, timeout=_POLL_S)
        if done:
            return done
        if ray.cluster_resources().get("CPU", 0) > 0:  # alive nodes only
            since = None
            continue
        since = time.monotonic() if since is None else since
        if time.monotonic() - since > NO_CPU_WAIT_S:
            raise CulturalMusicError(f"the Ray cluster has had no node with a CPU for {NO_CPU_WAIT_S:.0f} s "
                                     f"({len(refs)} extraction task(s) waiting): start or re-add worker nodes "
                                     "(ray start --address=HEAD:6379), then rerun; cached files are not redone")


def _failure(err: BaseException, max_retries: int) -> str:
    """The skip reason of a file whose task failed ``max_retries + 1`` times."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    detail = text[-1] if text else type(cause).__name__
    return f"the Ray task failed {max_retries + 1} time(s) on this file ({type(cause).__name__}: {detail[:200]})"

