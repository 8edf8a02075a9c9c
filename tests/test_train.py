"""The training loop with the recipe switched on: losses as expected, determinism, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cultural_music.config import TrainConfig
from cultural_music.training.clip_dataset import ClipDataset, ClipItem
from cultural_music.errors import ParameterError
from cultural_music.models import build_model
from cultural_music.training.loop import make_optimizer, train_model


def _dataset(root: Path, labels: list[int], *, seed: int = 0, shape: tuple[int, int] = (16, 12), train: bool = False) -> ClipDataset:
    """One ``.npy`` per clip; class c has its energy in mel rows around 4c."""
    g = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i, lab in enumerate(labels):
        x = 0.1 * g.random((1, *shape), dtype=np.float32)
        x[0, 4 * lab : 4 * lab + 3] += 0.8
        np.save(root / f"{i}.npy", x)
        items.append(ClipItem(root / f"{i}.npy", 0, lab, f"c{lab}/{i}.wav"))
    return ClipDataset(items, train=train, seed=seed)


class _ConstantLogits(nn.Module):
    """Logits that ignore the input (so the loss depends on the labels only)."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1)


@pytest.mark.parametrize("weighting", ["none", "balanced"])
def test_class_weighting_changes_validation_loss_as_expected(tmp_path: Path, weighting: str) -> None:
    labels = [0] * 9 + [1]
    ds = _dataset(tmp_path, labels)
    model = _ConstantLogits([2.0, 0.0])
    cfg = TrainConfig(epochs=1, batch_size=4, learning_rate=1e-12, class_weighting=weighting)
    res = train_model(model, ds, ds, cfg, log=lambda s: None)
    logp = torch.log_softmax(torch.tensor([2.0, 0.0]), 0).numpy()
    l0, l1 = -logp[0], -logp[1]
    expected = (9 * l0 + l1) / 10 if weighting == "none" else (l0 + l1) / 2
    assert res.history[0]["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_balanced_sampling_evens_out_the_training_loss(tmp_path: Path) -> None:
    labels = [0] * 18 + [1] * 2
    ds = _dataset(tmp_path, labels)
    model = _ConstantLogits([2.0, 0.0])
    l0, l1 = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0).numpy()
    plain = train_model(model, ds, ds, TrainConfig(epochs=1, batch_size=5, learning_rate=1e-12), log=lambda s: None)
    assert plain.history[0]["train_loss"] == pytest.approx((18 * l0 + 2 * l1) / 20, rel=1e-5)
    cfg = TrainConfig(epochs=8, batch_size=5, learning_rate=1e-12, patience=100, balanced_sampling=True)
    bal = train_model(model, ds, ds, cfg, log=lambda s: None)
    mean_train = np.mean([h["train_loss"] for h in bal.history])  # about half the draws are class 1
    assert abs(mean_train - (l0 + l1) / 2) < 0.25 * (l1 - l0)


RECIPE = TrainConfig(epochs=3, batch_size=4, learning_rate=3e-3, patience=10, seed=1, weight_decay=1e-2, lr_schedule="cosine",
                     warmup_epochs=0.5, mixup_alpha=0.4, label_smoothing=0.1, class_weighting="balanced", balanced_sampling=True)


def test_recipe_is_deterministic_and_resumes_exactly(tmp_path: Path) -> None:
    labels = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 0]
    train = _dataset(tmp_path / "tr", labels, train=True)
    val = _dataset(tmp_path / "va", [0, 1, 2], seed=1)

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return build_model("res-cnn", n_classes=3, n_mels=16, stem=4, channels=(8, 8))

    full = fresh()
    res = train_model(full, train, val, RECIPE, log=lambda s: None)
    lrs = [h["lr"] for h in res.history]
    assert lrs[0] > lrs[1] > lrs[2] and lrs[0] <= RECIPE.learning_rate  # the cosine schedule is in effect
    again = fresh()
    train_model(again, train, val, RECIPE, log=lambda s: None)
    for k, v in full.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, msg=k)
    # interrupt during epoch 3 (after epoch 2's checkpoint), then resume: same weights, same history
    def interrupt(msg: str) -> None:
        if msg.startswith("epoch   3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(fresh(), train, val, RECIPE, checkpoint_dir=tmp_path / "ck", log=interrupt)
    resumed = fresh()
    res2 = train_model(resumed, train, val, RECIPE, checkpoint_dir=tmp_path / "ck", resume=True, log=lambda s: None)
    assert len(res2.history) == 3
    assert [h["val_loss"] for h in res2.history] == pytest.approx([h["val_loss"] for h in res.history], rel=1e-6)
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, msg=k)


def test_optimizer_choice_and_backbone_groups() -> None:
    m = build_model("seed-cnn", n_classes=2, n_mels=16)
    assert type(make_optimizer(m, TrainConfig())).__name__ == "Adam"
    assert type(make_optimizer(m, TrainConfig(weight_decay=0.01))).__name__ == "AdamW"
    ft = build_model("musicnn-finetune", n_classes=2, n_mels=96, backbone=None)
    opt = make_optimizer(ft, TrainConfig(learning_rate=1e-3, backbone_lr_scale=0.1))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-3])
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in ft.parameters() if p.requires_grad) < sum(p.numel() for p in ft.parameters())


def test_bad_recipe_values() -> None:
    for bad in ({"lr_schedule": "step"}, {"class_weighting": "inverse"}, {"mixup_alpha": -1.0}, {"balanced_sampling": 1},
                {"label_smoothing": 1.0}):
        with pytest.raises(ParameterError):
            TrainConfig(**bad)  # type: ignore[arg-type]


def test_lbfgs_fits_a_regularised_linear_head_regardless_of_seed(tmp_path: Path) -> None:
    from cultural_music.training.lbfgs import l2_penalty

    labels = [0, 1, 2] * 6
    train = _dataset(tmp_path / "tr", labels, shape=(16, 2))
    val = _dataset(tmp_path / "va", [0, 1, 2], seed=1, shape=(16, 2))

    def fit(seed: int, wd: float) -> nn.Module:
        torch.manual_seed(seed)
        m = build_model("musicnn", n_classes=3, n_mels=1506)
        m.head = type(m.head)(n_classes=3, dim=16)  # the same head on 16-dim toy "embeddings"
        cfg = TrainConfig(optimizer="lbfgs", learning_rate=1.0, weight_decay=wd, batch_size=64, epochs=8, patience=8, seed=seed)
        train_model(m, train, val, cfg, log=lambda s: None)
        return m

    a, b = fit(0, 1e-2), fit(5, 1e-2)
    wa, wb = a.head.net[-1].weight.detach(), b.head.net[-1].weight.detach()
    torch.testing.assert_close(wa, wb, atol=2e-3, rtol=0)  # convex problem: same optimum from any start
    strong_model = fit(0, 1.0)
    strong = strong_model.head.net[-1].weight.detach()
    assert float(l2_penalty(strong_model, 1.0).detach()) == pytest.approx(float((strong**2).sum()), rel=1e-5)
    assert float((strong**2).sum()) < 0.2 * float((wa**2).sum())  # a stronger penalty shrinks the weights
    a.eval()
    with torch.no_grad():
        assert (a(torch.stack([val[i][0] for i in range(3)])).argmax(1) == torch.tensor([0, 1, 2])).all()
    with pytest.raises(ParameterError, match="mixup_alpha"):
        TrainConfig(optimizer="lbfgs", mixup_alpha=0.2)
