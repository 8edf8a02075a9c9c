"""Time-stretch a mono waveform with librosa's phase vocoder, keeping its length."""

from __future__ import annotations

from typing import Any

import librosa
import numpy as np

from cultural_music.errors import ParameterError, check_in_range

__all__ = ["TimeStretch"]


class TimeStretch:
    """Change tempo without changing pitch (``librosa.effects.time_stretch``).

    A rate above 1 speeds the audio up (events come closer together); the result is cropped
    or zero-padded at the end back to the input length.

    Parameters
    ----------
    min_rate, max_rate
        Range of the stretch rate (unitless speed factor), drawn uniformly; within [0.1, 10].
    p
        Probability of applying the transform, in [0, 1].
    """

    def __init__(self, min_rate: float = 0.85, max_rate: float = 1.15, p: float = 0.5) -> None:
        check_in_range("min_rate", "TimeStretch", min_rate, 0.1, 10.0)
        check_in_range("max_rate", "TimeStretch", max_rate, 0.1, 10.0)
        if min_rate > max_rate:
            raise ParameterError(
                f"The 'min_rate' parameter of TimeStretch must be <= max_rate ({max_rate!r}). "
                f"Got {min_rate!r} instead."
            )
        check_in_range("p", "TimeStretch", p, 0.0, 1.0)
        self.min_rate, self.max_rate, self.p = float(min_rate), float(max_rate), float(p)

    def randomize(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        """Draw ``{"should_apply": bool, "rate": float}`` (both are always drawn)."""
        should_apply = bool(rng.random() < self.p)
        rate = float(rng.uniform(self.min_rate, self.max_rate))
        return {"should_apply": should_apply, "rate": rate}

    def apply(self, samples: np.ndarray, sample_rate: int, params: dict[str, Any]) -> np.ndarray:
        """Stretch float32 ``(samples,)`` by ``params["rate"]``; float32 ``(samples,)`` out."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ParameterError(f"The 'samples' parameter of TimeStretch must be 1-D (mono). Got shape {x.shape} instead.")
        if not params["should_apply"] or x.size == 0:
            return x.copy()
        y = librosa.effects.time_stretch(x, rate=params["rate"])
        return librosa.util.fix_length(y, size=x.size).astype(np.float32, copy=False)

    def __call__(self, samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """Randomize with ``rng``, then apply to float32 ``(samples,)`` at ``sample_rate`` Hz."""
        return self.apply(samples, sample_rate, self.randomize(rng, sample_rate))

    def __repr__(self) -> str:
        return f"TimeStretch(min_rate={self.min_rate}, max_rate={self.max_rate}, p={self.p})"
