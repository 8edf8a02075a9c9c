"""Data-parallel training core: torch ``DistributedDataParallel`` over gloo, on CPU.

:func:`~cultural_music.training.loop.train_model` takes a :class:`DistContext` as ``dist`` (the
data-parallel counterpart of :class:`~cultural_music.training.context.LocalContext`, same methods); then each of
the ``world_size`` processes (ranks) trains the same model on its shard of the training set, and
DDP averages the gradients after every backward pass, so the ranks' weights stay identical.

* Sharding: every rank draws the same global order of the epoch (the order a local run draws:
  ``torch.randperm`` seeded by ``seed + epoch``, or the class-balanced draw), pads it to a
  multiple of ``world_size`` and takes every ``world_size``-th item from ``rank``.  With
  ``batch_size // world_size`` clips per rank, step ``k`` covers exactly the clips of a local
  run's batch ``k``: the global batch is unchanged.
* Metrics: training loss/accuracy are averaged over ranks (weighted by clips); after each epoch
  rank 0's buffers (batch-norm statistics) are broadcast, every rank validates on the whole
  validation set, and rank 0's validation figures are broadcast, so every rank takes the same
  early-stopping decision.
* Only rank 0 logs and writes (``is_writer``).
* A rank's step of one clip, which batch norm cannot train on, is a clear error up front
  (:meth:`DistContext.check_batches`).

Usable without Ray: any launcher that starts ``world_size`` processes and calls
:func:`init_process_group` in each (the tests use ``torch.multiprocessing``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from cultural_music.config import TrainConfig
from cultural_music.errors import CulturalMusicError
from cultural_music.training.context import drops_lone_clip, fails_on_one_clip
from cultural_music.training.sampling import balanced_sampler

__all__ = ["DistContext", "init_process_group", "shutdown", "shard_indices", "state_digest"]

TIMEOUT_S = 600  #: a collective waiting longer than this (s) for a lost rank fails instead of hanging


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group: ``rank`` in ``[0, world_size)``."""

    rank: int
    world_size: int

    @property
    def is_writer(self) -> bool:
        """Only rank 0 logs and writes files."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` under DDP (gradients averaged over ranks; rank 0's weights broadcast now)."""
        return DistributedDataParallel(model)

    def batch_size(self, global_batch: int) -> int:
        """Clips per rank and step: ``global_batch // world_size`` (at least 1)."""
        return max(1, global_batch // self.world_size)

    def train_loader(self, ds: Dataset, cfg: TrainConfig, epoch: int) -> DataLoader:
        """This rank's batches of epoch ``epoch``; a last batch of one clip is dropped on every
        rank alike (shards have equal lengths), as batch norm cannot train on it."""
        labels = np.asarray(getattr(ds, "labels"))
        idx = shard_indices(labels, self.rank, self.world_size, seed=cfg.seed + epoch, balanced=cfg.balanced_sampling)
        b = self.batch_size(cfg.batch_size)
        return DataLoader(ds, batch_size=b, sampler=idx, drop_last=drops_lone_clip(len(idx), b), num_workers=0)

    def check_batches(self, model: nn.Module, ds: Dataset, cfg: TrainConfig) -> None:
        """A clear error if this rank's steps would hold one clip (``batch_size // world_size``
        is 1, or a shard of one clip) and the model cannot train on one (batch norm).  Every
        rank has the same shard length, so every rank raises alike, before any collective."""
        shard = -(-len(ds) // self.world_size)  # type: ignore[arg-type]
        if min(self.batch_size(cfg.batch_size), shard) > 1 or not fails_on_one_clip(model, ds):
            return
        if shard == 1:
            raise CulturalMusicError(f"{len(ds)} training clips over {self.world_size} workers leave one clip per worker, "  # type: ignore[arg-type]
                                     "but the model has batch norm, which cannot train on one clip: use fewer --workers")
        raise CulturalMusicError(f"training.batch_size {cfg.batch_size} over {self.world_size} workers gives one clip per "
                                 "worker and step, but the model has batch norm, which cannot train on one clip: use "
                                 f"--batch-size {2 * self.world_size} or more, or fewer --workers")

    def merge_train(self, loss: float, accuracy: float, clips: int) -> tuple[float, float, int]:
        """Training loss and accuracy over all ranks (means weighted by clips), total clips."""
        t = torch.tensor([loss * clips, accuracy * clips, float(clips)], dtype=torch.float64)
        tdist.all_reduce(t)
        n = max(float(t[2]), 1.0)
        return float(t[0]) / n, float(t[1]) / n, int(t[2])

    def sync_state(self, model: nn.Module) -> None:
        """Broadcast rank 0's buffers (batch-norm statistics, updated by each rank's own batches)."""
        for buf in model.buffers():
            tdist.broadcast(buf, src=0)

    def from_rank0(self, *values: float) -> tuple[float, ...]:
        """Rank 0's values on every rank (one decision everywhere, even if floats differ)."""
        t = torch.tensor(values, dtype=torch.float64)
        tdist.broadcast(t, src=0)
        return tuple(float(v) for v in t)


def shard_indices(labels: np.ndarray, rank: int, world_size: int, *, seed: int, balanced: bool = False) -> list[int]:
    """Item indices of ``rank`` for one epoch.

    The global order is what a local training loader draws with this seed (a permutation, or
    ``len(labels)`` class-balanced draws with replacement; ``labels`` is ``(n_items,)``), padded by wrapping around to a
    multiple of ``world_size``; ``rank`` gets items ``rank, rank + world_size, ...``.
    """
    n = len(labels)
    # drawn through a DataLoader, as the local loader draws it (it takes a seed from its generator first)
    if balanced:
        draw = DataLoader(range(n), batch_size=max(n, 1), sampler=balanced_sampler(labels, seed=seed))
    else:
        draw = DataLoader(range(n), batch_size=max(n, 1), shuffle=True, generator=torch.Generator().manual_seed(seed))
    order = [int(i) for batch in draw for i in batch]
    total = -(-n // world_size) * world_size
    order += order[: total - n]
    return order[rank:total:world_size]


def init_process_group(rank: int, world_size: int, host: str, port: int, *, timeout_s: float = TIMEOUT_S) -> DistContext:
    """Join the gloo group rendezvousing at ``tcp://host:port`` (rank 0 listens there)."""
    tdist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank, world_size=world_size,
                             timeout=timedelta(seconds=timeout_s))
    return DistContext(rank, world_size)


def shutdown() -> None:
    """Leave the process group, if joined."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def state_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names and bytes): equal iff the states are equal."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
