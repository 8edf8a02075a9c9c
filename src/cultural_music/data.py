"""PyTorch dataset over cached features, read lazily from memory-mapped ``.npy`` files.

Nothing is held in RAM but the batch being built: each item opens its file as a memory map,
copies one clip ``(n_mels, frames)`` and lets the map go.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment.spec_mask import SpecMask
from .config import AugmentConfig
from .dataset import Recording
from .extract import ExtractResult

__all__ = ["ClipItem", "ClipDataset", "build_items"]


@dataclass(frozen=True)
class ClipItem:
    """One clip: where its features are, which clip of the file, its class index."""

    clean_path: Path
    clip: int
    label: int
    rel_path: str
    aug_path: Path | None = None
    n_variants: int = 0


def build_items(recordings: list[Recording], extracted: ExtractResult, classes: list[str], split: str) -> list[ClipItem]:
    """All clips of the recordings in ``split`` that have features, in a stable order."""
    index = {c: i for i, c in enumerate(classes)}
    items: list[ClipItem] = []
    for rec in recordings:
        entry = extracted.entries.get(rec.rel_path)
        if rec.split != split or entry is None or rec.label not in index:
            continue
        n_var = 0
        if entry.aug_path is not None:
            n_var = int(np.load(entry.aug_path, mmap_mode="r").shape[0])
        for clip in range(entry.n_clips):
            items.append(ClipItem(entry.clean_path, clip, index[rec.label], rec.rel_path, entry.aug_path, n_var))
    return items


class ClipDataset(Dataset):
    """Features of clips, with random variant choice and spectrogram masking for training.

    Parameters
    ----------
    items
        Clips from :func:`build_items`.
    train
        If True, each access draws the clean clip or one cached augmented variant, then applies
        :class:`SpecMask`; the draw depends only on ``(seed, epoch, index)``.
    seed
        Seed of the per-item generators.
    augment
        Masking settings (``spec_mask_p``, ``freq_mask_max``, ``time_mask_max``).
    """

    def __init__(self, items: list[ClipItem], *, train: bool = False, seed: int = 0, augment: AugmentConfig | None = None) -> None:
        self.items = items
        self.train = train
        self.seed = seed
        self.epoch = 0
        cfg = augment or AugmentConfig()
        self.mask = SpecMask(freq_mask_max=cfg.freq_mask_max, time_mask_max=cfg.time_mask_max, p=cfg.spec_mask_p)

    def set_epoch(self, epoch: int) -> None:
        """Choose the random stream of an epoch (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every item ``(n_items,)``."""
        return np.array([it.label for it in self.items], dtype=np.int64)

    def features(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """float32 ``(n_mels, frames)`` of item ``i`` (variant drawn with ``rng`` if given)."""
        it = self.items[i]
        variant = 0
        if rng is not None and it.aug_path is not None and it.n_variants > 0:
            variant = int(rng.integers(0, it.n_variants + 1))
        if variant == 0:
            arr = np.load(it.clean_path, mmap_mode="r")
            x = np.array(arr[it.clip], dtype=np.float32)
        else:
            arr = np.load(it.aug_path, mmap_mode="r")
            x = np.array(arr[variant - 1, it.clip], dtype=np.float32)
        del arr
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            x = self.mask(self.features(i, rng), rng)
        else:
            x = self.features(i)
        return torch.from_numpy(np.ascontiguousarray(x))[None], self.items[i].label
