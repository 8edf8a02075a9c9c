"""Seeded audio augmentations: waveform transforms, their chain, and spectrogram masking.

Every transform draws its random values from an explicit ``numpy.random.Generator``
(``randomize``), then does the work (``apply``); calling it does both.  Waveforms are float32
``(samples,)`` mono and keep their length; spectrograms are float32 ``(n_mels, frames)``.
"""

from __future__ import annotations

from .compose import Compose, from_config
from .pitch_shift import PitchShift
from .spec_mask import SpecMask
from .time_stretch import TimeStretch
from .white_noise import WhiteNoise

__all__ = ["Compose", "from_config", "PitchShift", "SpecMask", "TimeStretch", "WhiteNoise"]
