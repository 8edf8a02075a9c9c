"""The training loop's joins: the run context (local / data-parallel), the full-batch head fit,
the training summary, and steps of one clip that batch norm cannot train on."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import random_clip_dataset
from cultural_music.cluster.ddp import DistContext
from cultural_music.config import TrainConfig
from cultural_music.errors import CulturalMusicError
from cultural_music.models import build_model
from cultural_music.training.context import LocalContext, TrainContext
from cultural_music.training.loop import fit_head, is_full_batch, train_model




def _public(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls) if not n.startswith("_")}


def test_local_and_distributed_contexts_answer_the_same_questions() -> None:
    asked = _public(TrainContext)
    assert {"is_writer", "wrap", "train_loader", "check_batches", "merge_train", "sync_state", "from_rank0"} <= asked
    assert _public(LocalContext) - {"rank", "world_size"} == _public(DistContext) - {"rank", "world_size"} == asked
    local = LocalContext()
    assert (local.rank, local.world_size, local.is_writer, local.batch_size(16)) == (0, 1, True, 16)
    m = nn.Linear(2, 2)
    assert local.wrap(m) is m
    assert local.merge_train(0.5, 0.25, 8) == (0.5, 0.25, 8) and local.from_rank0(1.5, 2.0) == (1.5, 2.0)


def test_seed_cnn_fits_by_lbfgs(tmp_path: Path) -> None:
    """``--model seed-cnn`` with ``optimizer=lbfgs`` crashed: channels-last gradients cannot be flattened."""
    train, val = random_clip_dataset(tmp_path, 6, "tr"), random_clip_dataset(tmp_path, 4, "va")
    cfg = TrainConfig(optimizer="lbfgs", epochs=2, learning_rate=1.0, batch_size=4)
    torch.manual_seed(0)
    net = build_model("seed-cnn", n_classes=2, n_mels=16)
    before = [p.detach().clone() for p in net.parameters()]
    res = train_model(net, train, val, cfg, log=lambda s: None)
    assert len(res.history) == 1 and res.history[0]["fit"] == "lbfgs" and res.history[0]["iterations"] > 0
    assert np.isfinite(res.history[0]["train_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # it did fit


def test_train_model_hands_a_full_batch_recipe_to_fit_head(tmp_path: Path) -> None:
    train, val = random_clip_dataset(tmp_path, 9, "tr", rows=1506, cols=2), random_clip_dataset(tmp_path, 4, "va", rows=1506, cols=2)
    cfg = TrainConfig(optimizer="lbfgs", epochs=3, patience=3, learning_rate=1.0, weight_decay=1e-3)
    assert is_full_batch(cfg) and not is_full_batch(TrainConfig())
    runs = []
    for fit in (train_model, fit_head):
        torch.manual_seed(0)
        net = build_model("musicnn", n_classes=2, n_mels=1506)
        lines: list[str] = []
        res = fit(net, train, val, cfg, log=lines.append)
        runs.append((res, [p.detach().clone() for p in net.parameters()], lines))
    (a, wa, la), (b, wb, lb) = runs
    assert a.history == [{**b.history[0], "seconds": a.history[0]["seconds"]}] and la == lb and len(la) == 1
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    h = a.history[0]
    assert a.summary() == {"fit": "lbfgs", "iterations": h["iterations"], "final_train_loss": h["train_loss"],
                           "train_accuracy": h["train_accuracy"], "val_loss": h["val_loss"], "val_accuracy": h["val_accuracy"]}


def test_summary_of_an_epoch_loop(tmp_path: Path) -> None:
    train, val = random_clip_dataset(tmp_path, 6, "tr"), random_clip_dataset(tmp_path, 4, "va")
    cfg = TrainConfig(epochs=5, patience=2, batch_size=4, learning_rate=1e-12)  # no progress: stops after 1 + 2
    res = train_model(build_model("seed-cnn", n_classes=2, n_mels=16), train, val, cfg, log=lambda s: None)
    assert res.summary() == {"best_epoch": 1, "best_val_loss": res.history[0]["val_loss"], "epochs_run": 3,
                             "stopped_early": True}


def test_ddp_step_of_one_clip_is_a_clear_error_for_batch_norm(tmp_path: Path) -> None:
    """2 ranks at batch size 2 train res-cnn on 1 clip per rank and step: batch norm failed deep in torch."""
    train, val = random_clip_dataset(tmp_path, 8, "tr"), random_clip_dataset(tmp_path, 4, "va")
    net = build_model("res-cnn", n_classes=2, n_mels=16)
    rank = DistContext(0, 2)
    with pytest.raises(CulturalMusicError, match=r"batch_size 2 over 2 workers.*--batch-size 4"):
        train_model(net, train, val, TrainConfig(epochs=1, batch_size=2), log=lambda s: None, dist=rank)
    rank.check_batches(net, train, TrainConfig(batch_size=4))  # 2 clips per rank: fine
    with pytest.raises(CulturalMusicError, match="8 training clips over 8 workers leave one clip per worker.*fewer --workers"):
        DistContext(1, 8).check_batches(net, train, TrainConfig(batch_size=16))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 2))  # no batch norm: one clip per step trains
    rank.check_batches(linear, train, TrainConfig(batch_size=2))


def test_local_batch_size_one_is_a_clear_error_for_batch_norm(tmp_path: Path) -> None:
    train, val = random_clip_dataset(tmp_path, 5, "tr"), random_clip_dataset(tmp_path, 4, "va")
    net = build_model("res-cnn", n_classes=2, n_mels=16)
    rng_before = torch.random.get_rng_state()
    with pytest.raises(CulturalMusicError, match="batch_size is 1.*--batch-size 2"):
        train_model(net, train, val, TrainConfig(epochs=1, batch_size=1), log=lambda s: None)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the probe leaves the random state alone
    seed = build_model("seed-cnn", n_classes=2, n_mels=16)  # no batch norm: batch size 1 trains
    res = train_model(seed, train, val, TrainConfig(epochs=1, batch_size=1), log=lambda s: None)
    assert res.history[0]["clips_per_s"] > 0


def test_fit_head_wants_a_full_batch_recipe(tmp_path: Path) -> None:
    from cultural_music.errors import ParameterError

    ds = random_clip_dataset(tmp_path, 4, "tr")
    with pytest.raises(ParameterError, match="fit_head needs TrainConfig.optimizer 'lbfgs'"):
        fit_head(build_model("seed-cnn", n_classes=2, n_mels=16), ds, ds, TrainConfig(), log=lambda s: None)


def test_ray_training_says_so_before_starting_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rank would fail on its first step of one clip: the driver says so before Ray starts."""
    from cultural_music.cluster import ray_train

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started for a run that cannot train")

    monkeypatch.setattr(ray_train, "connect", no_ray)
    ds = random_clip_dataset(tmp_path, 8, "tr")
    with pytest.raises(CulturalMusicError, match=r"batch_size 4 over 4 workers.*--batch-size 8"):
        ray_train.train_on_ray(build_model("res-cnn", n_classes=2, n_mels=16), ds, ds, TrainConfig(batch_size=4), workers=4)
