"""``musicnn-finetune``: the pretrained musicnn network fine-tuned end to end, with a new head.

Input: musicnn log-mels (``FeatureConfig.kind = "musicnn"``, 16 kHz), ``(batch, 1, 96, frames)``.
Each clip is cut into covering 3 s patches (as for the frozen embeddings), every patch goes
through the backbone (initialised from ``MSD_musicnn`` in the installed ``musicnn`` wheel), the
patch embeddings are averaged and classified by an :class:`EmbeddingHead`.  The backbone learns
at ``TrainConfig.backbone_lr_scale`` times the head's rate, and its batch-norm statistics stay
frozen (small batches would ruin them).  Much slower than ``musicnn`` on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cultural_music.backbones.musicnn import covering_patches
from cultural_music.config import MUSICNN, MUSICNN_EMBEDDING_DIM, MUSICNN_N_MELS, MUSICNN_SAMPLE_RATE
from cultural_music.errors import ParameterError
from cultural_music.models import register
from cultural_music.models.musicnn_head import EmbeddingHead

__all__ = ["MusicnnFinetune", "DEFAULTS"]

DEFAULTS: dict[str, dict[str, object]] = {
    "audio": {"sample_rate": MUSICNN_SAMPLE_RATE},
    "features": {"kind": MUSICNN},
    "augment": {"spec_mask_p": 0.5},
    "train": {
        "learning_rate": 1e-3,
        "backbone_lr_scale": 0.1,
        "weight_decay": 1e-2,
        "batch_size": 16,
        "epochs": 12,
        "patience": 4,
        "class_weighting": "balanced",
        "lr_schedule": "cosine",
    },
}


@register("musicnn-finetune", defaults=DEFAULTS, feature_kinds=(MUSICNN,),
          summary="pretrained musicnn (MSD) fine-tuned end to end with a new head (slow on CPU)")
class MusicnnFinetune(nn.Module):
    """Backbone + head on musicnn log-mels.

    Parameters
    ----------
    n_classes
        Output classes.
    n_rows
        Feature rows (``FeatureConfig.n_rows``): the mel bands, must be 96.
    backbone
        Pretrained weights to start from (``"MSD_musicnn"`` or ``"MTT_musicnn"``); ``None`` = random
        (tests).  A saved model's weights replace them on loading.
    hidden, dropout
        See :class:`EmbeddingHead`.
    """

    def __init__(self, *, n_classes: int, n_rows: int = MUSICNN_N_MELS, backbone: str | None = "MSD_musicnn",
                 hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        if n_rows != MUSICNN_N_MELS:
            raise ParameterError(
                f"The model 'musicnn-finetune' needs musicnn log-mels ({MUSICNN_N_MELS} rows). Got {n_rows} rows instead; "
                "train it with the config from cultural_music.models.default_config('musicnn-finetune')."
            )
        from cultural_music.backbones.musicnn import MusicnnBackbone, load_musicnn

        self.backbone = load_musicnn(backbone) if backbone else MusicnnBackbone()
        # the tag output layers are not used: keep them out of the optimiser
        for p in list(self.backbone.output.parameters()) + list(self.backbone.dense.parameters()):
            p.requires_grad_(False)
        for mod in (self.backbone.pool_bn, self.backbone.dense_bn):
            for p in mod.parameters():
                p.requires_grad_(False)
        self.head = EmbeddingHead(n_classes=n_classes, dim=MUSICNN_EMBEDDING_DIM, hidden=hidden, dropout=dropout)

    def train(self, mode: bool = True) -> "MusicnnFinetune":
        """Train mode for the head and backbone weights; backbone batch norms stay in eval mode."""
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def param_groups(self, lr: float, backbone_scale: float) -> list[dict[str, Any]]:
        """Optimiser groups: trainable backbone weights at ``lr * backbone_scale``, head at ``lr``."""
        back = [p for p in self.backbone.parameters() if p.requires_grad]
        return [{"params": back, "lr": lr * backbone_scale}, {"params": list(self.head.parameters()), "lr": lr}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, 96, frames)`` log-mels -> ``(batch, n_classes)`` logits."""
        logmel = x[:, 0].transpose(1, 2)  # (B, frames, 96)
        patches = covering_patches(logmel)  # (B * P, 187, 96), as for the cached embeddings
        emb = self.backbone.embedding(patches)  # (B * P, 1506)
        emb = emb.reshape(x.shape[0], -1, MUSICNN_EMBEDDING_DIM).transpose(1, 2)
        return self.head(emb)
