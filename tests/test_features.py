from __future__ import annotations

import numpy as np

from cultural_music.config import FeatureConfig
from cultural_music.features import feature_shape, log_mel

from conftest import tone


def test_shape_and_range() -> None:
    cfg = FeatureConfig()
    y = tone(440, 2.0, 22050, rng=np.random.default_rng(0))
    f = log_mel(y, sample_rate=22050, cfg=cfg)
    assert f.shape == feature_shape(len(y), cfg) == (128, 1 + len(y) // 512)
    assert f.dtype == np.float32 and f.min() >= 0.0 and f.max() == 1.0


def test_batch_equals_single_and_tone_lands_in_right_band() -> None:
    cfg = FeatureConfig(n_mels=64, n_fft=1024, hop_length=256)
    a, b = tone(300, 1.0, 16000), tone(3000, 1.0, 16000)
    batch = log_mel(np.stack([a, b]), sample_rate=16000, cfg=cfg)
    np.testing.assert_allclose(batch[0], log_mel(a, sample_rate=16000, cfg=cfg), atol=1e-6)
    assert batch[0].mean(axis=1).argmax() < batch[1].mean(axis=1).argmax()


def test_silence_is_zero_and_level_invariant() -> None:
    cfg = FeatureConfig(n_mels=32)
    assert np.all(log_mel(np.zeros(8000, np.float32), sample_rate=8000, cfg=cfg) == 0)
    y = tone(440, 1.0, 8000, rng=np.random.default_rng(1))
    np.testing.assert_allclose(log_mel(y, sample_rate=8000, cfg=cfg), log_mel(0.1 * y, sample_rate=8000, cfg=cfg), atol=1e-4)
