"""The fast mel spectrogram equals librosa's for the settings the models use."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from cultural_music.features.melspec import mel_filterbank, mel_power


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [(22050, 2048, 128, 0.0, None), (16000, 512, 96, 0.0, None), (8000, 1024, 40, 50.0, 3500.0), (44100, 4096, 256, 20.0, 16000.0)],
)
def test_filterbank_matches_librosa(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> None:
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7 * float(ref.max()))


@pytest.mark.parametrize(("sr", "n_fft", "hop", "n_mels", "samples"),
                         [(22050, 2048, 512, 128, 22050 * 3 + 17), (16000, 512, 256, 96, 16000), (8000, 2048, 512, 64, 1500)])
def test_mel_power_matches_librosa(sr: int, n_fft: int, hop: int, n_mels: int, samples: int) -> None:
    rng = np.random.default_rng(samples)
    t = np.arange(samples) / sr
    y = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(samples),
                  0.5 * rng.standard_normal(samples)]).astype(np.float32)
    ours = mel_power(y, sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    ref = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    assert ours.shape == ref.shape == (2, n_mels, 1 + samples // hop)
    scale = ref.max(axis=(-2, -1), keepdims=True)
    assert np.abs(ours - ref).max() / scale.min() < 1e-5
    single = mel_power(y[1], sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    np.testing.assert_array_equal(single, ours[1])


def test_long_signal_uses_several_chunks_without_seams() -> None:
    sr = 22050
    y = np.sin(2 * np.pi * 1000 * np.arange(sr * 40) / sr).astype(np.float32)  # 1723 frames > one chunk
    ours = mel_power(y, sample_rate=sr, n_fft=2048, hop_length=512, n_mels=128)
    ref = librosa.feature.melspectrogram(y=y, sr=sr)
    assert np.abs(ours - ref).max() / ref.max() < 1e-5


def test_feature_modules_do_not_import_librosa() -> None:
    import subprocess
    import sys

    code = "import sys, cultural_music.features.compute, cultural_music.inference.classifier; print('librosa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
