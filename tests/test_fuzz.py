"""Property tests: random bytes and random short waveforms give only our clear errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cultural_music.features.audio import load_clips
from cultural_music.config import AudioConfig, FeatureConfig
from cultural_music.errors import AudioLoadError
from cultural_music.features.compute import log_mel

AUDIO = AudioConfig(sample_rate=8000, clip_seconds=0.5)
HEADERS = [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3\x03\x00\x00\x00", b"\xff\xfb\x90\x64"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from(HEADERS), body=st.binary(max_size=2048), suffix=st.sampled_from([".wav", ".mp3", ".flac", ".ogg"]))
def test_random_bytes_give_audio_errors_or_clips(head: bytes, body: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(head + body)
        try:
            _, clips = load_clips(path, AUDIO)
        except AudioLoadError as err:
            assert str(path) in str(err) and err.reason
        else:  # whatever decoded must be well-formed audio
            assert clips.dtype == np.float32 and clips.shape[1] == AUDIO.clip_samples
            assert np.isfinite(clips).all()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=3000),
    scale=st.sampled_from([0.0, 1e-12, 1e-3, 1.0, 1e6]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_random_short_waveforms_give_finite_features_in_range(n: int, scale: float, seed: int) -> None:
    y = (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)
    cfg = FeatureConfig(n_fft=256, hop_length=64, n_mels=16)
    f = log_mel(y, sample_rate=8000, cfg=cfg)
    assert f.shape == (16, 1 + n // 64)
    assert np.isfinite(f).all() and f.min() >= 0.0 and f.max() <= 1.0
