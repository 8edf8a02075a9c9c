"""Classification metrics from true labels and class probabilities (pure numpy + scikit-learn)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["classification_metrics", "log_loss_nats", "mean_by_group", "softmax", "log_softmax"]


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
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    if len(proba):
        proba = proba / proba.sum(axis=1, keepdims=True)
    k = len(classes)
    labels = list(range(k))
    y_pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=int)
    prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = [i for i in labels if support[i] > 0]
    if majority_class is None:
        majority_class = int(np.bincount(y_true, minlength=k).argmax()) if len(y_true) else 0
    base_pred = np.full_like(y_true, majority_class)

    def macro(values: np.ndarray) -> float:  # over the classes present in y_true: an absent class has no recall
        return float(np.mean(values[present])) if present else 0.0

    def macro_f1(pred: np.ndarray) -> float:
        return float(f1_score(y_true, pred, labels=present, average="macro", zero_division=0)) if present else 0.0

    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "balanced_accuracy": macro(rec),  # scikit-learn's definition, without its warning
        "macro_f1": macro_f1(y_pred),
        "macro_precision": macro(prec),
        "macro_recall": macro(rec),
        "log_loss": log_loss_nats(y_true, proba, k) if len(y_true) else None,
        "baseline_class": classes[majority_class] if classes else None,
        "baseline_accuracy": float(accuracy_score(y_true, base_pred)) if len(y_true) else 0.0,
        "baseline_macro_f1": macro_f1(base_pred),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": _per_class(y_true, proba, classes, (prec, rec, f1, support)),
    }


def _per_class(y_true: np.ndarray, proba: np.ndarray, classes: list[str], prfs: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """Precision, recall, F1, support, one-vs-rest ROC AUC and AP of each class (None where
    ``y_true`` lacks the class or holds nothing else)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    prec, rec, f1, support = prfs
    out = {}
    for i, name in enumerate(classes):
        pos = (y_true == i).astype(int)
        has_both = 0 < pos.sum() < len(pos)
        out[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "roc_auc": float(roc_auc_score(pos, proba[:, i])) if has_both else None,
            "average_precision": float(average_precision_score(pos, proba[:, i])) if has_both else None,
        }
    return out


def log_loss_nats(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    """Mean negative log-likelihood (nats per item) of labels int ``(n,)`` under probabilities
    ``(n, n_classes)`` (rows renormalised, clipped at 1e-12): scikit-learn's ``log_loss``, ``n >= 1``."""
    from sklearn.metrics import log_loss

    p = np.asarray(proba, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    return float(log_loss(np.asarray(y_true, dtype=int), np.clip(p, 1e-12, 1), labels=list(range(n_classes))))


def mean_by_group(groups: list[str], values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Average rows of ``values`` ``(n, k)`` that share a group; groups in first-seen order."""
    order: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        order.setdefault(g, []).append(i)
    keys = list(order)
    return keys, np.stack([values[idx].mean(axis=0) for idx in order.values()]) if keys else np.zeros((0, values.shape[1]))


def _shifted(logits: np.ndarray, temperature: float) -> np.ndarray:
    """float64 ``(n, k)`` logits divided by ``temperature``, each row's maximum subtracted (0)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return z - z.max(axis=1, keepdims=True)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax float32 ``(n, k)`` of ``(n, k)`` logits divided by ``temperature``."""
    e = np.exp(_shifted(logits, temperature))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax float64 ``(n, k)`` (natural log) of ``(n, k)`` logits divided by ``temperature``."""
    z = _shifted(logits, temperature)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
