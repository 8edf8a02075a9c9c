from __future__ import annotations

import numpy as np
import pytest

from cultural_music.metrics.calibration import nll
from cultural_music.metrics.classification import classification_metrics, log_loss_nats, log_softmax, mean_by_group, softmax


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


def test_class_absent_from_truth_is_left_out_of_macro_scores() -> None:
    # true: a a b b (no c); predicted: a c b b -> c predicted once, never true
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.1, 0.7], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]])
    m = classification_metrics(y, proba, ["a", "b", "c"], majority_class=1)
    # f1 a = 2/3 (p 1, r 1/2), b = 1 ; c has no support and is not averaged
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1) / 2)
    assert m["per_class"]["c"]["roc_auc"] is None and m["per_class"]["c"]["support"] == 0
    # AUC of a: positives score 0.8, 0.2; negatives 0.1, 0.3 -> 3 of 4 pairs ranked right
    assert m["per_class"]["a"]["roc_auc"] == pytest.approx(0.75)
    assert m["baseline_class"] == "b" and m["baseline_accuracy"] == pytest.approx(0.5)
    assert m["baseline_macro_f1"] == pytest.approx((0 + 2 / 3) / 2)  # b: p 1/2, r 1 -> 2/3


def test_one_log_loss_hand_computed_and_shared() -> None:
    """log_loss_nats is -mean log p(true class) (what evaluate's recording NLL was), the same number
    as classification_metrics' log loss and as nll() of the logits; a zero probability counts 1e-12."""
    proba = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.0, 1.0, 0.0]])
    y = np.array([0, 1, 0])
    expected = -(np.log(0.5) + np.log(0.8) + np.log(1e-12)) / 3
    assert log_loss_nats(y, proba, 3) == pytest.approx(expected, rel=1e-9)
    assert classification_metrics(y, proba, ["a", "b", "c"])["log_loss"] == pytest.approx(expected, rel=1e-9)
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    t = 1.7
    assert log_loss_nats(y[:2], softmax(logits, t), 3) == pytest.approx(nll(logits, y[:2], t), rel=1e-6)
    np.testing.assert_allclose(np.exp(log_softmax(logits, t)), softmax(logits, t), rtol=1e-6)
