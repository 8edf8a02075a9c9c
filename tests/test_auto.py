"""``--model auto`` (training/auto.py): the candidates are compared on the train split only and
the better one is trained; ties go to the cheaper model; model.json and report.html show the
comparison; ``train`` and ``cv`` default to it.

Two small frozen-"embedding" heads are registered for these tests on log-mel tone features: a
good one (the mean log-mel per band, which separates the tones) and a noise one (pooled features
that are seeded random numbers, unrelated to the labels).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from torch import nn

from cultural_music import models
from cultural_music.models import ConvexParts, default_config, register
from cultural_music.training import auto
from cultural_music.training.auto import CandidateScore, choose_model, pick_winner, resolve_candidates

from conftest import make_tone_dataset

_DEFAULTS = {
    "audio": {"sample_rate": 8000, "clip_seconds": 1.0},
    "features": {"n_mels": 16, "n_fft": 256, "hop_length": 128},
    "augment": {"n_variants": 0, "spec_mask_p": 0.0},
    "train": {"optimizer": "lbfgs", "lr_schedule": "none", "mixup_alpha": 0.0, "logreg_c": 1.0,
              "tune": ("class_weighting",)},  # a 2-setting search: fast on 2 busy cores
}


class _TinyHead(nn.Module):
    """Pool ``(batch, 1, rows, frames)`` to ``(batch, rows)`` (mean over frames, or noise), standardise, one linear layer."""

    noise = False

    def __init__(self, *, n_classes: int, n_rows: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_rows, affine=False, momentum=None)
        self.linear = nn.Linear(n_rows, n_classes)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise:
            return torch.randn(len(x), x.shape[2], generator=torch.Generator().manual_seed(len(x)))
        return x[:, 0].mean(dim=2)

    def convex_parts(self) -> ConvexParts:
        return ConvexParts(self.pool, self.norm.running_mean, self.norm.running_var, self.norm.eps, self.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pool(x)
        return self.linear((z - self.norm.running_mean) / torch.sqrt(self.norm.running_var + self.norm.eps))


class _NoiseHead(_TinyHead):
    noise = True


@pytest.fixture
def heads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register ``good``, ``good-twin`` (the same features) and ``noise`` for one test only."""
    models.available_models()  # the built-in ones registered before the copy
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    for name, cls in (("good", _TinyHead), ("good-twin", _TinyHead), ("noise", _NoiseHead)):
        register(name, defaults=_DEFAULTS)(cls)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_dataset(tmp_path_factory.mktemp("auto") / "data", per_class=6)


def _train_split(data: Path) -> list:
    from dataclasses import replace

    from cultural_music.data.dataset import scan_folder

    return [replace(r, split="train") for r in scan_folder(data).recordings]


def _cache(tmp_path: Path):
    from cultural_music.features.cache import FeatureCache

    return FeatureCache(tmp_path / "cache")


def test_auto_picks_the_clearly_better_backbone(heads: None, tones: Path, tmp_path: Path) -> None:
    from cultural_music.features.jobs import LocalRunner

    cfgs = {name: default_config(name) for name in ("noise", "good")}  # the worse one first: order does not decide
    choice = choose_model(_train_split(tones), cfgs, cache=_cache(tmp_path), runner=LocalRunner(1), seed=0, log=lambda s: None,
                          cost=("noise", "good"))  # noise is "cheaper": the score must win
    by_name = {s.name: s for s in choice.scores}
    assert choice.winner == "good" and choice.cfg.train.model == "good"
    assert by_name["good"].mean > 0.9 and by_name["noise"].mean < 0.7, by_name
    assert len(by_name["good"].folds) == choice.n_folds >= 3
    assert "good: best mean macro-F1" in choice.reason


def test_a_tie_goes_to_the_cheaper_model(heads: None, tones: Path, tmp_path: Path) -> None:
    from cultural_music.features.jobs import LocalRunner

    cfgs = {name: default_config(name) for name in ("good", "good-twin")}
    train, cache = _train_split(tones), _cache(tmp_path)
    choice = choose_model(train, cfgs, cache=cache, runner=LocalRunner(1), seed=0, log=lambda s: None, cost=("good-twin", "good"))
    assert choice.scores[0].folds == choice.scores[1].folds  # the same features scored on the same folds
    assert choice.winner == "good-twin" and "tied" in choice.reason and "good-twin is cheaper" in choice.reason
    assert pick_winner(choice.scores, cost=("good", "good-twin"))[0] == "good"


def test_pick_winner_tolerance_and_cost_order() -> None:
    def s(name: str, mean: float) -> CandidateScore:
        return CandidateScore(name, mean, 0.02, [mean], 1.0, "test")

    assert pick_winner([s("fusion", 0.970), s("yamnet", 0.967)])[0] == "yamnet"  # within 0.005: cheaper
    assert pick_winner([s("fusion", 0.970), s("yamnet", 0.960)])[0] == "fusion"  # 0.01 apart: better
    assert pick_winner([s("res-cnn", 0.9), s("musicnn", 0.9), s("zzz", 0.9)])[0] == "musicnn"
    assert pick_winner([s("zzz", 0.9), s("aaa", 0.9)])[0] == "aaa"  # unlisted names: after the listed, by name
    name, reason = pick_winner([s("fusion", 0.970), s("yamnet", 0.967)])
    assert reason.startswith("yamnet: mean within 0.005 of the best") and "fusion 0.970" in reason


