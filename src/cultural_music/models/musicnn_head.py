"""``musicnn``: a classifier head on frozen, pretrained musicnn embeddings.

The features (``FeatureConfig.kind = "musicnn-embedding"``, ``backbone`` ``"MSD_musicnn"`` or ``"MTT_musicnn"``) are the backbone's
1506-dim embedding of every 3 s patch of a clip, computed once and cached by feature
extraction; this model only pools them over the patches (mean and max), standardises them and
classifies them linearly (L2-regularised logistic regression fitted by full-batch L-BFGS, see
``DEFAULTS``), so training takes seconds.  The model folder's config records the backbone (``features.backbone``).
"""

from __future__ import annotations

import torch
from torch import nn

from cultural_music.config import MUSICNN_EMBEDDING, MUSICNN_EMBEDDING_DIM, MUSICNN_SAMPLE_RATE
from cultural_music.errors import ParameterError
from cultural_music.models import ConvexParts, register

__all__ = ["EmbeddingHead", "FrozenEmbeddingModel", "MusicnnHead", "DEFAULTS", "EMBEDDING_AUGMENT", "embedding_defaults"]

#: augmentation recipe of the embedding heads: ``n_variants`` copies of each training file,
#: pitch-shifted (+-2 semitones) and time-stretched (rate 0.85-1.15, unitless), each with
#: probability 0.8, no noise; embedded once, cached, seeded by (seed, file sha, variant), fitted
#: as extra training rows of their recording (never held out).  No spectrogram masking.
EMBEDDING_AUGMENT: dict[str, object] = {
    "pitch_shift_p": 0.8, "pitch_shift_semitones": (-2.0, 2.0),
    "time_stretch_p": 0.8, "time_stretch_range": (0.85, 1.15),
    "noise_p": 0.0, "spec_mask_p": 0.0,
}

#: settings of ``musicnn`` (config section -> overrides)
DEFAULTS: dict[str, dict[str, object]] = {
    "audio": {"sample_rate": MUSICNN_SAMPLE_RATE},
    "features": {"kind": MUSICNN_EMBEDDING, "backbone": "MSD_musicnn"},
    # masking rows/patches of an embedding is not SpecAugment; the waveform variants
    # (--augment-variants N) are EMBEDDING_AUGMENT's pitch / tempo copies, off by default (see
    # docs/models.md, "Variants": they cost N backbone passes per training file)
    "augment": {**EMBEDDING_AUGMENT, "n_variants": 0},
    # L2-regularised logistic regression on standardised pooled embeddings, fitted to convergence
    "train": {
        "optimizer": "lbfgs",
        "learning_rate": 1.0,
        "weight_decay": 1e-2,
        "batch_size": 1024,
        "epochs": 30,
        "patience": 3,
        "mixup_alpha": 0.0,
        "class_weighting": "balanced",
        "lr_schedule": "none",
        # scikit-learn's C and the class weighting, chosen by group cross-validation on the
        # training side (training.head_search); these values are used where it cannot fold
        "logreg_c": 0.1,
        "tune": ("logreg_c", "class_weighting"),
    },
}


