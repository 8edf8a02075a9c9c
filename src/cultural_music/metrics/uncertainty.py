"""The "uncertain" answer: a confidence threshold chosen on the validation split.

Method ("selective-accuracy"): sort the validation recordings by confidence (top calibrated
probability) and set aside the least confident ones, one at a time, until the answers kept
are right at least ``target_accuracy`` of the time.  The threshold is placed half-way between
the last recording set aside and the first one kept.  Two guards keep it sensible on small
validation sets:

* at most ``max_uncertain_fraction`` of the validation recordings may be set aside; if the
  target cannot be reached within that, the cut with the best accuracy of kept answers is used;
* a model already at or above the target on every recording gets threshold 0 ("never
  uncertain").

At prediction time an answer whose confidence is *below* the threshold is reported as
:data:`UNCERTAIN` with its top candidates; a threshold of 0 therefore never fires.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cultural_music.errors import ParameterError, check_in_range

__all__ = ["UNCERTAIN", "fit_threshold", "is_uncertain", "check_threshold",
           "DEFAULT_TARGET_ACCURACY", "DEFAULT_MAX_UNCERTAIN_FRACTION"]

UNCERTAIN = "uncertain"
DEFAULT_TARGET_ACCURACY = 0.9
DEFAULT_MAX_UNCERTAIN_FRACTION = 0.5


def check_threshold(threshold: float, owner: str = "predict") -> float:
    """Return ``threshold`` as float after checking it lies in [0, 1]."""
    check_in_range("threshold", owner, float(threshold), 0.0, 1.0)
    return float(threshold)


def is_uncertain(confidence: float, threshold: float) -> bool:
    """True when ``confidence`` (0..1) is strictly below ``threshold`` (0 never fires)."""
    return bool(confidence < threshold)


def fit_threshold(
    val_proba: np.ndarray,
    val_labels: np.ndarray,
    *,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    max_uncertain_fraction: float = DEFAULT_MAX_UNCERTAIN_FRACTION,
) -> dict[str, Any]:
    """Threshold entry stored under ``"uncertain"`` in ``model.json``.

    Parameters
    ----------
    val_proba
        Calibrated validation recording probabilities, float ``(n, n_classes)``.
    val_labels
        True class indices ``(n,)``.
    target_accuracy
        Accuracy (0..1) the kept (confident) answers should reach on validation.
    max_uncertain_fraction
        Largest fraction (0..1) of validation recordings the threshold may call uncertain.

    Returns
    -------
    dict
        ``threshold`` (0..1), ``method``, the settings, ``n_val``, ``val_accuracy`` (all
        answers), ``kept_accuracy`` and ``coverage`` (fraction of validation answers kept).
    """
    check_in_range("target_accuracy", "fit_threshold", target_accuracy, 0.0, 1.0)
    check_in_range("max_uncertain_fraction", "fit_threshold", max_uncertain_fraction, 0.0, 1.0)
    proba = np.asarray(val_proba, dtype=np.float64)
    labels = np.asarray(val_labels, dtype=int)
    if proba.ndim != 2 or len(proba) != len(labels):
        raise ParameterError(f"The 'val_proba' parameter of fit_threshold must be (n, n_classes) with n = "
                             f"len(val_labels) = {len(labels)}. Got shape {proba.shape} instead.")
    entry: dict[str, Any] = {"threshold": 0.0, "method": "selective-accuracy", "target_accuracy": target_accuracy,
                             "max_uncertain_fraction": max_uncertain_fraction, "n_val": int(len(labels))}
    if len(labels) == 0:
        return {**entry, "val_accuracy": None, "kept_accuracy": None, "coverage": 1.0,
                "note": "no validation recordings: never uncertain"}
    conf = proba.max(axis=1)
    order = np.argsort(conf, kind="stable")
    conf = conf[order]
    correct = (proba.argmax(axis=1) == labels)[order].astype(float)
    n = len(conf)
    # kept accuracy when the r least confident answers are set aside, r = 0..n-1
    kept = np.cumsum(correct[::-1])[::-1] / (n - np.arange(n))
    r_max = min(int(np.floor(max_uncertain_fraction * n)), n - 1)
    # a cut must separate two different confidences
    allowed = [r for r in range(r_max + 1) if r == 0 or conf[r - 1] < conf[r]]
    reaching = [r for r in allowed if kept[r] >= target_accuracy]
    r = reaching[0] if reaching else max(allowed, key=lambda i: (kept[i], -i))
    threshold = 0.0 if r == 0 else float((conf[r - 1] + conf[r]) / 2)
    return {**entry, "threshold": threshold, "val_accuracy": float(correct.mean()),
            "kept_accuracy": float(kept[r]), "coverage": float((n - r) / n)}
