"""Data-parallel training on N Ray actors (one rank each, torch DDP over gloo on CPU).

The driver (the process that called :func:`train_on_ray`) builds the model and the datasets;
each actor receives a copy, joins the gloo group whose rendezvous rank 0 opens, and runs
:func:`~cultural_music.training.loop.train_model` with a :class:`~.ddp.DistContext`.  Rank 0 is placed
on the driver's node when it has room, writes the epoch checkpoint and streams its log lines to
the driver; the driver gets rank 0's result (history, best weights) and checks that every rank
ended with the same weights.  The datasets point at cached feature files, which every node
reads at the same path (a shared file system).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cultural_music.config import TrainConfig
from cultural_music.training.clip_dataset import ClipDataset
from cultural_music.errors import CulturalMusicError, ParameterError
from cultural_music.cluster.ddp import DistContext
from cultural_music.cluster.session import cluster_cpus, connect
from cultural_music.training.loop import TrainResult, is_full_batch, train_model

__all__ = ["TrainJob", "train_on_ray"]

PLACE_TIMEOUT_S = 300  #: how long to wait (s) for Ray to place every worker before giving up
_POLL_S = 1.0  # how often the driver collects rank 0's log lines


@dataclass
class TrainJob:
    """Everything a rank needs: the model (same initial weights everywhere) and its data."""

    model: nn.Module
    train_ds: ClipDataset
    val_ds: ClipDataset
    cfg: TrainConfig
    checkpoint_dir: str | None = None
    resume: bool = False
    class_weights: torch.Tensor | None = None


class RankWorker:
    """One rank, run as a Ray actor with two threads (training, and the driver's log polls)."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def endpoint(self) -> tuple[str, int]:
        """This node's address and a free TCP port for the gloo rendezvous (asked of rank 0)."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        return ray.util.get_node_ip_address(), port

    def run(self, rank: int, world_size: int, host: str, port: int, job: TrainJob) -> dict[str, Any]:
        """Train as ``rank``; returns this rank's weight digest and, on rank 0, the result."""
        from cultural_music.cluster.ddp import init_process_group, shutdown, state_digest

        torch.set_num_threads(self.threads)
        ctx = init_process_group(rank, world_size, host, port)
        try:
            result = train_model(job.model, job.train_ds, job.val_ds, job.cfg, checkpoint_dir=job.checkpoint_dir,
                                 resume=job.resume, class_weights=job.class_weights, log=self._log, dist=ctx)
            return {"digest": state_digest(job.model), "result": result if ctx.is_writer else None}
        finally:
            shutdown()

    def _log(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def take_log(self) -> list[str]:
        """Log lines written since the last call."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines


def train_on_ray(model: nn.Module, train_ds: ClipDataset, val_ds: ClipDataset, cfg: TrainConfig, *, workers: int,
                 checkpoint_dir: str | Path | None = None, resume: bool = False, class_weights: torch.Tensor | None = None,
                 cpus_per_worker: int | None = None, log: Callable[[str], Any] = print) -> TrainResult:
    """:func:`~cultural_music.training.loop.train_model` on ``workers`` Ray actors (data parallel).

    Parameters
    ----------
    workers
        Ranks; each trains on ``1 / workers`` of the clips per epoch with
        ``cfg.batch_size // workers`` clips per step (the global batch of a local run).
    checkpoint_dir
        Where rank 0 writes ``checkpoint.pt`` after every epoch (and every rank reads it on
        ``resume``): on a shared file system, or on the driver's node where rank 0 runs.
    cpus_per_worker
        CPUs (and torch threads) per rank; default: the cluster's CPUs shared evenly.

    Returns
    -------
    TrainResult
        Rank 0's; ``model`` is left holding its best weights, as with ``train_model``.
    """
    if workers < 1:
        raise ParameterError(f"The 'workers' parameter of train_on_ray must be >= 1. Got {workers!r} instead.")
    if not is_full_batch(cfg):  # a step of one clip per rank fails every rank alike: say so before starting any
        DistContext(0, workers).check_batches(model, train_ds, cfg)
    ray = connect(None, num_cpus=workers)
    from ray.exceptions import GetTimeoutError, RayError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cpus = cpus_per_worker or max(1, cluster_cpus() // workers)
    actor_cls = ray.remote(num_cpus=cpus, max_concurrency=2, max_restarts=0)(RankWorker)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    actors = [actor_cls.options(scheduling_strategy=here).remote(cpus)] + [actor_cls.remote(cpus) for _ in range(workers - 1)]
    try:
        try:
            host, port = ray.get(actors[0].endpoint.remote(), timeout=PLACE_TIMEOUT_S)
            ray.get([a.take_log.remote() for a in actors], timeout=PLACE_TIMEOUT_S)
        except GetTimeoutError as err:
            raise CulturalMusicError(
                f"Ray could not place {workers} training worker(s) of {cpus} CPU(s) each within {PLACE_TIMEOUT_S} s "
                f"(the cluster has {cluster_cpus()} CPUs): use fewer --workers") from err
        job = ray.put(TrainJob(model, train_ds, val_ds, cfg, None if checkpoint_dir is None else str(checkpoint_dir),
                               resume, class_weights))
        runs = [a.run.remote(rank, workers, host, port, job) for rank, a in enumerate(actors)]
        outs = _wait(ray, runs, actors[0], log)
    except RayError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, CulturalMusicError):  # a rank's own clear error (e.g. a corrupt cache entry): as locally
            raise cause from err
        hint = f"; rerun with --resume to continue from {checkpoint_dir}" if checkpoint_dir else ""
        raise CulturalMusicError(f"distributed training failed ({type(err).__name__}: {_last_line(err)}){hint}") from err
    finally:
        for a in actors:
            ray.kill(a)
    if len({o["digest"] for o in outs}) != 1:
        raise CulturalMusicError("the training workers ended with different weights (DDP lost synchronisation)")
    result: TrainResult = outs[0]["result"]
    model.load_state_dict(result.best_state)
    return result


def _wait(ray: Any, runs: list[Any], rank0: Any, log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Every rank's output; rank 0's log lines are passed on as they come; the first failing
    rank raises at once (the others are then killed rather than left waiting on it)."""
    pending = list(runs)
    while pending:
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_S)
        ray.get(done)  # raises the error of a failed rank now
        for line in ray.get(rank0.take_log.remote()):
            log(line)
    return ray.get(runs)


def _last_line(err: BaseException) -> str:
    """The last non-empty line of an error's text (Ray's carry the remote traceback first)."""
    lines = [s for s in str(err).strip().splitlines() if s.strip()]
    return lines[-1][:300] if lines else ""
