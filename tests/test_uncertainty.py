"""The uncertain threshold fitted on validation recordings."""

from __future__ import annotations

import numpy as np
import pytest

from cultural_music.errors import ParameterError
from cultural_music.metrics.uncertainty import fit_threshold, is_uncertain


def _proba(conf: list[float], pred: list[int], k: int = 3) -> np.ndarray:
    """Rows whose top class is ``pred`` with probability ``conf``, the rest spread evenly."""
    p = np.array([[(1 - c) / (k - 1)] * k for c in conf])
    p[np.arange(len(conf)), pred] = conf
    return p


def test_all_right_means_never_uncertain() -> None:
    p = _proba([0.5, 0.6, 0.9, 0.95], [0, 1, 2, 0])
    entry = fit_threshold(p, np.array([0, 1, 2, 0]))
    assert entry["threshold"] == 0.0 and entry["coverage"] == 1.0 and entry["val_accuracy"] == 1.0


def test_threshold_sets_aside_least_confident_wrong_answers() -> None:
    conf = [0.40, 0.45, 0.60, 0.70, 0.80, 0.90, 0.95, 0.97, 0.98, 0.99]
    pred = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]  # the two least confident are wrong
    entry = fit_threshold(_proba(conf, pred), np.zeros(10, dtype=int), target_accuracy=0.9)
    assert entry["threshold"] == pytest.approx((0.45 + 0.60) / 2)
    assert entry["kept_accuracy"] == 1.0 and entry["coverage"] == pytest.approx(0.8)
    assert entry["val_accuracy"] == pytest.approx(0.8) and entry["method"] == "selective-accuracy"
    # a lower target is met after setting aside one answer (8/9 >= 0.85)
    assert fit_threshold(_proba(conf, pred), np.zeros(10, dtype=int), target_accuracy=0.85)["threshold"] == pytest.approx(0.525 - 0.1)


def test_cap_on_uncertain_fraction() -> None:
    conf = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    pred = [1, 1, 1, 1, 0, 0]  # 4 of 6 wrong, all at the bottom
    entry = fit_threshold(_proba(conf, pred), np.zeros(6, dtype=int), max_uncertain_fraction=0.5)
    # target 0.9 needs 4 set aside; the cap allows 3 -> best kept accuracy within the cap (2/3)
    assert entry["threshold"] == pytest.approx(0.65) and entry["coverage"] == pytest.approx(0.5)
    assert entry["kept_accuracy"] == pytest.approx(2 / 3)


def test_unreachable_target_with_confident_mistake_stays_zero() -> None:
    conf = [0.5, 0.6, 0.7, 0.8, 0.99]
    pred = [0, 0, 0, 0, 1]  # the only mistake is the most confident answer
    assert fit_threshold(_proba(conf, pred), np.zeros(5, dtype=int))["threshold"] == 0.0


def test_ties_are_never_split() -> None:
    conf = [0.5, 0.5, 0.5, 0.9]
    pred = [1, 0, 0, 0]  # one wrong at 0.5, tied with two right
    entry = fit_threshold(_proba(conf, pred), np.zeros(4, dtype=int), target_accuracy=1.0, max_uncertain_fraction=0.9)
    assert entry["threshold"] == pytest.approx(0.7)  # all three 0.5s set aside together


def test_empty_validation_and_bad_parameters() -> None:
    assert fit_threshold(np.zeros((0, 3)), np.zeros(0, dtype=int))["threshold"] == 0.0
    with pytest.raises(ParameterError, match="target_accuracy"):
        fit_threshold(np.zeros((0, 3)), np.zeros(0, dtype=int), target_accuracy=1.5)


def test_zero_threshold_never_fires() -> None:
    assert not is_uncertain(0.0, 0.0)
    assert is_uncertain(0.49, 0.5) and not is_uncertain(0.5, 0.5)
