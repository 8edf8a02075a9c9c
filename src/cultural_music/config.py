"""The one typed configuration, saved inside every model folder.

Prediction always rebuilds features from the config stored with the model, so a model is
never fed features computed with other settings than it was trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ParameterError, check_in_range, check_positive

__all__ = ["AudioConfig", "FeatureConfig", "AugmentConfig", "TrainConfig", "Config"]


@dataclass(frozen=True)
class AudioConfig:
    """How recordings are decoded and cut into clips.

    Attributes
    ----------
    sample_rate
        Target sample rate in Hz; every file is resampled to it and mixed down to mono.
    clip_seconds
        Length of one clip in seconds.  Shorter files are zero-padded at the end; longer files
        are cut into several clips.
    min_last_clip_fraction
        A trailing piece shorter than this fraction of a clip is dropped (unless it is the only
        piece of the file); longer pieces are padded and kept.
    """

    sample_rate: int = 22050
    clip_seconds: float = 30.0
    min_last_clip_fraction: float = 0.5

    def __post_init__(self) -> None:
        check_in_range("sample_rate", "AudioConfig", self.sample_rate, 1000, 384000)
        check_positive("clip_seconds", "AudioConfig", self.clip_seconds)
        check_in_range("min_last_clip_fraction", "AudioConfig", self.min_last_clip_fraction, 0.0, 1.0)

    @property
    def clip_samples(self) -> int:
        """Samples in one clip at :attr:`sample_rate`."""
        return max(1, int(round(self.clip_seconds * self.sample_rate)))


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel spectrogram settings (``librosa.feature.melspectrogram``, then dB, then 0..1).

    The dB values are taken relative to the clip's loudest bin and clipped at ``-top_db``, then
    mapped linearly to 0..1, so every clip spans 0..1 whatever its recording level.
    """

    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0

    def __post_init__(self) -> None:
        check_in_range("n_fft", "FeatureConfig", self.n_fft, 16, 65536)
        check_in_range("hop_length", "FeatureConfig", self.hop_length, 1, self.n_fft)
        check_in_range("n_mels", "FeatureConfig", self.n_mels, 1, 1024)
        check_positive("top_db", "FeatureConfig", self.top_db)

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` samples (librosa's ``center=True`` framing)."""
        return 1 + n_samples // self.hop_length


@dataclass(frozen=True)
class AugmentConfig:
    """Training-split augmentation.

    Waveform augmentations (time-stretch, pitch-shift, white noise) are costly, so
    ``n_variants`` augmented copies of each training clip are computed once, cached as features,
    and one of them (or the original) is drawn at random each epoch.  Spectrogram masking is
    cheap and applied on the fly.
    """

    n_variants: int = 2
    time_stretch_p: float = 0.5
    time_stretch_range: tuple[float, float] = (0.85, 1.15)
    pitch_shift_p: float = 0.5
    pitch_shift_semitones: tuple[float, float] = (-2.0, 2.0)
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    spec_mask_p: float = 0.5
    freq_mask_max: int = 12
    time_mask_max: int = 40

    def __post_init__(self) -> None:
        check_in_range("n_variants", "AugmentConfig", self.n_variants, 0, 64)
        for name in ("time_stretch_p", "pitch_shift_p", "noise_p", "spec_mask_p"):
            check_in_range(name, "AugmentConfig", getattr(self, name), 0.0, 1.0)
        for name in ("time_stretch_range", "pitch_shift_semitones", "noise_snr_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ParameterError(
                    f"The '{name}' parameter of AugmentConfig must be (low, high) with low <= high. "
                    f"Got {(low, high)!r} instead."
                )
        if self.time_stretch_range[0] <= 0:
            raise ParameterError(
                "The 'time_stretch_range' parameter of AugmentConfig must be > 0. "
                f"Got {self.time_stretch_range!r} instead."
            )


@dataclass(frozen=True)
class TrainConfig:
    """Model choice, optimisation and split settings."""

    model: str = "seed-cnn"
    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-4
    patience: int = 6
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        check_in_range("epochs", "TrainConfig", self.epochs, 1, 100000)
        check_in_range("batch_size", "TrainConfig", self.batch_size, 1, 65536)
        check_positive("learning_rate", "TrainConfig", self.learning_rate)
        check_in_range("patience", "TrainConfig", self.patience, 1, 100000)
        check_in_range("val_fraction", "TrainConfig", self.val_fraction, 0.01, 0.5)
        check_in_range("test_fraction", "TrainConfig", self.test_fraction, 0.01, 0.5)


_SECTIONS = {
    "audio": AudioConfig,
    "features": FeatureConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
}


@dataclass(frozen=True)
class Config:
    """Everything that defines a model: audio, features, augmentation and training settings."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        if not isinstance(data, dict):
            raise ParameterError(f"A config must be a JSON object. Got {type(data).__name__} instead.")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ParameterError(f"Unknown config section(s): {sorted(unknown)}")
        parts = {}
        for name, section in _SECTIONS.items():
            values = dict(data.get(name, {}))
            names = {f.name for f in dataclasses.fields(section)}
            bad = set(values) - names
            if bad:
                raise ParameterError(f"Unknown key(s) in config section '{name}': {sorted(bad)}")
            for f in dataclasses.fields(section):
                if f.name in values and isinstance(values[f.name], list):
                    values[f.name] = tuple(values[f.name])
            parts[name] = section(**values)
        return cls(**parts)

    def replace(self, **sections: Any) -> "Config":
        """A copy with some sections' fields replaced: ``cfg.replace(train={"epochs": 3})``."""
        parts = {}
        for name, changes in sections.items():
            if name not in _SECTIONS:
                raise ParameterError(f"Unknown config section '{name}'.")
            parts[name] = dataclasses.replace(getattr(self, name), **changes)
        return dataclasses.replace(self, **parts)

    def feature_key(self) -> str:
        """Short hash of the audio + feature settings: the cache key part for features."""
        return _hash({"audio": dataclasses.asdict(self.audio), "features": dataclasses.asdict(self.features)})

    def augment_key(self) -> str:
        """Short hash of the augmentation settings plus the seed (augmented-variant cache key)."""
        return _hash({"augment": dataclasses.asdict(self.augment), "seed": self.train.seed})


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
