"""Config unit tests: validation errors, the round trip through model.json dicts, model.json
files written with the one-string feature kind, and feature-cache key stability."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cultural_music.config import MUSICNN_EMBEDDING_DIM, Config, FeatureConfig
from cultural_music.errors import ParameterError
from cultural_music.models import available_models, default_config

from conftest import tone, write

#: model.json ``config.features`` as written before ``kind`` and ``backbone`` were two fields
OLD_EMBEDDING_FEATURES = {"n_fft": 512, "hop_length": 256, "n_mels": 1506, "fmin": 0.0, "fmax": None, "top_db": 80.0,
                          "kind": "musicnn-embedding:MSD_musicnn"}

#: feature_key() of the default configs, computed at 33fbae4 (one-string kind): existing caches
#: are found under these folders, so they must not change
KEYS_33FBAE4 = {"seed-cnn": "9731dfef98c40dfa", "res-cnn": "9731dfef98c40dfa", "musicnn": "e9839497bf8d8dfa",
                "musicnn-finetune": "8a9acf1408ea3525"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"kind": "mfcc"}, "'kind' parameter of FeatureConfig must be one of"),
    ({"kind": "musicnn:MSD_musicnn"}, "'kind' parameter of FeatureConfig"),
    ({"backbone": "MSD_musicnn"}, "'backbone' parameter of FeatureConfig must be one of \\[None\\] for kind 'logmel'"),
    ({**dataclasses.asdict(FeatureConfig.for_kind("musicnn")), "backbone": "MSD_musicnn"}, "'backbone' parameter"),
    ({**dataclasses.asdict(FeatureConfig.for_kind("musicnn")), "kind": "musicnn-embedding"}, "must be one of \\['MSD_musicnn'"),
    ({**dataclasses.asdict(FeatureConfig.for_kind("musicnn-embedding", "MTT_musicnn")), "backbone": "MSD_vgg"}, "Got 'MSD_vgg'"),
    ({**dataclasses.asdict(FeatureConfig.for_kind("musicnn")), "n_fft": 1024}, "'n_fft' parameter of FeatureConfig must be 512"),
    ({**OLD_EMBEDDING_FEATURES, "n_mels": 128}, "'n_mels' parameter of FeatureConfig must be 96"),
    ({"n_mels": 0}, "'n_mels'"),
    ({"hop_length": 4096}, "'hop_length'"),
])
def test_feature_settings_are_checked(fields: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        FeatureConfig(**fields)


def test_config_errors_name_the_setting() -> None:
    with pytest.raises(ParameterError, match="'sample_rate' parameter of AudioConfig must be 16000 for feature kind 'musicnn-embedding'"):
        Config(features=FeatureConfig.for_kind("musicnn-embedding", "MSD_musicnn"))
    with pytest.raises(ParameterError, match="Unknown key\\(s\\) in config section 'features': \\['mels'\\]"):
        Config.from_dict({"features": {"mels": 3}})
    with pytest.raises(ParameterError, match="Unknown config section"):
        Config.from_dict({"feature": {}})
    with pytest.raises(ParameterError, match="JSON object"):
        Config.from_dict([])  # type: ignore[arg-type]


def test_rows_the_model_sees() -> None:
    emb = default_config("musicnn").features
    assert (emb.kind, emb.backbone, emb.n_mels, emb.n_rows) == ("musicnn-embedding", "MSD_musicnn", 96, MUSICNN_EMBEDDING_DIM)
    assert FeatureConfig(n_mels=40).n_rows == 40 and FeatureConfig.for_kind("musicnn").n_rows == 96
    assert emb.n_frames(16000 * 30) == 11 and FeatureConfig.for_kind("musicnn").n_frames(16000) == 63


@pytest.mark.parametrize("model", ["seed-cnn", "res-cnn", "musicnn", "musicnn-finetune"])
def test_round_trip_through_model_json(model: str) -> None:
    assert model in available_models()
    cfg = default_config(model).replace(audio={"clip_seconds": 2.5}, train={"seed": 7})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert Config.from_dict(d) == cfg
    assert set(d["features"]) == {f.name for f in dataclasses.fields(FeatureConfig)}


def test_old_one_string_kind_still_loads() -> None:
    new = default_config("musicnn")
    old = {**new.to_dict(), "features": dict(OLD_EMBEDDING_FEATURES)}
    cfg = Config.from_dict(old)
    assert cfg == new and cfg.features.backbone == "MSD_musicnn" and cfg.features.n_rows == 1506
    mtt = Config.from_dict({**old, "features": {**OLD_EMBEDDING_FEATURES, "kind": "musicnn-embedding:MTT_musicnn"}})
    assert mtt.features.backbone == "MTT_musicnn" and mtt.to_dict()["features"]["kind"] == "musicnn-embedding"
    # the `--set features.kind=musicnn-embedding:MTT_musicnn` form (bench/accuracy.py) and the field form agree
    assert new.replace(features={"kind": "musicnn-embedding:MTT_musicnn"}) == new.replace(features={"backbone": "MTT_musicnn"}) == mtt
    assert FeatureConfig.for_kind("musicnn-embedding:MTT_musicnn") == FeatureConfig.for_kind("musicnn-embedding", "MTT_musicnn")


def test_feature_keys_are_those_of_existing_caches() -> None:
    """Zero padding (every folder written before ``audio.pad``) keeps the old keys; repeat
    padding, the new default, computes other features for short files, so it has its own."""
    for model, key in KEYS_33FBAE4.items():
        zeros = default_config(model).replace(audio={"pad": "zeros"})
        assert zeros.feature_key() == key, model
        assert default_config(model).feature_key() != key, model
    # the same rule for other settings: the hash of the one-string form of the features
    cfg = default_config("musicnn").replace(audio={"clip_seconds": 3.0, "pad": "zeros"}, features={"backbone": "MTT_musicnn"})
    old = {**OLD_EMBEDDING_FEATURES, "kind": "musicnn-embedding:MTT_musicnn"}
    audio = {k: v for k, v in dataclasses.asdict(cfg.audio).items() if k != "pad"}
    text = json.dumps({"audio": audio, "features": old}, sort_keys=True, default=str)
    assert cfg.feature_key() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert cfg.feature_key() != cfg.replace(features={"backbone": "MSD_musicnn"}).feature_key()


def test_model_folder_with_old_model_json_predicts_identically(tmp_path: Path) -> None:
    import torch

    from cultural_music.inference.classifier import Classifier
    from cultural_music.models import build_model
    from cultural_music.training.artifact import save_artifact

    torch.manual_seed(0)
    cfg = default_config("musicnn").replace(audio={"clip_seconds": 1.0})
    model = build_model("musicnn", n_classes=2, n_rows=cfg.features.n_rows)
    with torch.no_grad():
        model.head.norm.running_mean.normal_()  # an untrained head would answer 50 % everywhere
    new = save_artifact(tmp_path / "new", model.eval(), classes=["a", "b"], config=cfg, model_name="musicnn")
    old = tmp_path / "old"
    old.mkdir()
    for f in new.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    meta = json.loads((old / "model.json").read_text())
    meta["config"]["features"] = dict(OLD_EMBEDDING_FEATURES)
    (old / "model.json").write_text(json.dumps(meta))
    q = write(tmp_path / "q.wav", tone(440, 2.5, 16000, rng=np.random.default_rng(1)), 16000)
    a, b = Classifier.load(new), Classifier.load(old)
    assert a.config == b.config
    np.testing.assert_array_equal(a.window_probabilities(q)[1], b.window_probabilities(q)[1])
    assert a.predict(q).confidence == b.predict(q).confidence
