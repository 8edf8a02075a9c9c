"""The demo prints each step's output under that step's header."""

from __future__ import annotations

from pathlib import Path

import pytest

from cultural_music.cli import main


def test_demo_prints_test_metrics_under_the_evaluation_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--per-class", "3", "--seconds", "2", "--clip-seconds", "1",
            "--epochs", "1", "--patience", "1", "--model", "seed-cnn", "--workers", "1", "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    evaluate_at, predict_at = text.index("== 3/4"), text.index("== 4/4")
    metrics_at = text.index("test recordings:")
    assert evaluate_at < metrics_at < predict_at
    assert text.count("🎵") == 5 and text.rindex("🎵") > predict_at
