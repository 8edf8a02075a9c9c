"""The Ray :class:`~cultural_music.features.jobs.Runner`: features as Ray tasks, training data-parallel.

Chosen once by the CLI (``--backend ray``, ``--address``) and handed down the pipeline, which
only calls ``runner.run_jobs(...)`` and ``runner.train(...)``; nothing below ``cluster/`` imports
this package.  Data, cache and model folder must be at the same path on every node
(docs/cluster.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cultural_music.cluster.ray_features import ray_backend
from cultural_music.cluster.session import cluster_nodes, connect
from cultural_music.config import Config
from cultural_music.features.jobs import ExtractJob, JobResult, default_workers

__all__ = ["RayRunner"]


class RayRunner:
    """Jobs as Ray tasks and data-parallel training on Ray actors.

    Parameters
    ----------
    address
        The cluster to join (``"auto"`` or ``"HOST:6379"``); ``None``: a local Ray instance
        with ``workers`` CPUs (default: every core of this machine).
    workers
        Training workers (Ray actors); default: one per node of the cluster at ``address``,
        else this machine's cores.
    chunk
        Files per extraction task; default: about 8 tasks per cluster CPU, at most 16 files
        (``features.jobs.chunk_size``).  Smaller chunks lose less work when a node dies.

    Ray is joined once, on first use (so bad settings are refused before Ray starts).
    """

    def __init__(self, address: str | None = None, workers: int | None = None, *, chunk: int | None = None) -> None:
        self.address = address
        self.chunk = None if chunk is None else max(1, int(chunk))
        self._asked = None if workers is None else max(1, int(workers))
        self._workers: int | None = None

    def __repr__(self) -> str:
        return f"RayRunner(address={self.address!r}, workers={self._asked})"

    @property
    def workers(self) -> int:
        """Training workers (joins Ray if not done yet)."""
        return self._connect()

    def _connect(self) -> int:
        if self._workers is None:
            connect(self.address, num_cpus=self._asked or default_workers())
            self._workers = self._asked or (cluster_nodes() if self.address else default_workers())
        return self._workers

    def run_jobs(self, jobs: Sequence[ExtractJob], cfg: Config, cache_root: str | Path) -> Iterator[JobResult]:
        """Results of ``jobs`` computed by Ray tasks, as they finish (see ``cluster.ray_features``)."""
        self._connect()
        return ray_backend(list(jobs), cfg, str(cache_root), self._asked or default_workers(), chunk=self.chunk)

    def train(self, model: Any, train_ds: Any, val_ds: Any, train_cfg: Any, *, local: Callable[..., Any],
              log: Callable[[str], Any] = print, **kwargs: Any) -> Any:
        """Data-parallel training on :attr:`workers` Ray actors (``cluster.ray_train.train_on_ray``),
        except a full-batch L-BFGS head (:func:`~cultural_music.training.loop.is_full_batch`): it sees every clip on
        every rank, so data parallelism would only repeat it; ``local`` trains it here, in seconds."""
        from cultural_music.training.loop import is_full_batch

        if is_full_batch(train_cfg):
            log("the L-BFGS head trains here, in seconds; Ray did the feature extraction")
            return local(model, train_ds, val_ds, train_cfg, log=log, **kwargs)
        from cultural_music.cluster.ray_train import train_on_ray

        workers = self.workers
        log(f"data-parallel training on {workers} Ray worker(s)")
        return train_on_ray(model, train_ds, val_ds, train_cfg, workers=workers, log=log, **kwargs)
