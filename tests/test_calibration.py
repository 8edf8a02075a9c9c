from __future__ import annotations

import numpy as np
import pytest

from cultural_music.metrics.calibration import expected_calibration_error, fit_temperature, nll, reliability_bins
from cultural_music.errors import ParameterError
from cultural_music.metrics.classification import softmax


def _overconfident(rng: np.random.Generator, n: int = 400, k: int = 4, scale: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), logits reported as scale * z: right ~as often as softmax(z) says,
    but far more confident than that."""
    z = rng.normal(size=(n, k))
    p = softmax(z).astype(np.float64)
    y = np.array([rng.choice(k, p=row / row.sum()) for row in p])
    return scale * z, y


def test_nll_hand_computed() -> None:
    logits = np.array([[0.0, np.log(3.0)], [np.log(3.0), 0.0]])
    y = np.array([1, 1])
    # p(y) = 3/4 then 1/4
    assert nll(logits, y) == pytest.approx(-(np.log(0.75) + np.log(0.25)) / 2)
    # T = 2 halves the logits: p = sqrt3 / (1 + sqrt3), then 1 / (1 + sqrt3)
    s = np.sqrt(3.0)
    assert nll(logits, y, 2.0) == pytest.approx(-(np.log(s / (1 + s)) + np.log(1 / (1 + s))) / 2)


def test_temperature_lowers_nll_of_overconfident_logits(rng: np.random.Generator) -> None:
    logits, y = _overconfident(rng)
    cal = fit_temperature(logits, y)
    assert cal["method"] == "temperature"
    assert cal["temperature"] > 3.0  # the built-in over-confidence is a factor 8
    assert cal["nll_after"] < cal["nll_before"] - 0.5
    assert cal["nll_after"] == pytest.approx(nll(logits, y, cal["temperature"]))
    # it is the minimum: a fine grid finds nothing better
    grid = np.exp(np.linspace(np.log(0.1), np.log(20), 400))
    assert cal["nll_after"] <= min(nll(logits, y, t) for t in grid) + 1e-4
    # ECE drops too
    assert expected_calibration_error(y, softmax(logits, cal["temperature"])) < expected_calibration_error(y, softmax(logits))


def test_temperature_sharpens_underconfident_logits(rng: np.random.Generator) -> None:
    logits, y = _overconfident(rng, scale=0.25)
    cal = fit_temperature(logits, y)
    assert cal["temperature"] < 0.5
    assert cal["nll_after"] <= cal["nll_before"]


def test_never_worse_than_t1_and_degenerate_cases(rng: np.random.Generator) -> None:
    logits, y = _overconfident(rng, n=300, scale=1.0)  # already calibrated: T stays near 1
    cal = fit_temperature(logits, y)
    assert 0.7 < cal["temperature"] < 1.4 and cal["nll_after"] <= cal["nll_before"]
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))["temperature"] == 1.0
    # every clip right: NLL only falls as T -> 0, so no temperature is fitted (no blind sharpening)
    perfect = fit_temperature(np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), np.array([0, 1, 0]))
    assert perfect["temperature"] == 1.0 and perfect["method"] == "none"
    with pytest.raises(ParameterError, match="val_logits"):
        fit_temperature(np.zeros((4, 3)), np.zeros(3, dtype=int))


def test_ece_and_bins_hand_computed() -> None:
    # confidences 0.85, 0.85 (one right, one wrong) and 0.65, 0.65 (both right), 10 bins
    proba = np.array([[0.85, 0.15], [0.85, 0.15], [0.35, 0.65], [0.35, 0.65]])
    y = np.array([0, 1, 1, 1])
    bins = reliability_bins(y, proba, n_bins=10)
    assert bins["count"] == [0, 0, 0, 0, 0, 0, 2, 0, 2, 0]
    assert bins["accuracy"][8] == pytest.approx(0.5) and bins["confidence"][8] == pytest.approx(0.85)
    assert bins["accuracy"][6] == pytest.approx(1.0) and bins["confidence"][6] == pytest.approx(0.65)
    assert bins["accuracy"][0] is None
    # (2/4)|0.5 - 0.85| + (2/4)|1 - 0.65|
    assert bins["ece"] == pytest.approx(0.5 * 0.35 + 0.5 * 0.35)
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(0.35)
    # a confidence exactly on an edge goes to the lower bin; 1.0 to the last
    edge = reliability_bins(np.array([0, 0]), np.array([[0.5, 0.5], [1.0, 0.0]]), n_bins=2)
    assert edge["count"] == [1, 1]


def test_ece_perfect_and_bad_bins() -> None:
    y = np.array([0, 1])
    assert expected_calibration_error(y, np.eye(2)) == 0.0
    assert expected_calibration_error(np.zeros(0, dtype=int), np.zeros((0, 2))) == 0.0
    with pytest.raises(ParameterError, match="n_bins"):
        reliability_bins(y, np.eye(2), n_bins=0)
