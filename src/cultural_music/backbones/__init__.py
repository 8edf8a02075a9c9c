"""Pretrained feature extractors (backbones) for the classifier heads.

``musicnn`` (torch) is imported lazily, so ``import cultural_music.backbones`` stays light.
"""

from __future__ import annotations

from typing import Any

from .tf_bundle import read_tf_checkpoint

__all__ = [
    "read_tf_checkpoint",
    "MusicnnBackbone",
    "load_musicnn",
    "musicnn_logmel",
    "patches",
]

_MUSICNN_NAMES = {"MusicnnBackbone", "load_musicnn", "musicnn_logmel", "patches"}


def __getattr__(name: str) -> Any:
    if name in _MUSICNN_NAMES:
        from . import musicnn

        return getattr(musicnn, name)
    raise AttributeError(f"module 'cultural_music.backbones' has no attribute {name!r}")
