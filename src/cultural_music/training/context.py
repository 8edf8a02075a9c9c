"""Where a training run stands among its peers: one process (:class:`LocalContext`) or a rank of
a data-parallel group (:class:`cultural_music.cluster.ddp.DistContext`, same methods).

:func:`cultural_music.training.loop.train_model` talks to its context only, so the epoch loop
has no distributed branches: locally the collectives are no-ops and the loader is the plain
seeded one.  The local context lives here, below ``cluster/``, which builds on it.
"""

from __future__ import annotations

import copy
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cultural_music.config import TrainConfig
from cultural_music.errors import CulturalMusicError
from cultural_music.training.sampling import balanced_sampler

__all__ = ["TrainContext", "LocalContext", "make_loader", "drops_lone_clip", "has_batch_norm", "fails_on_one_clip"]


class TrainContext(Protocol):
    """What the training loop asks of its context (see :class:`LocalContext` for the meaning)."""

    rank: int
    world_size: int

    @property
    def is_writer(self) -> bool: ...
    def wrap(self, model: nn.Module) -> nn.Module: ...
    def batch_size(self, global_batch: int) -> int: ...
    def train_loader(self, ds: Dataset, cfg: TrainConfig, epoch: int) -> DataLoader: ...
    def check_batches(self, model: nn.Module, ds: Dataset, cfg: TrainConfig) -> None: ...
    def merge_train(self, loss: float, accuracy: float, clips: int) -> tuple[float, float, int]: ...
    def sync_state(self, model: nn.Module) -> None: ...
    def from_rank0(self, *values: float) -> tuple[float, ...]: ...


def drops_lone_clip(n_items: int, batch_size: int) -> bool:
    """Whether a pass over ``n_items`` in batches of ``batch_size`` ends with a batch of one clip,
    which a training loader drops (batch norm cannot train on it)."""
    return n_items > batch_size and n_items % batch_size == 1


def make_loader(ds: Dataset, batch_size: int, *, shuffle: bool, seed: int, balanced: bool = False) -> DataLoader:
    """Batches of ``ds``; a training loader (``shuffle``) drops a last batch of one clip, which
    batch norm cannot train on.  ``balanced`` draws class-balanced with replacement."""
    drop_last = shuffle and drops_lone_clip(len(ds), batch_size)  # type: ignore[arg-type]
    if balanced:
        sampler = balanced_sampler(getattr(ds, "labels"), seed=seed)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=0)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, drop_last=drop_last, num_workers=0)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` holds a batch-norm layer (which cannot train on a batch of one clip)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fails_on_one_clip(model: nn.Module, ds: Dataset) -> bool:
    """Whether a training step on one clip of ``ds`` fails (batch norm over a single value per
    channel); probed on a copy, random state untouched."""
    if not has_batch_norm(model):
        return False
    probe = copy.deepcopy(model).train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            probe(ds[0][0][None])
        except ValueError:
            return True
    return False


class LocalContext:
    """One process: rank 0 of a world of 1, the writer; collectives are no-ops."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_writer(self) -> bool:
        """The only process logs and writes files."""
        return True

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` itself (nothing to average)."""
        return model

    def batch_size(self, global_batch: int) -> int:
        """Clips per step: all of ``global_batch``."""
        return global_batch

    def train_loader(self, ds: Dataset, cfg: TrainConfig, epoch: int) -> DataLoader:
        """The batches of epoch ``epoch``: shuffled (or class-balanced) with seed ``cfg.seed + epoch``."""
        return make_loader(ds, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, balanced=cfg.balanced_sampling)

    def check_batches(self, model: nn.Module, ds: Dataset, cfg: TrainConfig) -> None:
        """A clear error if every step would hold one clip (``batch_size`` 1) and the model
        cannot train on one (batch norm); a lone last clip is dropped by the loader."""
        if cfg.batch_size == 1 and len(ds) > 1 and fails_on_one_clip(model, ds):  # type: ignore[arg-type]
            raise CulturalMusicError("training.batch_size is 1, but the model has batch norm, which cannot train on "
                                     "one clip per step: use --batch-size 2 or more")

    def merge_train(self, loss: float, accuracy: float, clips: int) -> tuple[float, float, int]:
        """This process's figures, unchanged."""
        return loss, accuracy, clips

    def sync_state(self, model: nn.Module) -> None:
        """Nothing to broadcast."""

    def from_rank0(self, *values: float) -> tuple[float, ...]:
        """``values``, unchanged."""
        return tuple(values)
