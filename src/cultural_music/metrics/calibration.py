"""Confidence calibration: temperature scaling fitted on the validation split, ECE, reliability bins.

Temperature scaling (Guo et al., 2017) divides every logit by one scalar ``T > 0`` chosen to
minimise the negative log-likelihood (NLL) of the validation clips.  It never changes which
class wins, only how confident the answer is.  :func:`fit_temperature` returns the
``calibration`` entry stored in ``model.json``; evaluation and prediction divide logits by its
``temperature``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cultural_music.errors import ParameterError
from cultural_music.metrics.classification import log_softmax

__all__ = ["fit_temperature", "nll", "expected_calibration_error", "reliability_bins", "DEFAULT_BINS"]

DEFAULT_BINS = 15
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats per item) of ``labels (n,)`` under ``softmax(logits / T)``.

    Parameters
    ----------
    logits
        float ``(n, n_classes)``.
    labels
        int ``(n,)`` class indices.
    temperature
        ``T > 0``; ``T > 1`` softens the probabilities, ``T < 1`` sharpens them.
    """
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return 0.0
    logp = log_softmax(logits, temperature)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(val_logits: np.ndarray, val_labels: np.ndarray) -> dict[str, Any]:
    """Fit the temperature that minimises validation NLL; never worse than ``T = 1`` on these data.

    Parameters
    ----------
    val_logits
        float ``(n_clips, n_classes)`` validation logits (uncalibrated).
    val_labels
        int ``(n_clips,)`` class indices.

    Returns
    -------
    dict
        ``temperature`` (1.0 when nothing can be fitted: no validation clips, or every one right,
        where NLL only keeps falling as ``T -> 0``), ``method`` (``"temperature"`` or ``"none"``
        with a ``reason``), ``nll_before`` / ``nll_after`` (nats per clip, on the
        fitting data) and ``n`` (clips used).  JSON-able; stored in ``model.json``.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(val_logits, dtype=np.float64)
    labels = np.asarray(val_labels, dtype=int)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ParameterError(
            "The 'val_logits' parameter of fit_temperature must be (n, n_classes) with one row per label. "
            f"Got shape {logits.shape} for {len(labels)} labels instead."
        )
    if len(labels) == 0 or logits.shape[1] < 2:
        return {"temperature": 1.0, "method": "none", "reason": "no validation clips", "n": int(len(labels))}
    before = nll(logits, labels, 1.0)
    if np.all(logits.argmax(axis=1) == labels):  # NLL falls forever as T -> 0: the data cannot set T
        return {"temperature": 1.0, "method": "none", "reason": "every validation clip is right; nothing to fit",
                "nll_before": before, "nll_after": before, "n": int(len(labels))}
    res = minimize_scalar(lambda s: nll(logits, labels, float(np.exp(s))), bounds=_LOG_T_BOUNDS, method="bounded",
                          options={"xatol": 1e-4})
    temperature = float(np.exp(res.x))
    after = nll(logits, labels, temperature)
    if not np.isfinite(after) or after > before:
        temperature, after = 1.0, before
    return {"temperature": round(temperature, 6), "method": "temperature", "nll_before": before,
            "nll_after": after, "n": int(len(labels))}


def _check_bins(n_bins: int) -> None:
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ParameterError(f"The 'n_bins' parameter must be an integer >= 1. Got {n_bins!r} instead.")


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, *, n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Reliability-diagram data: confidence vs accuracy in equal-width confidence bins.

    Parameters
    ----------
    y_true
        int ``(n,)`` class indices.
    proba
        float ``(n, n_classes)`` probabilities; confidence is the top probability, the answer
        its class.
    n_bins
        Equal-width bins over ``[0, 1]`` (bin ``b`` holds ``b/n_bins < conf <= (b+1)/n_bins``,
        the first also ``conf = 0``).

    Returns
    -------
    dict
        ``edges`` (``n_bins + 1``), ``count``, ``confidence`` (mean top probability) and
        ``accuracy`` per bin (``None`` for an empty bin), ``ece`` and ``n_bins``.
    """
    _check_bins(n_bins)
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if len(y_true) == 0:
        return {"edges": edges.tolist(), "count": [0] * n_bins, "confidence": [None] * n_bins,
                "accuracy": [None] * n_bins, "ece": 0.0, "n_bins": n_bins}
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    idx = np.searchsorted(edges[1:-1], conf, side="left")  # a value on an edge goes to the lower bin
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    ece = float(np.abs(acc_sum - conf_sum).sum() / len(y_true))
    mean_conf = [float(c / n) if n else None for c, n in zip(conf_sum, count)]
    mean_acc = [float(a / n) if n else None for a, n in zip(acc_sum, count)]
    return {"edges": edges.tolist(), "count": count.astype(int).tolist(), "confidence": mean_conf,
            "accuracy": mean_acc, "ece": ece, "n_bins": n_bins}


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, *, n_bins: int = DEFAULT_BINS) -> float:
    """ECE: ``sum_b (n_b / n) * |accuracy_b - confidence_b|`` over equal-width confidence bins.

    0 means the top probability is, on average per bin, exactly the chance of being right.
    """
    return float(reliability_bins(y_true, proba, n_bins=n_bins)["ece"])
