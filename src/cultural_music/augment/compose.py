"""Chain waveform transforms, and build the training chain from an :class:`AugmentConfig`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from cultural_music.config import AugmentConfig
from cultural_music.errors import ParameterError
from cultural_music.augment.pitch_shift import PitchShift
from cultural_music.augment.time_stretch import TimeStretch
from cultural_music.augment.white_noise import WhiteNoise

__all__ = ["Compose", "from_config"]


class WaveformTransform(Protocol):
    """Anything called as ``transform(samples, sample_rate, rng) -> samples``."""

    def __call__(self, samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray: ...


class Compose:
    """Apply waveform transforms one after the other, all drawing from the same generator.

    Parameters
    ----------
    transforms
        Transforms called as ``t(samples, sample_rate, rng)``, applied in the given order.
    """

    def __init__(self, transforms: Sequence[WaveformTransform]) -> None:
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise ParameterError(f"The 'transforms' parameter of Compose must hold callables. Got {t!r} instead.")
        self.transforms = transforms

    def __call__(self, samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """Transform float32 ``(samples,)`` at ``sample_rate`` Hz; float32, same length out."""
        x = np.asarray(samples, dtype=np.float32)
        for t in self.transforms:
            x = t(x, sample_rate, rng)
        return x.copy() if x is samples else x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def from_config(cfg: AugmentConfig) -> Compose:
    """Time-stretch, then pitch-shift, then white noise, with ranges and probabilities of ``cfg``."""
    return Compose(
        [
            TimeStretch(*cfg.time_stretch_range, p=cfg.time_stretch_p),
            PitchShift(*cfg.pitch_shift_semitones, p=cfg.pitch_shift_p),
            WhiteNoise(*cfg.noise_snr_db, p=cfg.noise_p),
        ]
    )
