"""Mel power spectrograms, equal to ``librosa.feature.melspectrogram`` (to ~1e-6 relative) but
about twice as fast on one core and without importing librosa (about 1 s of start-up that every
feature worker and every cold ``predict`` would pay).

Same definition as librosa's defaults: centred frames (``n_fft // 2`` zeros padded on each
side), a periodic Hann window, ``|rfft|**2`` and a Slaney-style mel filterbank (Slaney mel
scale, area-normalised triangles).  ``tests/test_melspec.py`` checks both against librosa.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

__all__ = ["mel_filterbank", "mel_power"]

_F_SP = 200.0 / 3  # Hz per mel below 1 kHz (Slaney scale)
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0
_FRAMES_PER_CHUNK = 512  # bounds the temporary (frames, n_fft) arrays to a few MB


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, hz / _F_SP)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, _F_SP * mel)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters (Slaney scale, area-normalised), as ``librosa.filters.mel``.

    Parameters
    ----------
    sample_rate
        Hz.
    n_fft
        FFT size in samples.
    n_mels
        Number of bands.
    fmin, fmax
        Band edges in Hz (``fmax=None``: ``sample_rate / 2``).

    Returns
    -------
    np.ndarray
        float32 ``(n_mels, 1 + n_fft // 2)``, read-only (cached per settings).
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 ``(n_fft,)``."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    w.flags.writeable = False
    return w


def mel_power(y: np.ndarray, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
              fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Mel power spectrogram of one waveform or a batch.

    Parameters
    ----------
    y
        float ``(samples,)`` or ``(n, samples)`` at ``sample_rate`` Hz.
    sample_rate, n_fft, hop_length, n_mels, fmin, fmax
        Hz, samples, samples, bands, Hz, Hz (see :func:`mel_filterbank`).

    Returns
    -------
    np.ndarray
        float32 ``(n_mels, frames)`` or ``(n, n_mels, frames)``, ``frames = 1 + samples // hop_length``.
    """
    y = np.asarray(y, dtype=np.float32)
    batch = np.atleast_2d(y)
    basis_t = np.ascontiguousarray(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).T)
    window = _hann(n_fft)
    n_frames = 1 + batch.shape[-1] // hop_length
    out = np.empty((batch.shape[0], n_frames, n_mels), dtype=np.float32)
    for i, signal in enumerate(batch):
        padded = np.pad(signal, n_fft // 2)
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
        for start in range(0, n_frames, _FRAMES_PER_CHUNK):
            spec = scipy.fft.rfft(frames[start:start + _FRAMES_PER_CHUNK] * window, axis=-1)
            power = spec.real**2 + spec.imag**2
            np.matmul(power, basis_t, out=out[i, start:start + len(power)])
    mel = np.ascontiguousarray(np.swapaxes(out, -1, -2))
    return mel[0] if y.ndim == 1 else mel
