"""Add Gaussian white noise at a random signal-to-noise ratio."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cultural_music.errors import ParameterError, check_in_range

__all__ = ["WhiteNoise"]


class WhiteNoise:
    """Add Gaussian white noise whose RMS sits ``snr_db`` dB below the signal's RMS.

    Silent input (RMS 0) is returned unchanged.

    Parameters
    ----------
    min_snr_db, max_snr_db
        Range of the signal-to-noise ratio in dB, drawn uniformly.
    p
        Probability of applying the transform, in [0, 1].
    """

    def __init__(self, min_snr_db: float = 10.0, max_snr_db: float = 30.0, p: float = 0.5) -> None:
        for name, value in (("min_snr_db", min_snr_db), ("max_snr_db", max_snr_db)):
            if not math.isfinite(value):
                raise ParameterError(f"The '{name}' parameter of WhiteNoise must be a finite number of dB. Got {value!r} instead.")
        if min_snr_db > max_snr_db:
            raise ParameterError(
                f"The 'min_snr_db' parameter of WhiteNoise must be <= max_snr_db ({max_snr_db!r}). "
                f"Got {min_snr_db!r} instead."
            )
        check_in_range("p", "WhiteNoise", p, 0.0, 1.0)
        self.min_snr_db, self.max_snr_db, self.p = float(min_snr_db), float(max_snr_db), float(p)

    def randomize(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        """Draw ``{"should_apply": bool, "snr_db": float, "noise_seed": int}`` (all always drawn).

        The noise itself comes from a generator seeded with ``noise_seed`` in :meth:`apply`,
        so ``apply`` is a pure function of its inputs.
        """
        should_apply = bool(rng.random() < self.p)
        snr_db = float(rng.uniform(self.min_snr_db, self.max_snr_db))
        noise_seed = int(rng.integers(0, 2**63 - 1))
        return {"should_apply": should_apply, "snr_db": snr_db, "noise_seed": noise_seed}

    def apply(self, samples: np.ndarray, sample_rate: int, params: dict[str, Any]) -> np.ndarray:
        """Add noise at ``params["snr_db"]`` dB SNR to float32 ``(samples,)``; same shape out."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ParameterError(f"The 'samples' parameter of WhiteNoise must be 1-D (mono). Got shape {x.shape} instead.")
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
        if not params["should_apply"] or rms == 0.0:
            return x.copy()
        noise_rms = rms / 10.0 ** (params["snr_db"] / 20.0)
        noise = np.random.default_rng(params["noise_seed"]).standard_normal(x.size, dtype=np.float32)
        return (x + np.float32(noise_rms) * noise).astype(np.float32, copy=False)

    def __call__(self, samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """Randomize with ``rng``, then apply to float32 ``(samples,)`` at ``sample_rate`` Hz."""
        return self.apply(samples, sample_rate, self.randomize(rng, sample_rate))

    def __repr__(self) -> str:
        return f"WhiteNoise(min_snr_db={self.min_snr_db}, max_snr_db={self.max_snr_db}, p={self.p})"
