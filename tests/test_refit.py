"""Measure on a split, deploy on everything (issue 16 item 1), and the head's settings chosen on
the training side only (item 2): ``cultural-music train`` scores the sealed test split, then
refits on every file; ``evaluate`` on the refitted folder shows the held-out numbers as measured."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cultural_music.cli import main
from cultural_music.training.artifact import load_artifact

from conftest import make_tone_dataset

TONES = {"low": 300.0, "mid": 900.0, "high": 2400.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_dataset(tmp_path_factory.mktemp("refit") / "data", classes=TONES, per_class=7, sr=16000)


def _train(data: Path, out: Path, *extra: str) -> None:
    assert main(["train", str(data), "--out", str(out), "--duration", "1", "--workers", "1", "-q",
                 "--cache-dir", str(data.parent / "cache"), *extra]) == 0


def _split(model: Path) -> dict[str, str]:
    with open(model / "split.csv", newline="") as fh:
        return {row["path"]: row["split"] for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def refitted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], Path]:
    """The default model trained with the refit; the head search's inputs recorded."""
    import cultural_music.training.head_fit as head_fit

    seen: list[dict] = []
    real = head_fit.choose_head

    def spy(z, y, groups, *args, **kwargs):
        seen.append({"groups": set(groups.tolist()), "rows": len(y)})
        return real(z, y, groups, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(head_fit, "choose_head", spy)
    try:
        out = tmp_path_factory.mktemp("m") / "model"
        _train(data, out)
    finally:
        mp.undo()
    return out, seen, data


def test_the_deployed_model_saw_every_file(refitted) -> None:
    out, _, data = refitted
    meta = json.loads((out / "model.json").read_text())
    n_files = sum(1 for _ in data.rglob("*.wav"))
    split = _split(out)
    assert meta["refit"]["files"] == n_files == len(split)
    assert meta["refit"]["files_per_split"] == {s: list(split.values()).count(s) for s in ("train", "val", "test")}
    assert meta["training"]["fit_clips"] == n_files  # 1 s files, 1 s clips: one clip each
    assert meta["training"]["held_out"].startswith("none: refitted on every file")
    # settings chosen by the measured run, kept for the refit: no new search on the test files
    assert meta["config"]["train"]["tune"] == [] and meta["head_search"]["C"] == meta["config"]["train"]["logreg_c"]


def test_the_grid_was_searched_on_training_groups_only(refitted) -> None:
    out, seen, _ = refitted
    split = _split(out)
    test_groups = {p for p, s in split.items() if s == "test"}  # no groups CSV: a file is its group
    side = {p for p, s in split.items() if s in ("train", "val")}
    assert len(seen) == 1, "one search (the measured run); the refit reuses its choice"
    assert seen[0]["groups"] == side and not seen[0]["groups"] & test_groups
    assert seen[0]["rows"] == len(side)


def test_metrics_are_the_held_out_ones_and_evaluate_does_not_rescore(refitted, monkeypatch, capsys) -> None:
    out, _, _ = refitted
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "test split" and metrics["n"] == list(_split(out).values()).count("test")
    assert metrics["deployed"]["files"] == json.loads((out / "model.json").read_text())["refit"]["files"]
    assert "Measured before the refit" in (out / "report.html").read_text()
    import cultural_music.evaluation.evaluate as ev

    monkeypatch.setattr(ev, "evaluate_recordings", lambda *a, **k: pytest.fail("a refitted model's test split was re-scored"))
    assert main(["evaluate", str(out), "--json", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == metrics
    assert "BEFORE the refit" in captured.err


def test_refit_weights_differ_from_the_measured_and_no_refit_keeps_the_split_model(refitted, tmp_path) -> None:
    out, _, data = refitted
    measured = tmp_path / "measured"
    _train(data, measured, "--no-refit")
    meta = json.loads((measured / "model.json").read_text())
    assert "refit" not in meta and not (measured / "metrics.json").exists()
    assert _split(measured) == _split(out)
    a, b = load_artifact(measured).model.state_dict(), load_artifact(out).model.state_dict()
    assert any((a[k] != b[k]).any() for k in a), "the refit must change the weights (more data)"
    assert meta["head_search"] == json.loads((out / "model.json").read_text())["head_search"]


def test_an_epoch_model_refits_for_the_kept_number_of_epochs(data, tmp_path) -> None:
    out = tmp_path / "cnn"
    _train(data, out, "--model", "seed-cnn", "--epochs", "3", "--patience", "5", "--augment-variants", "0")
    meta = json.loads((out / "model.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert meta["refit"]["files"] == len(_split(out))
    assert meta["training"]["val_clips"] == 0 and meta["training"]["train_clips"] == len(_split(out))
    assert all(h["val_loss"] is None for h in history) and len(history) == meta["config"]["train"]["epochs"] <= 3
