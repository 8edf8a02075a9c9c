"""Log-mel spectrogram features scaled to 0..1.

``librosa.feature.melspectrogram`` (power), then dB relative to the clip's loudest bin,
clipped at ``-top_db`` and mapped linearly to 0..1.
"""

from __future__ import annotations

import librosa
import numpy as np

from .config import Config, FeatureConfig

__all__ = ["compute_features", "log_mel", "feature_shape"]

_SILENCE = 1e-10


def compute_features(clips: np.ndarray, cfg: Config) -> np.ndarray:
    """Model input features of a batch of clips: the one entry point training, evaluation and
    prediction all use, so they can never disagree.

    Parameters
    ----------
    clips
        float32 ``(n, samples)`` clips at ``cfg.audio.sample_rate`` Hz.
    cfg
        The model's full config.

    Returns
    -------
    np.ndarray
        float32 ``(n, n_mels, frames)``.
    """
    return log_mel(clips, sample_rate=cfg.audio.sample_rate, cfg=cfg.features)


def log_mel(clips: np.ndarray, *, sample_rate: int, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel features of one clip or a batch of clips.

    Parameters
    ----------
    clips
        float32 ``(samples,)`` or ``(n, samples)`` waveform(s) at ``sample_rate`` Hz.
    sample_rate
        Sample rate in Hz.
    cfg
        FFT size, hop, mel bands, frequency range (Hz) and dB range.

    Returns
    -------
    np.ndarray
        float32 ``(n_mels, frames)`` or ``(n, n_mels, frames)`` in 0..1; a silent clip gives 0s.
    """
    y = np.asarray(clips, dtype=np.float32)
    power = librosa.feature.melspectrogram(
        y=y,
        sr=sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        power=2.0,
    )
    peak = power.max(axis=(-2, -1), keepdims=True)
    safe_peak = np.maximum(peak, _SILENCE)
    db = 10.0 * np.log10(np.maximum(power, _SILENCE) / safe_peak)
    scaled = (np.maximum(db, -cfg.top_db) + cfg.top_db) / cfg.top_db
    scaled = np.where(peak > _SILENCE, scaled, 0.0)
    return scaled.astype(np.float32)


def feature_shape(n_samples: int, cfg: FeatureConfig) -> tuple[int, int]:
    """``(n_mels, frames)`` produced for a clip of ``n_samples`` samples."""
    return cfg.n_mels, cfg.n_frames(n_samples)