class EmbeddingHead(nn.Module):
    """Pool patch embeddings over time, standardise, classify.

    Parameters
    ----------
    n_classes
        Output classes.
    dim
        Embedding size.
    hidden
        Units of a hidden layer; 0 (default) = a linear classifier on the standardised pooled
        embedding, i.e. (multinomial) logistic regression.
    dropout
        Dropout on the pooled embedding and on the hidden layer.
    pooling
        ``"mean"`` or ``"mean+max"`` over the patches of a clip.
    """

    def __init__(self, *, n_classes: int, dim: int, hidden: int = 0, dropout: float = 0.0, pooling: str = "mean+max") -> None:
        super().__init__()
        if pooling not in ("mean", "mean+max"):
            raise ParameterError(f"The 'pooling' parameter of EmbeddingHead must be 'mean' or 'mean+max'. Got {pooling!r} instead.")
        self.pooling = pooling
        in_dim = dim * (2 if pooling == "mean+max" else 1)
        # standardisation only (no affine scale, which would let the weights dodge the L2 penalty);
        # running statistics are the plain average over the training batches
        self.norm = nn.BatchNorm1d(in_dim, affine=False, momentum=None)
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, n_classes))

    def pool(self, emb: torch.Tensor) -> torch.Tensor:
        """``(batch, dim, patches)`` -> pooled ``(batch, dim)`` (mean) or ``(batch, 2 * dim)`` (mean, max)."""
        pooled = emb.mean(dim=2)
        if self.pooling == "mean+max":
            pooled = torch.cat([pooled, emb.amax(dim=2)], dim=1)
        return pooled

    def convex_parts(self) -> ConvexParts | None:
        """Pooling, standardisation and the one linear layer (``hidden=0``): logistic regression,
        fitted by :mod:`cultural_music.training.convex_head`; ``None`` with a hidden layer."""
        if len(self.net) != 2:
            return None
        return ConvexParts(self.pool, self.norm.running_mean, self.norm.running_var, self.norm.eps, self.net[-1])

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """``(batch, dim, patches)`` -> ``(batch, n_classes)`` logits."""
        pooled = self.pool(emb)
        if self.training:
            return self.net(self.norm(pooled))
        # eval: the same standardisation written out, which the ONNX exporter can translate
        # without knowing the channel count (its batch_norm cannot)
        return self.net((pooled - self.norm.running_mean) / torch.sqrt(self.norm.running_var + self.norm.eps))


class FrozenEmbeddingModel(nn.Module):
    """Head on cached frozen-backbone embeddings ``(batch, 1, DIM, patches)`` -> logits; a
    subclass names the model (``NAME``) and the embedding size (``DIM``).

    Parameters
    ----------
    n_classes
        Output classes.
    n_rows
        Feature rows (``FeatureConfig.n_rows``); must be the embedding size ``DIM``.
    hidden, dropout, pooling
        See :class:`EmbeddingHead`.
    """

    NAME = ""
    DIM = 0

    def __init__(self, *, n_classes: int, n_rows: int | None = None, hidden: int = 0, dropout: float = 0.0,
                 pooling: str = "mean+max") -> None:
        super().__init__()
        n_rows = self.DIM if n_rows is None else n_rows
        if n_rows != self.DIM:
            raise ParameterError(
                f"The model {self.NAME!r} needs its backbone's embeddings ({self.DIM} feature rows). Got {n_rows} rows "
                f"instead; train it with the config from cultural_music.models.default_config({self.NAME!r})."
            )
        self.head = EmbeddingHead(n_classes=n_classes, dim=n_rows, hidden=hidden, dropout=dropout, pooling=pooling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, DIM, patches)`` embeddings -> ``(batch, n_classes)`` logits."""
        return self.head(x[:, 0])

    def convex_parts(self) -> ConvexParts | None:
        """The head's convex parts (see :meth:`EmbeddingHead.convex_parts`), pooling the model input."""
        parts = self.head.convex_parts()
        if parts is not None:
            parts.pool = lambda x: self.head.pool(x[:, 0])
        return parts


def embedding_defaults(kind: str, backbone: str) -> dict[str, dict[str, object]]:
    """:data:`DEFAULTS` (the head's recipe) for the embeddings of another ``kind`` / ``backbone``."""
    out = {section: dict(values) for section, values in DEFAULTS.items()}
    out["features"] = {"kind": kind, "backbone": backbone}
    return out


@register("musicnn", defaults=DEFAULTS, feature_kinds=(MUSICNN_EMBEDDING,),
          summary="frozen pretrained musicnn (MSD) embeddings, cached; logistic-regression head (L-BFGS)")
class MusicnnHead(FrozenEmbeddingModel):
    """Head on cached musicnn embeddings: ``(batch, 1, 1506, patches)`` -> logits (see
    :class:`FrozenEmbeddingModel`)."""

    NAME = "musicnn"
    DIM = MUSICNN_EMBEDDING_DIM
