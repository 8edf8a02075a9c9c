"""Evaluation outputs: error-analysis rows, calibration metrics, external folders, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cultural_music.training.artifact import save_artifact
from cultural_music.metrics.calibration import nll, reliability_bins
from cultural_music.cli import main
from cultural_music.config import Config
from cultural_music.data.dataset import scan_folder, write_split_csv
from cultural_music.errors import DatasetError
from cultural_music.evaluation.evaluate import calibration_metrics, prediction_rows, predictions_csv_text, run_evaluation
from cultural_music.metrics.classification import softmax
from cultural_music.models import build_model

from conftest import make_tone_dataset, tone, write

CFG = Config().replace(audio={"sample_rate": 8000, "clip_seconds": 1.0}, features={"n_fft": 256, "hop_length": 64, "n_mels": 32},
                       augment={"n_variants": 0})
CLASSES = ["high", "low", "mid"]


def test_prediction_rows_wrong_first_most_confident_first() -> None:
    proba = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.9, 0.05, 0.05], [0.4, 0.35, 0.25]])
    y = np.array([0, 0, 0, 1, 0])
    rows = prediction_rows(["a", "b", "c", "d", "e"], y, proba, ["x", "y", "z"])
    assert [r["path"] for r in rows] == ["d", "b", "c", "e", "a"]  # wrong: .9 .7 .5 ; right: .4 .6
    assert [r["correct"] for r in rows] == [False, False, False, True, True]
    assert rows[0]["true"] == "y" and rows[0]["predicted"] == "x" and rows[0]["confidence"] == pytest.approx(0.9)
    assert [c for c, _ in rows[1]["top3"]] == ["z", "y", "x"]
    text = predictions_csv_text(rows[:1])
    assert text == "path,true,predicted,confidence,correct,top3\nd,y,x,0.9000,0,x:0.900|y:0.050|z:0.050\n"


def test_calibration_metrics_before_and_after_temperature(rng: np.random.Generator) -> None:
    logits = 6 * rng.normal(size=(12, 3))
    y = rng.integers(0, 3, size=12)
    t = 2.5
    clip_p, raw = softmax(logits, t), softmax(logits)
    groups = np.repeat(np.arange(4), 3)
    rec_p = np.stack([clip_p[groups == g].mean(0) for g in range(4)])
    rec_raw = np.stack([raw[groups == g].mean(0) for g in range(4)])
    res = {"clip_logits": logits, "clip_true": y, "clip_proba": clip_p, "clip_proba_raw": raw, "temperature": t,
           "rec_true": y[::3], "rec_proba": rec_p, "rec_proba_raw": rec_raw}
    cal = calibration_metrics(res, n_bins=5)
    assert cal["temperature"] == t and cal["n_bins"] == 5
    assert cal["clip"]["nll_before"] == pytest.approx(nll(logits, y, 1.0))
    assert cal["clip"]["nll_after"] == pytest.approx(nll(logits, y, t))
    assert cal["clip"]["ece_after"] == pytest.approx(reliability_bins(y, clip_p, n_bins=5)["ece"])
    assert cal["recording"]["ece_before"] == pytest.approx(reliability_bins(y[::3], rec_raw, n_bins=5)["ece"])
    assert cal["recording"]["nll_after"] == pytest.approx(-np.mean(np.log(rec_p[np.arange(4), y[::3]])), rel=1e-5)


@pytest.fixture
def model_dir(tmp_path: Path) -> tuple[Path, Path]:
    """An untrained (seeded) model folder with a split.csv over a tone data set; temperature 2."""
    data = make_tone_dataset(tmp_path / "data", per_class=3, seconds=2.2)
    recs = scan_folder(data).recordings
    recs = [type(r)(r.path, r.rel_path, r.label, r.group, "test" if r.rel_path.endswith("_0.wav") else "train") for r in recs]
    torch.manual_seed(0)
    model = build_model("seed-cnn", n_classes=3, n_mels=32)
    per_class = {c: {"train": {"files": 2, "minutes": 0.07, "clips": 4}, "test": {"files": 1, "minutes": 0.04, "clips": 2}} for c in CLASSES}
    out = save_artifact(tmp_path / "model", model, classes=CLASSES, config=CFG, model_name="seed-cnn",
                        extra={"calibration": {"temperature": 2.0, "method": "temperature"},
                               "data": {"data_dir": str(data), "per_class": per_class}})
    write_split_csv(out / "split.csv", recs)
    return out, data


def test_external_folder_reports_unknown_classes(model_dir: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = model_dir
    ext = make_tone_dataset(tmp_path / "other", classes={"low": 300.0, "high": 2400.0}, per_class=2, seconds=1.0, seed=3)
    write(ext / "Unheard" / "u.wav", tone(600, 1.0))
    lines: list[str] = []
    ev = run_evaluation(model, data_dir=ext, cache_dir=tmp_path / "cache", workers=1, progress=False, log=lines.append)
    m = ev.metrics
    assert m["unknown_classes"] == ["Unheard"] and any("Unheard (1 files)" in s for s in lines)
    assert m["n"] == 4 and m["recording"]["per_class"]["mid"]["support"] == 0
    out = model / "external" / "other"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["unknown_classes"] == ["Unheard"] and saved["calibration"]["temperature"] == 2.0
    with open(out / "test_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and "Unheard/u.wav" not in {r["path"] for r in rows}
    flags = [r["correct"] for r in rows]
    assert flags == sorted(flags)  # wrong (0) before right (1)
    report = (out / "report.html").read_text()
    assert "Unheard" in report
    # 5 evaluation plots embedded; no history.json in this folder, so the two curves are placeholders
    assert report.count("data:image/png;base64,") == 5 and report.count("plot not made in this run") == 2


def test_test_split_cli_writes_report_and_links_it(model_dir: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = model_dir
    assert main(["evaluate", str(model), "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "test recordings: 3  (clips: 6)" in out
    assert f"report: {(model / 'report.html').resolve().as_uri()}" in out
    assert "calibration:     temperature 2.000" in out
    m = json.loads((model / "metrics.json").read_text())
    assert m["report"] == "report.html" and set(m["calibration"]) >= {"clip", "recording", "temperature"}
    (model / "report.html").unlink()
    assert main(["evaluate", str(model), "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "-q", "--no-report", "--no-plots"]) == 0
    assert not (model / "report.html").exists()


def test_folder_without_model_class_is_an_error(model_dir: tuple[Path, Path], tmp_path: Path) -> None:
    other = tmp_path / "nothing"
    write(other / "Unheard" / "u.wav", tone(600, 1.0))
    with pytest.raises(DatasetError, match="no file in a folder named like a model class"):
        run_evaluation(model_dir[0], data_dir=other, cache_dir=tmp_path / "cache", workers=1, progress=False, log=lambda s: None)
