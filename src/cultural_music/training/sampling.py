"""Counter class imbalance: class-balanced loss weights and a class-balanced sampler."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from cultural_music.errors import ParameterError

__all__ = ["class_counts", "balanced_class_weights", "balanced_sampler"]


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Clips per class, int64 ``(n_classes,)``, from class indices ``(n_items,)``."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ParameterError(f"The 'labels' parameter must hold class indices in [0, {n_classes}). Got {y.min()}..{y.max()} instead.")
    return np.bincount(y, minlength=n_classes).astype(np.int64)


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Loss weights ``n / (k * n_c)`` for the ``k`` classes present (0 for absent ones).

    With these weights, the weighted mean loss over a data set equals the mean over classes
    of each class's mean loss: every class counts as much, however many clips it has.

    Returns
    -------
    torch.Tensor
        float32 ``(n_classes,)``.
    """
    counts = class_counts(labels, n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(labels: np.ndarray, *, seed: int, num_samples: int | None = None) -> WeightedRandomSampler:
    """Draw items with replacement so that every class is equally likely per draw.

    Parameters
    ----------
    labels
        Class index of every item ``(n_items,)``.
    seed
        Seed of the sampler's generator (the draws depend on nothing else).
    num_samples
        Draws per pass (default: the number of items, so an epoch keeps its length).
    """
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        raise ParameterError("The 'labels' parameter of balanced_sampler must not be empty.")
    counts = np.bincount(y)
    weights = 1.0 / counts[y]
    gen = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples or len(y), replacement=True, generator=gen)
