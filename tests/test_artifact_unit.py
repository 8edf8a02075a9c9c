"""Unit tests of the model folder module (training/artifact.py) on its own: save then load gives
the same network, classes and config; every check that guards loading can fire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cultural_music.config import Config
from cultural_music.errors import DatasetError, ModelLoadError
from cultural_music.models import build_model
from cultural_music.training.artifact import (
    META_FILE, SPLIT_FILE, WEIGHTS_FILE, checked_split_csv, file_sha256, load_artifact, read_meta, save_artifact,
)

from tiny_model import KWARGS, TINY

CLASSES = ["drum", "flute", "voice"]


def _save(out: Path, seed: int = 0, **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("seed-cnn", n_classes=len(CLASSES), n_mels=TINY.features.n_mels, **KWARGS)
    save_artifact(out, model, classes=CLASSES, config=TINY, model_name="seed-cnn", model_kwargs=KWARGS, extra=extra)
    return model


def test_save_then_load_gives_the_same_network_classes_and_config(tmp_path):
    model = _save(tmp_path / "m", extra_field={"a": 1})
    art = load_artifact(tmp_path / "m")
    assert art.classes == CLASSES
    assert art.config == TINY and isinstance(art.config, Config)
    assert art.meta["extra_field"] == {"a": 1}
    assert not art.model.training
    saved, loaded = model.state_dict(), art.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    x = torch.rand(2, 1, TINY.features.n_mels, 126)
    model.eval()
    assert torch.equal(model(x), art.model(x))


def test_the_folder_holds_safetensors_and_json_only(tmp_path):
    _save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted([WEIGHTS_FILE, META_FILE])
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["weights_sha256"] == file_sha256(tmp_path / "m" / WEIGHTS_FILE)


def test_edited_weights_are_refused_by_checksum(tmp_path):
    _save(tmp_path / "m")
    w = tmp_path / "m" / WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="checksum"):
        load_artifact(tmp_path / "m")


def test_weights_of_another_architecture_are_refused(tmp_path):
    _save(tmp_path / "m")
    meta_path = tmp_path / "m" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["classes"] = CLASSES + ["extra"]  # the head no longer fits the saved weights
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="cannot rebuild the model"):
        load_artifact(tmp_path / "m")


def test_missing_folder_and_missing_json_name_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_meta(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="model.json: missing"):
        read_meta(tmp_path / "empty")


def test_split_csv_is_checked_against_its_recorded_checksum(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / SPLIT_FILE).write_text("path,label,split\na.wav,drum,test\n")
    _save(out, split_sha256=file_sha256(out / SPLIT_FILE))
    assert checked_split_csv(load_artifact(out)) == out / SPLIT_FILE
    (out / SPLIT_FILE).write_text("path,label,split\nb.wav,drum,test\n")
    with pytest.raises(ModelLoadError, match="not the split"):
        checked_split_csv(load_artifact(out))
    (out / SPLIT_FILE).unlink()
    with pytest.raises(DatasetError, match="missing"):
        checked_split_csv(load_artifact(out))


def test_a_newer_format_asks_for_an_upgrade(tmp_path):
    _save(tmp_path / "m")
    meta_path = tmp_path / "m" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="upgrade"):
        read_meta(tmp_path / "m")


def test_a_folder_written_before_the_pad_setting_loads_with_zero_padding(tmp_path):
    """model.json without ``audio.pad`` predates repeat padding: it was trained on zero-padded
    clips and must keep getting them (and the same feature cache key)."""
    _save(tmp_path / "m")
    meta_path = tmp_path / "m" / META_FILE
    meta = json.loads(meta_path.read_text())
    assert meta["config"]["audio"]["pad"] == TINY.audio.pad == "repeat"
    del meta["config"]["audio"]["pad"]
    meta_path.write_text(json.dumps(meta))
    art = load_artifact(tmp_path / "m")
    assert art.config.audio.pad == "zeros"
    assert art.config.feature_key() != TINY.feature_key()
    assert art.config.replace(audio={"pad": "repeat"}) == TINY
