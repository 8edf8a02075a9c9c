"""``yamnet`` and ``fusion``: the same head as ``musicnn`` on other frozen, pretrained embeddings.

- ``yamnet``: YAMNet's 1024-d embedding of every 0.96 s patch (0.48 s apart), AudioSet's
  521 everyday-sound classes behind it (feature kind ``"yamnet-embedding"``).
- ``yamnet-mid``: YAMNet's mid-level embedding of the same patches, 1536 rows (the mean and max
  over time and mel of the feature maps after separable blocks 5 and 7,
  ``"yamnet-mid-embedding"``): finer sound structure than the last layer (spoken digits, strokes).
- ``fusion``: musicnn (MSD) and YAMNet embeddings joined, 2530 rows on YAMNet's patch grid
  (``"fusion-embedding"``, see :func:`cultural_music.features.compute.fuse_embeddings`).

Both are cached like every feature, and their head (logistic regression on the pooled,
standardised embedding) is fitted and tuned exactly as ``musicnn``'s.
"""

from __future__ import annotations

from cultural_music.config import EMBEDDING_DIMS, FUSION_EMBEDDING, YAMNET_EMBEDDING, YAMNET_MID_EMBEDDING
from cultural_music.models import register
from cultural_music.models.musicnn_head import FrozenEmbeddingModel, embedding_defaults

__all__ = ["YamnetHead", "YamnetMidHead", "FusionHead"]


@register("yamnet", defaults=embedding_defaults(YAMNET_EMBEDDING, "yamnet"), feature_kinds=(YAMNET_EMBEDDING,),
          summary="frozen pretrained YAMNet (AudioSet) embeddings, cached; logistic-regression head")
class YamnetHead(FrozenEmbeddingModel):
    """Head on cached YAMNet embeddings: ``(batch, 1, 1024, patches)`` -> logits."""

    NAME = "yamnet"
    DIM = EMBEDDING_DIMS[YAMNET_EMBEDDING]


@register("yamnet-mid", defaults=embedding_defaults(YAMNET_MID_EMBEDDING, "yamnet"), feature_kinds=(YAMNET_MID_EMBEDDING,),
          summary="frozen pretrained YAMNet mid-level embeddings (blocks 5 and 7), cached; logistic-regression head")
class YamnetMidHead(FrozenEmbeddingModel):
    """Head on cached YAMNet mid-level embeddings: ``(batch, 1, 1536, patches)`` -> logits."""

    NAME = "yamnet-mid"
    DIM = EMBEDDING_DIMS[YAMNET_MID_EMBEDDING]


@register("fusion", defaults=embedding_defaults(FUSION_EMBEDDING, "MSD_musicnn+yamnet"), feature_kinds=(FUSION_EMBEDDING,),
          summary="musicnn + YAMNet embeddings concatenated, cached; logistic-regression head")
class FusionHead(FrozenEmbeddingModel):
    """Head on cached fused embeddings: ``(batch, 1, 2530, patches)`` -> logits."""

    NAME = "fusion"
    DIM = EMBEDDING_DIMS[FUSION_EMBEDDING]
