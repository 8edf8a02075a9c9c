"""Pretrained feature extractors (backbones) for the classifier heads.

``musicnn`` and ``yamnet`` (torch) are imported lazily, so ``import cultural_music.backbones``
stays light.  Their weights ship inside the package (``backbones/weights/``, see
:mod:`cultural_music.backbones.packaged`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MusicnnBackbone",
    "load_musicnn",
    "patches",
    "YamnetBackbone",
    "load_yamnet",
    "pretrained_yamnet",
    "yamnet_log_mel",
    "yamnet_patches",
]

_LAZY = {
    "MusicnnBackbone": "musicnn", "load_musicnn": "musicnn",
    "patches": "musicnn", "YamnetBackbone": "yamnet", "load_yamnet": "yamnet",
    "pretrained_yamnet": "yamnet", "yamnet_log_mel": "yamnet", "yamnet_patches": "yamnet",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'cultural_music.backbones' has no attribute {name!r}")
