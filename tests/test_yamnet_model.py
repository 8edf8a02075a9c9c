"""The yamnet and fusion models' features: shapes, the fused grid, and the cache (issue 17, item 3)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cultural_music.config import Config, FeatureConfig
from cultural_music.features.audio import iter_clips
from cultural_music.features.cache import FeatureCache
from cultural_music.features.compute import component_configs, compute_features, fusion_index
from cultural_music.features.jobs import ExtractJob, extract_one
from cultural_music.models import default_config


def _cfg(name: str, seconds: float, **augment) -> Config:
    return default_config(name).replace(audio={"clip_seconds": seconds}, augment=augment or {"n_variants": 0})


@pytest.mark.parametrize("kind", ["yamnet-embedding", "yamnet-mid-embedding", "fusion-embedding"])
@pytest.mark.parametrize("samples", [8000, 15600, 15601, 48000])
def test_feature_shape_matches_the_config(kind: str, samples: int) -> None:
    cfg = dataclasses.replace(Config().replace(audio={"sample_rate": 16000}), features=FeatureConfig.for_kind(kind))
    clip = np.random.default_rng(0).standard_normal((1, samples)).astype(np.float32) * 0.1
    assert compute_features(clip, cfg).shape == (1, cfg.features.n_rows, cfg.features.n_frames(samples))


def test_fusion_is_musicnn_beside_yamnet_on_the_yamnet_grid() -> None:
    cfg = _cfg("fusion", 5.0)
    clips = np.random.default_rng(1).standard_normal((2, cfg.audio.clip_samples)).astype(np.float32) * 0.1
    musicnn_cfg, yamnet_cfg = component_configs(cfg)
    m, y, f = compute_features(clips, musicnn_cfg), compute_features(clips, yamnet_cfg), compute_features(clips, cfg)
    index = fusion_index(cfg.audio.clip_samples)
    assert f.shape == (2, 1506 + 1024, y.shape[-1]) and m.shape[-1] == 2
    np.testing.assert_array_equal(f[:, 1506:], y)
    np.testing.assert_array_equal(f[:, :1506], m[:, :, index])
    # 5 s: the first half of the YAMNet patches sit in the first 3 s musicnn patch, the rest in the second
    assert list(index) == sorted(index) and index[0] == 0 and index[-1] == 1


def test_fusion_features_come_from_the_component_caches(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    t = np.arange(16000 * 2) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    cache = FeatureCache(tmp_path / "cache")
    job = ExtractJob(str(path), "tone.wav", augment=True)
    for name in ("musicnn", "yamnet"):
        assert extract_one(job, _cfg(name, 2.0, n_variants=1), cache).decoded
    fused = extract_one(job, _cfg("fusion", 2.0, n_variants=1), cache)
    assert fused.error is None and not fused.decoded  # both backbones' entries were cached: nothing embedded again
    assert fused.entry is not None and fused.entry.n_variants == 1
    clean = np.load(fused.entry.clean_path)
    clips = np.stack([c for _, c in iter_clips(path, _cfg("fusion", 2.0).audio)])
    np.testing.assert_allclose(clean, compute_features(clips, _cfg("fusion", 2.0)), atol=1e-5)
    assert np.load(fused.entry.aug_path).shape == (1, *clean.shape)
    assert not extract_one(job, _cfg("fusion", 2.0, n_variants=1), cache).decoded


def test_features_command_caches_a_models_embeddings(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cultural_music.cli import cli

    for c, hz in (("low", 220), ("high", 880)):
        (tmp_path / "data" / c).mkdir(parents=True)
        t = np.arange(16000) / 16000
        sf.write(tmp_path / "data" / c / "a.wav", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
    args = ["features", str(tmp_path / "data"), "--model", "yamnet", "--duration", "1", "--cache-dir", str(tmp_path / "c"),
            "--workers", "1", "-q"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "2 decoded" in first.output
    key = _cfg("yamnet", 1.0).feature_key()
    assert len(list((tmp_path / "c" / key).rglob("*.npy"))) == 2
    again = CliRunner().invoke(cli, args)
    assert "0 decoded" in again.output
