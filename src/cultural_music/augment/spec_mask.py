"""SpecAugment-style masking of one frequency band and one time band of a spectrogram."""

from __future__ import annotations

from typing import Any

import numpy as np

from cultural_music.config import AugmentConfig
from cultural_music.errors import ParameterError, check_in_range

__all__ = ["SpecMask"]


class SpecMask:
    """Set one band of mel bins and one band of frames to the spectrogram's minimum value.

    Band widths are drawn uniformly from the integers ``0..max`` (clipped to the spectrogram's
    size) and band starts uniformly from the positions where the band fits.

    Parameters
    ----------
    freq_mask_max
        Widest frequency mask, in mel bins (>= 0).
    time_mask_max
        Widest time mask, in frames (>= 0).
    p
        Probability of applying the transform, in [0, 1].
    """

    def __init__(self, freq_mask_max: int = 12, time_mask_max: int = 40, p: float = 0.5) -> None:
        for name, value in (("freq_mask_max", freq_mask_max), ("time_mask_max", time_mask_max)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ParameterError(f"The '{name}' parameter of SpecMask must be an int >= 0. Got {value!r} instead.")
        check_in_range("p", "SpecMask", p, 0.0, 1.0)
        self.freq_mask_max, self.time_mask_max, self.p = int(freq_mask_max), int(time_mask_max), float(p)

    @classmethod
    def from_config(cls, cfg: AugmentConfig) -> "SpecMask":
        """Masking with ``cfg.freq_mask_max``, ``cfg.time_mask_max`` and ``cfg.spec_mask_p``."""
        return cls(freq_mask_max=cfg.freq_mask_max, time_mask_max=cfg.time_mask_max, p=cfg.spec_mask_p)

    def randomize(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        """Draw ``should_apply`` and the bands ``f0, f_width`` (bins), ``t0, t_width`` (frames).

        ``shape`` is the spectrogram's ``(n_mels, frames)``.
        """
        n_mels, n_frames = shape
        should_apply = bool(rng.random() < self.p)
        f_width = int(rng.integers(0, min(self.freq_mask_max, n_mels) + 1))
        f0 = int(rng.integers(0, n_mels - f_width + 1))
        t_width = int(rng.integers(0, min(self.time_mask_max, n_frames) + 1))
        t0 = int(rng.integers(0, n_frames - t_width + 1))
        return {"should_apply": should_apply, "f0": f0, "f_width": f_width, "t0": t0, "t_width": t_width}

    def apply(self, spec: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Mask float32 ``(n_mels, frames)``; a new float32 array of the same shape."""
        out = np.array(spec, dtype=np.float32, copy=True)
        if not params["should_apply"] or out.size == 0:
            return out
        floor = out.min()
        out[params["f0"] : params["f0"] + params["f_width"], :] = floor
        out[:, params["t0"] : params["t0"] + params["t_width"]] = floor
        return out

    def __call__(self, spec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Randomize with ``rng``, then mask float32 ``(n_mels, frames)``."""
        spec = np.asarray(spec)
        if spec.ndim != 2:
            raise ParameterError(f"The 'spec' parameter of SpecMask must be 2-D (n_mels, frames). Got shape {spec.shape} instead.")
        return self.apply(spec, self.randomize(rng, spec.shape))

    def __repr__(self) -> str:
        return f"SpecMask(freq_mask_max={self.freq_mask_max}, time_mask_max={self.time_mask_max}, p={self.p})"
