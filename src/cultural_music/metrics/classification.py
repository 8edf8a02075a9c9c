"""Classification metrics from true labels and class probabilities (pure numpy + scikit-learn)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["classification_metrics", "mean_by_group", "softmax"]


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str], *, majority_class: int | None = None) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class P/R/F1, confusion matrix, AUC and AP.

    Parameters
    ----------
    y_true
        int ``(n,)`` class indices.
    proba
        float ``(n, n_classes)`` probabilities (rows sum to 1).
    classes
        Class names, in index order.
    majority_class
        Class index of the baseline that always answers the same (default: the most common
        class of ``y_true``); its accuracy and macro-F1 are reported as ``baseline_*``.

    Returns
    -------
    dict
        JSON-able; a class never predicted gets precision 0 (no warning), a class absent from
        ``y_true`` gets ``None`` for AUC/AP.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    if len(proba):
        proba = proba / proba.sum(axis=1, keepdims=True)
    k = len(classes)
    labels = list(range(k))
    y_pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=int)
    prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = [i for i in labels if support[i] > 0]
    per_class = {}
    for i, name in enumerate(classes):
        pos = (y_true == i).astype(int)
        has_both = 0 < pos.sum() < len(pos)
        per_class[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "roc_auc": float(roc_auc_score(pos, proba[:, i])) if has_both else None,
            "average_precision": float(average_precision_score(pos, proba[:, i])) if has_both else None,
        }
    if majority_class is None:
        majority_class = int(np.bincount(y_true, minlength=k).argmax()) if len(y_true) else 0
    base_pred = np.full_like(y_true, majority_class)
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        # mean recall over the classes present in y_true (scikit-learn's definition, without its warning)
        "balanced_accuracy": float(np.mean(rec[present])) if present else 0.0,
        # macro over the classes present in y_true: a class absent from the test set has no recall
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if present else 0.0,
        "macro_precision": float(np.mean(prec[present])) if present else 0.0,
        "macro_recall": float(np.mean(rec[present])) if present else 0.0,
        "log_loss": float(log_loss(y_true, np.clip(proba, 1e-12, 1), labels=labels)) if len(y_true) else None,
        "baseline_class": classes[majority_class] if classes else None,
        "baseline_accuracy": float(accuracy_score(y_true, base_pred)) if len(y_true) else 0.0,
        "baseline_macro_f1": float(f1_score(y_true, base_pred, labels=present, average="macro", zero_division=0)) if present else 0.0,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": per_class,
    }
    return out


def mean_by_group(groups: list[str], values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Average rows of ``values`` ``(n, k)`` that share a group; groups in first-seen order."""
    order: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        order.setdefault(g, []).append(i)
    keys = list(order)
    return keys, np.stack([values[idx].mean(axis=0) for idx in order.values()]) if keys else np.zeros((0, values.shape[1]))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``(n, k)`` logits divided by ``temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
