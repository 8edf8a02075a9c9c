"""``res-cnn``: a small residual CNN with batch norm and global pooling, trained with a recipe.

Input batch norm per mel band, a 3x3 stem, then residual blocks (two 3x3 convs with batch norm,
a 1x1 projection on the shortcut when the width changes), each followed by 2x2 average pooling.
The last feature map is averaged over frequency, then mean- and max-pooled over time, so any
clip length works (1 s and 30 s clips alike); dropout and one linear layer give the logits.

Its recipe (see ``defaults`` below, measured in ``docs/models.md``): AdamW at 1e-3 with weight
decay, cosine learning-rate schedule with one warm-up epoch, mixup, class-balanced loss weights,
and the SpecAugment masks and cached waveform augmentations of :class:`AugmentConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cultural_music.errors import ParameterError
from cultural_music.models import register

if TYPE_CHECKING:
    from cultural_music.config import Config

__all__ = ["ResCNN", "RECIPE", "min_batch_size", "check_input_size"]

#: training recipe of ``res-cnn`` (config section -> overrides)
RECIPE: dict[str, dict[str, object]] = {
    "train": {
        "learning_rate": 1e-3,
        "weight_decay": 1e-2,
        "lr_schedule": "cosine",
        "warmup_epochs": 1.0,
        "mixup_alpha": 0.2,
        "class_weighting": "balanced",
        "batch_size": 32,
        "epochs": 40,
        "patience": 10,
    },
}


class _ResBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, ReLU, then 2x2 average pooling:
    ``(B, c_in, F, T) -> (B, c_out, ceil(F/2), ceil(T/2))``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity() if c_in == c_out else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.pool = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.body(x) + self.shortcut(x)))


@register("res-cnn", defaults=RECIPE, feature_kinds=("logmel", "musicnn"),
          summary="residual CNN, batch norm, global pooling; AdamW + cosine + mixup + balanced loss")
class ResCNN(nn.Module):
    """Residual CNN for spectrograms of any length.

    Parameters
    ----------
    n_classes
        Output classes.
    n_rows
        Feature rows of the input (``FeatureConfig.n_rows``: mel bands; the input batch norm has one channel per row).
    stem
        Channels of the stem conv (3x3, then 2x2 average pooling).
    channels
        Output channels of the residual blocks.
    dropout
        Dropout before the linear layer.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        n_rows: int = 128,
        stem: int = 8,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(n_rows)
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True), nn.AvgPool2d(2, ceil_mode=True)
        )
        blocks = []
        c_in = stem
        for c_out in channels:
            blocks.append(_ResBlock(c_in, c_out))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, n_rows, frames)`` -> ``(batch, n_classes)`` logits."""
        x = self.input_bn(x.transpose(1, 2)).transpose(1, 2)  # normalise each mel band
        h = self.blocks(self.stem(x)).mean(dim=2)  # (B, C, T')
        return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))


#: halvings (ceil) of the feature map before the last block's batch norm: stem + 3 blocks
_HALVINGS_BEFORE_LAST_BN = 4


def min_batch_size(rows: int, frames: int) -> int:
    """Smallest training batch ``res-cnn`` can run on features ``(rows, frames)``: batch norm
    in training needs more than one value per channel, and the last block's sees
    ``ceil(rows / 16) * ceil(frames / 16)`` values per clip."""
    step = 2**_HALVINGS_BEFORE_LAST_BN
    per_clip = -(-rows // step) * -(-frames // step)
    return 1 if per_clip > 1 else 2


def check_input_size(cfg: "Config") -> None:
    """Raise :class:`ParameterError` if ``res-cnn`` cannot train with ``cfg`` (batch size too
    small for the feature map of one clip); other models: nothing to check."""
    if cfg.train.model != "res-cnn":
        return
    rows, frames = cfg.features.n_rows, cfg.features.n_frames(cfg.audio.clip_samples)
    need = min_batch_size(rows, frames)
    if cfg.train.batch_size < need:
        raise ParameterError(
            f"The 'batch_size' parameter of TrainConfig must be at least {need} for model 'res-cnn' with {rows} mel bands "
            f"and {frames} frames per clip (its batch norm needs more than one value per channel). Got "
            f"{cfg.train.batch_size} instead; use --batch-size {need} or more, --n-mels 17 or more, or --duration "
            f"{16 * cfg.features.hop_length / cfg.audio.sample_rate:.2f} (s) or more."
        )
