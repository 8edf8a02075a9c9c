"""PyTorch dataset over cached features, read lazily from the ``.npy`` files of the cache.

Nothing is held in RAM but the batch being built: each item reads the bytes of its one clip
``(n_mels, frames)`` with ``os.pread`` at an offset taken from the file's header (read once per
file).  Nothing stays mapped, so peak memory does not grow with the number of clips; measured
faster than opening a memory map per item (see ``docs/performance.md``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cultural_music.augment.spec_mask import SpecMask
from cultural_music.features.cache import read_npy_header
from cultural_music.config import AugmentConfig
from cultural_music.data.dataset import Recording
from cultural_music.errors import CulturalMusicError
from cultural_music.features.extract import ExtractResult

__all__ = ["ClipItem", "ClipDataset", "VariantDataset", "build_items"]


@dataclass(frozen=True)
class ClipItem:
    """One clip: where its features are, which clip of the file, its class index.

    A pointer into one :class:`~cultural_music.features.cache.FeatureEntry` (the layer below:
    one file's cached features, which a job's ``JobResult`` carries): ``clean_path``,
    ``rel_path``, ``aug_path`` and ``n_variants`` are the entry's, ``clip`` indexes its clips."""

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
        for clip in range(entry.n_clips):  # n_variants is 0 when there is no aug_path
            items.append(ClipItem(entry.clean_path, clip, index[rec.label], rec.rel_path, entry.aug_path, entry.n_variants))
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
        self._layout: dict[Path, tuple[int, tuple[int, ...]]] = {}
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
            return self._read(it.clean_path, it.clip)
        assert it.aug_path is not None
        return self._read(it.aug_path, (variant - 1) * self._shape(it.aug_path)[1] + it.clip)

    def _shape(self, path: Path) -> tuple[int, ...]:
        if path not in self._layout:
            self._layout[path] = _npy_layout(path)
        return self._layout[path][1]

    def _read(self, path: Path, k: int) -> np.ndarray:
        """The ``k``-th ``(n_mels, frames)`` map of the file (counting over all leading axes)."""
        shape = self._shape(path)
        offset = self._layout[path][0]
        out = np.empty(shape[-2:], dtype=np.float32)
        try:
            with open(path, "rb", buffering=0) as fh:
                n = os.preadv(fh.fileno(), [out], offset + k * out.nbytes)
        except OSError as err:
            raise CulturalMusicError(f"{path}: cannot read cached features ({err.strerror or err})") from err
        if n != out.nbytes:
            raise CulturalMusicError(f"{path}: cached features are truncated (clear the cache: cultural-music cache clear)")
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            x = self.mask(self.features(i, rng), rng)
        else:
            x = self.features(i)
        return torch.from_numpy(np.ascontiguousarray(x))[None], self.items[i].label


class VariantDataset(ClipDataset):
    """Every cached augmented variant of ``items``, one row per (clip, variant), in a stable
    order (item by item, variants 1..n): what a convex head fits as extra training rows.

    ``items[j]`` is the row's source clip (its ``rel_path`` and ``label``, so a variant keeps its
    recording's group); ``variants[j]`` is its variant number, ``1..n_variants``.  Items without
    cached variants give no row.  Rows are read as they are stored (no masking, no draw).
    """

    def __init__(self, items: list[ClipItem]) -> None:
        rows = [(it, v) for it in items if it.aug_path is not None for v in range(1, it.n_variants + 1)]
        super().__init__([it for it, _ in rows])
        self.variants = [v for _, v in rows]

    def features(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """float32 ``(n_mels, frames)`` of row ``i``: variant ``variants[i]`` of its clip."""
        it, v = self.items[i], self.variants[i]
        assert it.aug_path is not None
        return self._read(it.aug_path, (v - 1) * self._shape(it.aug_path)[1] + it.clip)


def _npy_layout(path: Path) -> tuple[int, tuple[int, ...]]:
    """Data offset in bytes and shape of a float32 C-order ``.npy`` file."""
    try:
        with open(path, "rb") as fh:
            shape, fortran, dtype = read_npy_header(fh)
            offset = fh.tell()
    except (OSError, ValueError) as err:
        raise CulturalMusicError(f"{path}: cannot read cached features ({err})") from err
    if dtype != np.float32 or fortran or len(shape) < 3:
        raise CulturalMusicError(f"{path}: cached features are not float32 (n, n_mels, frames) arrays")
    return offset, tuple(int(n) for n in shape)
