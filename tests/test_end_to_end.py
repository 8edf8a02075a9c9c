"""Tiny end-to-end runs: train on distinct tones, evaluate, predict, save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cultural_music.training.artifact import load_artifact
from cultural_music.config import Config
from cultural_music.errors import ModelLoadError
from cultural_music.evaluation.evaluate import run_evaluation
from cultural_music.training.pipeline import run_training
from cultural_music.inference.classifier import Classifier, format_prediction, predict_cultural_music_type

from conftest import make_tone_dataset, tone, write

TINY = Config().replace(
    audio={"sample_rate": 8000, "clip_seconds": 1.0},
    features={"n_fft": 256, "hop_length": 64, "n_mels": 32},
    augment={"n_variants": 1},
    train={"epochs": 25, "batch_size": 8, "learning_rate": 1e-3, "patience": 25, "seed": 0},
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    data = make_tone_dataset(root / "data", per_class=10, seconds=1.5)
    run_training(data, root / "model", TINY, cache_dir=root / "cache", workers=1, progress=False, log=lambda s: None)
    return data, root / "model"


def test_model_folder_contents(trained: tuple[Path, Path]) -> None:
    _, model = trained
    for name in ("model.safetensors", "model.json", "history.json", "split.csv", "plots/accuracy.png", "plots/loss.png"):
        assert (model / name).is_file(), name
    assert not (model / "checkpoint.pt").exists()
    meta = json.loads((model / "model.json").read_text())
    assert meta["classes"] == ["high", "low", "mid"]
    assert meta["config"]["audio"]["sample_rate"] == 8000 and meta["model"]["name"] == "seed-cnn"
    assert not list(model.rglob("*.pkl"))


def test_no_recording_on_two_sides(trained: tuple[Path, Path]) -> None:
    import csv

    rows = list(csv.DictReader(open(trained[1] / "split.csv")))
    sides: dict[str, set[str]] = {}
    for r in rows:
        sides.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def test_tones_beat_chance_on_test_split(trained: tuple[Path, Path]) -> None:
    m = run_evaluation(trained[1], cache_dir=trained[1].parent / "cache", workers=1, progress=False, log=lambda s: None).metrics
    assert m["n"] == 6
    assert m["accuracy"] >= 0.8  # chance is 1/3
    for name in ("confusion_matrix.png", "roc.png", "pr.png", "accuracy.png", "loss.png"):
        assert (trained[1] / "plots" / name).stat().st_size > 5000
    saved = json.loads((trained[1] / "metrics.json").read_text())
    assert saved["macro_f1"] == m["macro_f1"] and "clip" in saved and "recording" in saved


def test_predict_and_round_trip(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, model = trained
    q = write(tmp_path / "query.wav", tone(2400, 1.2, 8000, rng=np.random.default_rng(5)))
    clf = Classifier.load(model)
    pred = clf.predict(q)
    assert pred.label == "high"
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-5
    assert format_prediction(pred) == f"🎵 query.wav: high ({pred.confidence * 100:.2f}% confidence)"
    label, conf = predict_cultural_music_type(q, model_dir=model)
    assert (label, conf) == (pred.label, pytest.approx(pred.confidence, abs=1e-6))
    # a second load gives identical probabilities
    np.testing.assert_array_equal(Classifier.load(model).predict_proba(q), clf.predict_proba(q))


def test_edited_weights_fail_clearly(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(trained[1], copy)
    raw = bytearray((copy / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError, match="checksum"):
        load_artifact(copy)
    (copy / "model.json").unlink()
    with pytest.raises(ModelLoadError, match="model.json: missing"):
        load_artifact(copy)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_artifact(tmp_path / "none")