def test_choice_reads_the_train_split_only() -> None:
    from cultural_music.data.dataset import Recording
    from cultural_music.errors import DatasetError

    recs = [Recording(Path(f"{i}.wav"), f"{i}.wav", "a" if i % 2 else "b", str(i), "val" if i == 3 else "train") for i in range(6)]
    with pytest.raises(DatasetError, match="train split only"):
        choose_model(recs, {"musicnn": default_config("musicnn")}, cache=None, runner=None, seed=0)


def test_train_auto_writes_the_comparison_and_never_shows_val_or_test(heads: None, tones: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cultural_music.data.dataset import read_split_csv
    from cultural_music.evaluation.deploy import train_and_deploy
    from cultural_music.training.pipeline import prepare_run

    seen: list[tuple[str, str]] = []
    real = auto.extract_features

    def spy(recordings, cfg, *args, **kwargs):
        seen.extend((r.rel_path, r.split) for r in recordings)
        return real(recordings, cfg, *args, **kwargs)

    monkeypatch.setattr(auto, "extract_features", spy)
    cfgs = {name: default_config(name) for name in ("noise", "good")}
    out, logs = tmp_path / "model", []
    prepared = prepare_run(tones, out, cfgs["noise"], cache_dir=tmp_path / "cache", workers=1, progress=False, log=logs.append)
    run, held = train_and_deploy(prepared, out, candidates=cfgs, plots=False)
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["name"] == "good" and meta["config"]["train"]["model"] == "good"
    choice = meta["model_choice"]
    assert choice["winner"] == "good" and [c["model"] for c in choice["candidates"]] == ["noise", "good"]
    assert all(len(c["fold_macro_f1"]) == choice["folds"] for c in choice["candidates"])
    split = {r.rel_path: r.split for r in read_split_csv(out / "split.csv", tones)}
    train = {p for p, s in split.items() if s == "train"}
    assert {s for _, s in seen} == {"train"} and {p for p, _ in seen} == train and len(train) < len(split)
    assert choice["recordings"] == len(train)
    log = "\n".join(logs)
    assert "model choice:" in log and "chosen: good: best mean macro-F1" in log
    report = (out / "report.html").read_text()
    assert '<section id="choice">' in report and "<b>good</b> (chosen)" in report and "noise" in report
    assert held is not None and held["macro_f1"] > 0.8


def test_cli_defaults_to_auto_and_checks_candidates() -> None:
    from cultural_music.cli.cv import cv
    from cultural_music.cli.train import resolve_model, train

    for command in (train, cv):
        assert next(p for p in command.params if p.name == "model_name").default == "auto"
    cfg, cfgs = resolve_model("auto", None, {"duration": 5.0})
    assert list(cfgs) == list(resolve_candidates(None, models.available_models())) and "musicnn" in cfgs
    assert cfg is cfgs["musicnn" if list(cfgs)[0] == "musicnn" else list(cfgs)[0]] and cfg.audio.clip_seconds == 5.0
    assert "res-cnn" in resolve_model("auto", "all", {})[1]
    assert list(resolve_model("auto", "res-cnn,musicnn", {})[1]) == ["res-cnn", "musicnn"]
    assert resolve_model("musicnn", None, {})[1] is None
    with pytest.raises(click.BadParameter, match="only with --model auto"):
        resolve_model("musicnn", "musicnn", {})
    with pytest.raises(click.BadParameter, match="unknown model"):
        resolve_model("auto", "musicnn,nope", {})


def test_a_trained_candidate_is_trained_on_one_fold_and_judged_there(heads: None, tones: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from cultural_music.features.jobs import LocalRunner
    from cultural_music.training import loop

    trained = []
    monkeypatch.setattr(loop, "train_model", lambda model, *a, **k: trained.append(model))  # an untrained res-cnn: chance
    cfgs = {"good": default_config("good"), "res-cnn": default_config("res-cnn").replace(audio=_DEFAULTS["audio"], features=_DEFAULTS["features"])}
    choice = choose_model(_train_split(tones), cfgs, cache=_cache(tmp_path), runner=LocalRunner(1), seed=0, log=lambda s: None)
    by_name = {s.name: s for s in choice.scores}
    assert len(trained) == auto.TRAINED_FOLDS == len(by_name["res-cnn"].folds) < len(by_name["good"].folds) == choice.n_folds
    assert choice.winner == "good" and f"on the first {auto.TRAINED_FOLDS} fold(s)" in choice.reason


def test_pick_winner_compares_the_folds_every_candidate_has() -> None:
    convex = CandidateScore("musicnn", 0.70, 0.2, [0.95, 0.6, 0.55], 1.0, "head")  # best on fold 1, worse on average
    slow = CandidateScore("res-cnn", 0.90, 0.0, [0.90], 1.0, "trained")
    name, reason = pick_winner([convex, slow])
    assert name == "musicnn" and "0.950" in reason and "on the first 1 fold(s)" in reason
    assert pick_winner([convex, CandidateScore("res-cnn", 0.97, 0.0, [0.97], 1.0, "trained")])[0] == "res-cnn"
    assert pick_winner([convex, CandidateScore("yamnet", 0.69, 0.2, [0.5, 0.8, 0.77], 1.0, "head")])[0] == "musicnn"
