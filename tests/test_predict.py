"""Classifier API: windows, file answer, uncertain answers, model card, the CLI's single-file mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cultural_music.cli import main
from cultural_music.errors import AudioLoadError, ParameterError
from cultural_music.inference.classifier import Classifier, Prediction, format_prediction, format_timeline, predict_cultural_music_type

from conftest import write
from tiny_model import SOUNDS, SR, shared_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def clf(model: Path) -> Classifier:
    return Classifier.load(model)


@pytest.fixture
def beep(tmp_path: Path) -> Path:
    return write(tmp_path / "beep.wav", SOUNDS["beep"](np.random.default_rng(3), 3.0), SR)


def test_predict_labels_and_fills_every_field(clf: Classifier, beep: Path) -> None:
    pred = clf.predict(beep, threshold=0.0)
    assert pred.label == "beep" and not pred.uncertain and pred.status == "ok"
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert pred.confidence == pytest.approx(pred.probabilities["beep"])
    assert [lab for lab, _ in pred.top][0] == "beep" and len(pred.top) == 3
    assert [p for _, p in pred.top] == sorted((p for _, p in pred.top), reverse=True)
    assert pred.duration == pytest.approx(3.0)
    # 1 s windows, default hop = one window (the clips evaluate scores) on 3 s: starts 0, 1, 2
    assert pred.n_clips == 3
    assert pred.timeline[0].start == 0.0 and pred.timeline[-1].end == pytest.approx(3.0)
    json.dumps(pred.to_dict())  # JSON-able
    assert format_prediction(pred) == f"🎵 beep.wav: beep ({pred.confidence * 100:.2f}% confidence)"
    assert "beep" in format_timeline(pred.timeline) and "0:00:03.0" in format_timeline(pred.timeline)


def test_hop_sets_window_count(clf: Classifier, beep: Path) -> None:
    starts, proba = clf.window_probabilities(beep, hop_seconds=1.0)
    np.testing.assert_allclose(starts, [0.0, 1.0, 2.0])
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(beep, hop_seconds=1.0), proba.mean(axis=0), atol=1e-6)
    with pytest.raises(ParameterError, match="hop_seconds"):
        clf.predict(beep, hop_seconds=1.5)  # longer than the 1 s window


def test_uncertain_below_threshold(clf: Classifier, beep: Path) -> None:
    conf = clf.predict(beep, threshold=0.0).confidence
    pred = clf.predict(beep, threshold=min(1.0, conf + 1e-3))
    assert pred.uncertain and pred.label == "uncertain"
    assert pred.confidence == pytest.approx(conf)
    expected = ", ".join(f"{lab} {p * 100:.2f}%" for lab, p in pred.top)
    assert format_prediction(pred) == f"🎵 beep.wav: uncertain (top: {expected})"
    assert clf.predict(beep, threshold=max(0.0, conf - 1e-3)).label == "beep"
    with pytest.raises(ParameterError, match="threshold"):
        clf.predict(beep, threshold=1.5)


def test_model_threshold_is_the_default(model: Path, beep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(model, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["uncertain"] = {"threshold": 1.0, "method": "test"}
    (copy / "model.json").write_text(json.dumps(meta))
    clf = Classifier.load(copy)
    assert clf.threshold == 1.0
    assert clf.predict(beep).label == "uncertain"
    assert clf.predict(beep, threshold=0.0).label == "beep"  # the call's value wins
    label, _ = predict_cultural_music_type(beep, model_dir=copy)
    assert label == "uncertain"


def test_seed_function_matches_classifier(model: Path, clf: Classifier, beep: Path) -> None:
    pred = clf.predict(beep)
    label, conf = predict_cultural_music_type(beep, model_dir=model)
    assert (label, conf) == (pred.label, pytest.approx(pred.confidence, abs=1e-6))


def test_describe_reports_version_settings_and_metrics(model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(model, copy)
    card = Classifier.load(copy).describe()
    meta = json.loads((copy / "model.json").read_text())
    assert card["classes"] == ["Deuda", "Newari", "beep"] and card["name"] == "seed-cnn"
    assert card["version"] == f"{meta['package_version']}+{meta['weights_sha256'][:12]}"
    assert card["settings"]["window_seconds"] == 1.0 and card["settings"]["default_hop_seconds"] == 1.0
    assert card["metrics"] is None and card["backend"] == "torch" and card["threshold"] == 0.0
    (copy / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "macro_f1": 0.7, "n": 8, "per_class": {}}))
    assert Classifier.load(copy).describe()["metrics"] == {"accuracy": 0.75, "macro_f1": 0.7, "n": 8}
    json.dumps(card)


def test_bad_file_raises_naming_it(clf: Classifier, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really audio")
    with pytest.raises(AudioLoadError, match="bad.wav"):
        clf.predict(bad)


def test_cli_single_files(model: Path, beep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(model), str(beep), "--timeline", "--threshold", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("🎵 beep.wav: beep (") and out[1].startswith("  0:00:00.0-")
    assert main(["predict", str(model), str(beep), "--threshold", "1"]) == 0
    assert "uncertain (top: beep" in capsys.readouterr().out
    assert main(["predict", str(model), str(beep), str(tmp_path / "missing.wav"), "--json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "error"] and rows[1]["reason"] == "file not found"


def test_prediction_positional_fields_kept() -> None:
    p = Prediction("x.wav", "a", 0.9, {"a": 0.9, "b": 0.1}, 1, 2.0)
    assert p.top == [] and p.timeline == [] and p.status == "ok" and not p.uncertain


def test_prefetch_keeps_order_errors_and_closes_source() -> None:
    from cultural_music.features.prefetch import prefetch

    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))
    closed: list[bool] = []

    def source():  # type: ignore[no-untyped-def]
        try:
            yield 1
            yield 2
            raise AudioLoadError("x.wav", "corrupt audio data")
        finally:
            closed.append(True)

    got: list[int] = []
    with pytest.raises(AudioLoadError, match="x.wav: corrupt"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [1, 2] and closed == [True]

    def endless():  # type: ignore[no-untyped-def]
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    gen = prefetch(endless())
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()  # consumer stops early: the producer stops and closes its source
    assert closed == [True, True]
