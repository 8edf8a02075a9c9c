"""One exception tree for the whole package.

Every error we raise on purpose derives from :class:`CulturalMusicError`; the CLI turns these
into a one-line message and a non-zero exit code.  Messages name the file and what is wrong.
"""

from __future__ import annotations

__all__ = [
    "CulturalMusicError",
    "ParameterError",
    "AudioLoadError",
    "DatasetError",
    "ModelLoadError",
    "OutputError",
]


class CulturalMusicError(Exception):
    """Base class of every error this package raises on purpose."""


class ParameterError(CulturalMusicError, ValueError):
    """A parameter has a value outside what the function accepts.

    Messages follow scikit-learn: "The 'x' parameter of Y must be ... Got ... instead."
    """


class AudioLoadError(CulturalMusicError):
    """An audio file cannot be read or holds no usable audio.

    Parameters
    ----------
    path
        The file that failed.
    reason
        What is wrong, in a few words (e.g. "empty file (0 bytes)").
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(CulturalMusicError):
    """A data folder cannot be used for training or evaluation (too few classes, files, ...)."""


class ModelLoadError(CulturalMusicError):
    """A model folder is missing a file, has an edited file, or is not a model folder."""


class OutputError(CulturalMusicError):
    """An output file or folder cannot be written (permissions, disk full, ...)."""


def check_in_range(name: str, owner: str, value: float, low: float, high: float) -> None:
    """Raise :class:`ParameterError` unless ``low <= value <= high``."""
    if not (low <= value <= high):
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be in [{low}, {high}]. Got {value!r} instead."
        )


def check_positive(name: str, owner: str, value: float) -> None:
    """Raise :class:`ParameterError` unless ``value > 0``."""
    if not value > 0:
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be > 0. Got {value!r} instead."
        )
