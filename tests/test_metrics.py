from __future__ import annotations

import numpy as np
import pytest

from cultural_music.metrics import classification_metrics, mean_by_group


def test_hand_computed_case_with_a_class_never_predicted() -> None:
    # true: a a b b c ; predicted: a b b b a  (c never predicted)
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    proba = np.full((5, 3), 0.1)
    proba[np.arange(5), pred] = 0.8
    m = classification_metrics(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    # recall a=1/2, b=1, c=0 -> balanced 0.5
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    # precision a=1/2, b=2/3, c=0 ; f1 a=0.5, b=0.8, c=0
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["precision"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["baseline_accuracy"] == pytest.approx(2 / 5)
    assert m["n"] == 5


def test_perfect_scores_and_auc() -> None:
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    m = classification_metrics(y, proba, ["x", "y"])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["per_class"]["x"]["roc_auc"] == 1.0


def test_mean_by_group() -> None:
    keys, v = mean_by_group(["f1", "f2", "f1"], np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    assert keys == ["f1", "f2"]
    np.testing.assert_allclose(v, [[0.5, 0.5], [0.0, 1.0]])
