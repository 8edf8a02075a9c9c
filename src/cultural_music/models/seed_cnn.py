"""``seed-cnn``: the reference design's CNN (Conv2D + LeakyReLU + MaxPooling2D + Dropout blocks,
then Flatten + Dense head), in PyTorch.

The only liberty taken: an adaptive max-pool before Flatten fixes the flattened size, so one
network accepts any clip length (a 30 s clip has 1,292 frames at hop 512; a 1 s clip 44).
"""

from __future__ import annotations

import torch
from torch import nn

from cultural_music.models import register

__all__ = ["SeedCNN"]


@register("seed-cnn", feature_kinds=("logmel", "musicnn"),
          summary="reference CNN: 4 conv blocks + dense head, Adam 1e-4, no recipe")
class SeedCNN(nn.Module):
    """Reference CNN.

    Parameters
    ----------
    n_classes
        Output classes.
    n_rows
        Feature rows of the input (``FeatureConfig.n_rows``; kept for the registry signature: any height works).
    channels
        Output channels of the conv blocks (3x3 kernels, 2x2 max-pool each).
    dropout
        Dropout after each conv block.
    dense
        Units of the hidden dense layer.
    head_dropout
        Dropout before the output layer.
    pooled
        ``(mels, frames)`` grid the last feature map is max-pooled to before Flatten.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        n_rows: int = 128,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.25,
        dense: int = 128,
        head_dropout: float = 0.5,
        pooled: tuple[int, int] = (4, 8),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
                nn.LeakyReLU(0.1),
                nn.MaxPool2d(2, ceil_mode=True),
                nn.Dropout(dropout),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(tuple(pooled))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * pooled[0] * pooled[1], dense),
            nn.LeakyReLU(0.1),
            nn.Dropout(head_dropout),
            nn.Linear(dense, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, n_rows, frames)`` features in 0..1 -> ``(batch, n_classes)`` logits."""
        return self.head(self.pool(self.features(x)))
