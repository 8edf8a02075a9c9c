"""``--model musicnn`` end to end: cached frozen embeddings, trained head, saved and reloaded;
and the CLI's per-model defaults (``cli/train.py::build_config``)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest

from cultural_music.cli.train import DEFAULT_MODEL, build_config, resolve_model
from cultural_music.models import default_config

from conftest import make_tone_dataset, tone, write


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cultural_music.training.pipeline import run_training

    root = tmp_path_factory.mktemp("musicnn")
    data = make_tone_dataset(root / "data", per_class=6, seconds=1.0, sr=16000)
    cfg = default_config("musicnn").replace(audio={"clip_seconds": 1.0}, train={"seed": 0})
    run_training(data, root / "model", cfg, cache_dir=root / "cache", workers=1, progress=False, log=lambda s: None)
    return data, root / "model"


def test_model_folder_records_backbone_and_embeddings_are_cached(trained: tuple[Path, Path]) -> None:
    _, model = trained
    meta = json.loads((model / "model.json").read_text())
    assert meta["model"]["name"] == "musicnn"
    assert (meta["config"]["features"]["kind"], meta["config"]["features"]["backbone"]) == ("musicnn-embedding", "MSD_musicnn")
    assert meta["config"]["audio"]["sample_rate"] == 16000
    cached = list((model.parent / "cache").rglob("*.npy"))
    assert len(cached) == 18 and all(np.load(p).shape == (1, 1506, 1) for p in cached)


def test_musicnn_head_learns_tones_and_predicts_after_reload(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from cultural_music.evaluation.evaluate import run_evaluation
    from cultural_music.inference.classifier import Classifier

    data, model = trained
    m = run_evaluation(model, cache_dir=model.parent / "cache", workers=1, progress=False, plots=False, log=lambda s: None).metrics
    assert m["accuracy"] >= 0.8  # chance 1/3
    q = write(tmp_path / "q.wav", tone(300, 2.0, 22050, rng=np.random.default_rng(3)), 22050)  # resampled to 16 kHz
    assert Classifier.load(model).predict(q).label == "low"


def test_cli_config_uses_model_defaults_unless_given() -> None:
    cfg = build_config("musicnn", {"duration": 5.0, "epochs": None, "backbone": "MTT_musicnn", "class_weights": "none"})
    assert (cfg.features.kind, cfg.features.backbone) == ("musicnn-embedding", "MTT_musicnn") and cfg.audio.sample_rate == 16000
    assert cfg.audio.clip_seconds == 5.0 and cfg.train.class_weighting == "none" and cfg.train.optimizer == "lbfgs"
    assert build_config("res-cnn", {"mixup": 0.3}).train.mixup_alpha == 0.3
    assert cfg.train.epochs == default_config("musicnn").train.epochs
    ref = build_config("seed-cnn", {"sample_rate": 8000, "n_mels": 32})
    assert (ref.train.learning_rate, ref.train.lr_schedule, ref.train.mixup_alpha) == (1e-4, "none", 0.0)
    assert ref.audio.sample_rate == 8000 and ref.features.n_mels == 32
    with pytest.raises(click.BadParameter, match="must be 16000"):
        build_config("musicnn", {"sample_rate": 8000})
    with pytest.raises(click.BadParameter, match="no pretrained backbone"):
        build_config("res-cnn", {"backbone": "MSD_musicnn"})
    with pytest.raises(click.BadParameter, match="unknown model"):
        build_config("nope", {})
    assert DEFAULT_MODEL == "auto" and resolve_model(DEFAULT_MODEL, None, {})[0].train.model == "musicnn"
