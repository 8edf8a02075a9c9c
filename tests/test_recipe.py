"""Recipe ingredients: class-balanced weights and sampling, mixup, learning-rate schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cultural_music.errors import ParameterError
from cultural_music.training.mixup import mixup_batch
from cultural_music.training.sampling import balanced_class_weights, balanced_sampler, class_counts
from cultural_music.training.schedule import lr_factor

UNBALANCED = np.array([0] * 9 + [1] * 3 + [2] * 1)


def test_balanced_weights_values() -> None:
    w = balanced_class_weights(UNBALANCED, 4)
    # n / (k * n_c) with n = 13, k = 3 present classes; the absent class gets 0
    np.testing.assert_allclose(w.numpy(), [13 / 27, 13 / 9, 13 / 3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(class_counts(UNBALANCED, 4), [9, 3, 1, 0])
    with pytest.raises(ParameterError):
        class_counts(np.array([0, 5]), 3)


def test_balanced_weights_make_every_class_count_the_same(rng: np.random.Generator) -> None:
    logits = torch.from_numpy(rng.standard_normal((len(UNBALANCED), 3)).astype(np.float32))
    y = torch.from_numpy(UNBALANCED)
    per_item = nn.functional.cross_entropy(logits, y, reduction="none")
    per_class_mean = torch.stack([per_item[y == c].mean() for c in range(3)]).mean()
    weighted = nn.CrossEntropyLoss(weight=balanced_class_weights(UNBALANCED, 3))(logits, y)
    plain = nn.CrossEntropyLoss()(logits, y)
    torch.testing.assert_close(weighted, per_class_mean)
    assert not torch.isclose(plain, per_class_mean)  # the toy set is unbalanced enough to tell


def test_balanced_sampler_draws_classes_evenly_and_reproducibly() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    draws = np.array(list(balanced_sampler(labels, seed=3, num_samples=4000)))
    share = (labels[draws] == 1).mean()
    assert 0.46 < share < 0.54  # 0.10 without balancing
    again = np.array(list(balanced_sampler(labels, seed=3, num_samples=4000)))
    np.testing.assert_array_equal(draws, again)
    assert len(list(balanced_sampler(labels, seed=0))) == 100
    with pytest.raises(ParameterError):
        balanced_sampler(np.array([], dtype=int), seed=0)


def test_mixup_mixes_inputs_and_loss() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    m = mixup_batch(x, y, alpha=0.4, rng=np.random.default_rng(0))
    g = np.random.default_rng(0)
    lam, perm = g.beta(0.4, 0.4), g.permutation(4)
    assert m.lam == pytest.approx(lam)
    torch.testing.assert_close(m.x, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(m.y_b, y[perm])
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    ce = nn.CrossEntropyLoss()
    torch.testing.assert_close(m.loss(ce, logits), lam * ce(logits, y) + (1 - lam) * ce(logits, y[perm]))
    off = mixup_batch(x, y, alpha=0.0, rng=np.random.default_rng(0))
    assert off.lam == 1.0 and off.x is x


def test_lr_schedules() -> None:
    assert [lr_factor("none", s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    # cosine: warm-up 1/10 .. 10/10 over 10 steps, then half-way through the rest it is 0.5
    assert lr_factor("cosine", 0, 110, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor("cosine", 9, 110, warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 110, warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor("cosine", 60, 110, warmup_steps=10) == pytest.approx(0.5)
    assert lr_factor("cosine", 109, 110, warmup_steps=10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    onecycle = [lr_factor("onecycle", s, 100) for s in range(100)]
    assert int(np.argmax(onecycle)) in (29, 30) and onecycle[0] < 0.05 and onecycle[-1] < 0.01
    with pytest.raises(ParameterError):
        lr_factor("step", 0, 10)
