"""cultural-music: learn kinds of music from folders of recordings, then name new recordings.

Nothing heavy is imported here; torch and friends load only when a function needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "Config", "predict_cultural_music_type", "Classifier"]


def __getattr__(name: str) -> Any:
    if name == "Config":
        from cultural_music.config import Config

        return Config
    if name in ("predict_cultural_music_type", "Classifier"):
        from cultural_music.inference import classifier as predict

        return getattr(predict, name)
    raise AttributeError(f"module 'cultural_music' has no attribute {name!r}")
