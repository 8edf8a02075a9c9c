"""The convex head (issue 16): scikit-learn's logistic regression written into the network, its C
and class weighting chosen by group cross-validation on the training side only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cultural_music.models import build_model
from cultural_music.training.convex_head import convex_parts, fit_logreg, write_head
from cultural_music.training.head_search import C_GRID, choose_head, group_folds


def _blobs(rng: np.random.Generator, n_per: list[int], d: int = 12, spread: float = 1.0):
    """Gaussian blobs ``(n, d)`` with labels and one group per 4 points of a class."""
    centres = rng.normal(size=(len(n_per), d)) * 2
    z = np.concatenate([c + spread * rng.normal(size=(n, d)) for c, n in zip(centres, n_per)])
    y = np.concatenate([np.full(n, i) for i, n in enumerate(n_per)])
    groups = np.array([f"{c}-{i // 4}" for c, n in enumerate(n_per) for i in range(n)])
    return z, y, groups


def test_the_network_answers_exactly_what_scikit_learn_fitted() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    model = build_model("musicnn", n_classes=3, n_rows=1506)
    parts = convex_parts(model)
    x = torch.randn(30, 1, 1506, 2)
    z = parts.pool(x).double().numpy()
    y = np.arange(30) % 3
    fit = fit_logreg(z, y, 3, C=0.5, class_weighting="none", eps=parts.eps)
    write_head(model, fit)
    model.eval()
    zs = (z - z.mean(0)) / np.sqrt(z.var(0) + parts.eps)
    ref = LogisticRegression(C=0.5, max_iter=10000, tol=1e-10).fit(zs, y)  # the optimum, fitted in the full space
    net = torch.softmax(model(x), 1).detach().double().numpy()
    np.testing.assert_allclose(net, ref.predict_proba(zs), atol=1e-5)
    assert rng is not None


def test_binary_and_absent_classes_map_onto_all_outputs() -> None:
    rng = np.random.default_rng(1)
    z, y, _ = _blobs(rng, [10, 10])
    y = np.where(y == 1, 2, 0)  # classes 0 and 2 of 3; class 1 absent
    fit = fit_logreg(z, y, 3, C=1.0, class_weighting="none", eps=1e-5)
    from sklearn.linear_model import LogisticRegression

    zs = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
    ref = LogisticRegression(C=1.0, max_iter=10000, tol=1e-10).fit(zs, y).predict_proba(zs)
    logits = fit.logits(z, 1e-5)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p[:, [0, 2]], ref, atol=1e-5)
    assert p[:, 1].max() < 1e-10


def test_folds_hold_out_whole_groups() -> None:
    rng = np.random.default_rng(2)
    _, y, groups = _blobs(rng, [16, 12, 8])
    folds = group_folds(y, groups, seed=0)
    assert len(folds) == 5
    seen = set()
    for fit_idx, held in folds:
        assert not set(groups[fit_idx]) & set(groups[held])
        seen |= set(held.tolist())
    assert seen == set(range(len(y)))
    assert group_folds(y, np.zeros(len(y)), seed=0) == []


def test_the_search_sees_only_the_rows_it_is_given_and_picks_the_best_score() -> None:
    """choose_head is handed the training side only; every fit and score it makes is on those
    rows (it cannot touch test data: it never receives it), and the chosen setting is the one
    with the best cross-validated score."""
    rng = np.random.default_rng(3)
    z, y, groups = _blobs(rng, [40, 8], spread=2.5)
    seen_rows: list[int] = []

    def score(oof: np.ndarray) -> float:
        seen_rows.append(len(oof))
        from sklearn.metrics import f1_score

        return float(f1_score(y, oof.argmax(1), average="macro"))

    choice = choose_head(z, y, groups, 2, eps=1e-5, seed=0, score=score, default=(0.1, "balanced"))
    assert set(seen_rows) == {len(y)} and len(choice.table) == len(C_GRID) * 2
    order = {"none": 0, "balanced": 1}
    top = max(choice.table, key=lambda r: (r["macro_f1"], -r["log_loss"], -r["C"], -order[r["class_weighting"]]))
    assert (choice.C, choice.class_weighting) == (top["C"], top["class_weighting"])
    assert choice.oof_logits.shape == (len(y), 2)


def test_no_search_with_too_few_groups_or_one_setting() -> None:
    rng = np.random.default_rng(4)
    z, y, _ = _blobs(rng, [6, 6])
    choice = choose_head(z, y, np.zeros(len(y)), 2, eps=1e-5, seed=0, score=lambda o: 0.0, default=(0.1, "none"))
    assert (choice.C, choice.class_weighting, choice.oof_logits) == (0.1, "none", None) and "too few groups" in choice.reason
    one = choose_head(z, y, np.arange(len(y)), 2, eps=1e-5, seed=0, score=lambda o: 0.0, C_values=(1.0,), weightings=("none",),
                      default=(1.0, "none"))
    assert one.oof_logits is None and one.table == []


def test_row_span_is_reused_for_the_same_rows_only() -> None:
    from cultural_music.training import convex_head as ch

    g = np.random.default_rng(0)
    a, b = g.standard_normal((20, 50)), g.standard_normal((20, 50))
    first = ch._row_span(a)
    assert ch._row_span(a.copy()) is first  # same bytes: the kept basis
    np.testing.assert_allclose(ch._compute_span(a), first)
    other = ch._row_span(b)
    assert other is not first and not np.allclose(np.abs(other @ a.T), np.abs(first @ a.T))
    np.testing.assert_allclose(first @ first.T, np.eye(len(first)), atol=1e-10)
    assert ch._row_span(g.standard_normal((50, 20))) is None  # fewer dims than rows: no span
