"""Say what is true (issue 14 s5): a full-batch L-BFGS head is one fit, reported once; summaries
show only the settings that act on the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cultural_music.config import Config, TrainConfig
from cultural_music.models import applicable_settings, build_model, default_config
from cultural_music.training.pipeline import run_training
from cultural_music.metrics.plots import plot_history
from cultural_music.evaluation.report import render_report
from cultural_music.training.loop import train_model

from conftest import make_tone_dataset, random_clip_dataset
from test_reliability import QUIET


def test_lbfgs_head_is_reported_as_one_fit(tmp_path: Path) -> None:
    train_ds, val_ds = random_clip_dataset(tmp_path, 12, "t", rows=1506, cols=2), random_clip_dataset(tmp_path, 4, "v", rows=1506, cols=2)
    cfg = TrainConfig(**{**default_config("musicnn").train.__dict__, "epochs": 13, "class_weighting": "none"})
    logs: list[str] = []
    result = train_model(build_model("musicnn", n_classes=2, n_mels=1506), train_ds, val_ds, cfg, log=logs.append)
    assert not any(x.startswith("epoch") for x in logs)
    fit_lines = [x for x in logs if x.startswith("fitted by full-batch L-BFGS")]
    assert len(fit_lines) == 1 and "iterations" in fit_lines[0] and "validation loss" in fit_lines[0]
    assert len(result.history) == 1 and result.best_epoch == 1
    rec = result.history[0]
    assert rec["fit"] == "lbfgs" and rec["iterations"] >= 1 and np.isfinite(rec["val_loss"])
    paths = plot_history(result.history, tmp_path / "plots")
    assert [p.name for p in paths] == ["accuracy.png", "loss.png"] and all(p.stat().st_size > 0 for p in paths)


def test_applicable_settings_leave_out_what_the_model_does_not_use() -> None:
    head = applicable_settings(default_config("musicnn"))
    assert head["features"] == {"kind": "musicnn-embedding", "backbone": "MSD_musicnn"}
    assert "backbone_lr_scale" not in head["train"] and "batch_size" not in head["train"]
    cfg = default_config("res-cnn").replace(augment={"n_variants": 0})
    res = applicable_settings(cfg)
    assert "time_stretch_p" not in res["augment"] and "spec_mask_p" in res["augment"]
    assert "warmup_epochs" in res["train"] and "mixup_alpha" in res["train"] and "backbone_lr_scale" not in res["train"]
    assert "n_mels" in res["features"] and "n_fft" in res["features"]
    assert "backbone_lr_scale" in applicable_settings(default_config("musicnn-finetune"))["train"]
    assert Config.from_dict(cfg.to_dict()) == cfg  # the full config is still what prediction rebuilds


def test_model_json_and_report_of_a_fit(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4, sr=16000)
    cfg = default_config("musicnn").replace(audio={"clip_seconds": 1.0}, train={"seed": 0})
    run_training(data, tmp_path / "m", cfg, cache_dir=tmp_path / "c", **QUIET)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["training"]["fit"] == "lbfgs" and "best_epoch" not in meta["training"] and meta["training"]["iterations"] >= 1
    assert "n_fft" not in meta["settings"]["features"] and "backbone_lr_scale" not in meta["settings"]["train"]
    assert "n_fft" in meta["config"]["features"]  # kept for rebuilding the exact Config
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert len(history) == 1 and history[0]["fit"] == "lbfgs"
    metrics = {"classes": meta["classes"], "n": 0, "n_clips": 0, "data": "test split"}
    sections = _render(metrics, meta)
    assert "no training curve" in sections and "Accuracy per epoch" not in sections
    assert "n_fft" not in sections and "backbone_lr_scale" not in sections and "1506" not in sections


def _render(metrics: dict, meta: dict) -> str:
    from cultural_music.evaluation import report

    return report._curves(meta, {}) + report._settings(meta)
