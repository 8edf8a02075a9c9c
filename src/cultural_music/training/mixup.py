"""Mixup (Zhang et al., 2018): train on convex mixtures of pairs of examples and their labels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cultural_music.errors import check_in_range

__all__ = ["MixedBatch", "mixup_batch"]


class MixedBatch:
    """A mixed batch ``x = lam * x + (1 - lam) * x[perm]`` and the loss that goes with it.

    Attributes
    ----------
    x
        Mixed inputs, same shape as the originals.
    y_a, y_b
        Class indices ``(batch,)`` of the two mixed examples.
    lam
        Weight of ``y_a`` in [0, 1].
    """

    def __init__(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> None:
        self.x, self.y_a, self.y_b, self.lam = x, y_a, y_b, lam

    def loss(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        """``lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b)``."""
        return self.lam * loss_fn(logits, self.y_a) + (1.0 - self.lam) * loss_fn(logits, self.y_b)


def mixup_batch(x: torch.Tensor, y: torch.Tensor, *, alpha: float, rng: np.random.Generator) -> MixedBatch:
    """Mix a batch with a random permutation of itself.

    Parameters
    ----------
    x
        Inputs ``(batch, ...)``.
    y
        Class indices ``(batch,)``.
    alpha
        ``lam ~ Beta(alpha, alpha)``; ``alpha == 0`` returns the batch unmixed (``lam = 1``).
    rng
        Draws ``lam`` and the permutation.
    """
    check_in_range("alpha", "mixup_batch", alpha, 0.0, 100.0)
    if alpha == 0 or len(y) < 2:
        return MixedBatch(x, y, y, 1.0)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(y)))
    return MixedBatch(lam * x + (1.0 - lam) * x[perm], y, y[perm], lam)
