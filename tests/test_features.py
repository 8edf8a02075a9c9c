from __future__ import annotations

import numpy as np

from cultural_music.config import FeatureConfig
from cultural_music.features.compute import feature_shape, log_mel

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


# ------------------------------------------------------------------------------------------
# feature kinds: musicnn log-mels and cached musicnn embeddings
# ------------------------------------------------------------------------------------------
import dataclasses  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from cultural_music.config import Config, n_patches  # noqa: E402
from cultural_music.errors import ParameterError  # noqa: E402
from cultural_music.features.compute import compute_features, musicnn_log_mel


def _cfg(kind: str) -> Config:
    return Config().replace(audio={"sample_rate": 16000}, features=dataclasses.asdict(FeatureConfig.for_kind(kind)))


def test_musicnn_kind_matches_the_port_input() -> None:
    import librosa

    clips = np.stack([tone(440, 1.0, 16000, rng=np.random.default_rng(0)), tone(3000, 1.0, 16000)])
    got = compute_features(clips, _cfg("musicnn"))
    assert got.shape == (2, 96, 1 + 16000 // 256) and got.dtype == np.float32
    ref = np.log10(10000 * librosa.feature.melspectrogram(y=clips[1], sr=16000, n_fft=512, hop_length=256, n_mels=96) + 1)
    np.testing.assert_allclose(got[1], ref, rtol=1e-5, atol=1e-5)  # fast mel vs librosa
    np.testing.assert_array_equal(got, musicnn_log_mel(clips))
    assert feature_shape(16000, _cfg("musicnn").features) == (96, 63)


def test_patch_count() -> None:
    assert [n_patches(f) for f in (1, 63, 187, 188, 313, 1876)] == [1, 1, 1, 2, 2, 11]
    fc = FeatureConfig.for_kind("musicnn-embedding:MSD_musicnn")
    assert feature_shape(16000 * 30, fc) == (1506, 11)


def test_embedding_kind_is_the_backbone_embedding_of_covering_patches() -> None:
    from cultural_music.backbones.musicnn import covering_patches, pretrained

    g = np.random.default_rng(0)
    clips = (0.1 * g.standard_normal((2, 16000 * 4))).astype(np.float32)  # 4 s: 251 frames -> 2 patches
    cfg = _cfg("musicnn-embedding:MTT_musicnn")
    emb = compute_features(clips, cfg)
    assert emb.shape == (2, 1506, 2) == (2, *feature_shape(clips.shape[1], cfg.features))
    mel = musicnn_log_mel(clips[1]).T
    pats = covering_patches(mel[None])
    np.testing.assert_array_equal(pats[1], mel[-187:])  # the last patch ends at the last frame
    with torch.no_grad():
        want = pretrained("MTT_musicnn").embedding(torch.from_numpy(pats)).numpy().T
    # the packaged backbone may run on ONNX Runtime: equal to 1e-5 of the largest value (its parity check)
    np.testing.assert_allclose(emb[1], want, atol=1e-5 * np.abs(want).max())
    short = compute_features(clips[:, :8000], cfg)  # 0.5 s: repeat-padded to one patch
    assert short.shape == (2, 1506, 1) and np.isfinite(short).all()


def test_kind_validation_and_cache_keys() -> None:
    with pytest.raises(ParameterError, match="'kind' parameter"):
        FeatureConfig(kind="mfcc")
    with pytest.raises(ParameterError, match="'n_mels' parameter of FeatureConfig must be 96"):
        FeatureConfig(kind="musicnn", n_fft=512, hop_length=256, n_mels=128)
    with pytest.raises(ParameterError, match="must be 16000"):
        Config().replace(features=dataclasses.asdict(FeatureConfig.for_kind("musicnn")))
    keys = {_cfg(k).feature_key() for k in ("musicnn", "musicnn-embedding:MSD_musicnn", "musicnn-embedding:MTT_musicnn")}
    assert len(keys) == 3 and Config().feature_key() not in keys
    assert FeatureConfig().backbone is None and FeatureConfig.for_kind("musicnn-embedding", "MSD_musicnn").backbone == "MSD_musicnn"
    cfg = _cfg("musicnn-embedding:MSD_musicnn")
    assert Config.from_dict(cfg.to_dict()) == cfg
