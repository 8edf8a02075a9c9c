"""Seeded audio augmentations: waveform transforms, their chain, and spectrogram masking.

Every transform draws its random values from an explicit ``numpy.random.Generator``
(``randomize``), then does the work (``apply``); calling it does both.  Waveforms are float32
``(samples,)`` mono and keep their length; spectrograms are float32 ``(n_mels, frames)``.
"""

from __future__ import annotations

from cultural_music.augment.compose import Compose, from_config
from cultural_music.augment.pitch_shift import PitchShift
from cultural_music.augment.spec_mask import SpecMask
from cultural_music.augment.time_stretch import TimeStretch
from cultural_music.augment.white_noise import WhiteNoise

__all__ = ["Compose", "from_config", "PitchShift", "SpecMask", "TimeStretch", "WhiteNoise"]
