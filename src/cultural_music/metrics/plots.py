"""PNG plots: training curves, confusion matrix, ROC and precision-recall per class, reliability diagram.

matplotlib is imported inside each function (Agg backend), never at package import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cultural_music.atomic import atomic_path, ensure_dir

__all__ = ["plot_history", "plot_confusion", "plot_roc", "plot_pr", "plot_reliability"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    ensure_dir(path.parent)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def plot_history(history: list[dict[str, float]], out_dir: str | Path, *, best_epoch: int | None = None) -> list[Path]:
    """``accuracy.png`` and ``loss.png``: train vs validation per epoch.

    A full-batch L-BFGS fit (one record with ``"fit"``) has no epochs: each figure then shows
    its single result (training and validation bars) and says so in the title.
    """
    if history and history[0].get("fit"):
        return _plot_fit(history[0], Path(out_dir))
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    paths = []
    for key, title in (("accuracy", "Accuracy"), ("loss", "Loss")):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [h[f"train_{key}"] for h in history], marker="o", ms=3, label=f"train {key}")
        if any(h.get(f"val_{key}") is not None for h in history):  # a refit on every file has no validation
            ax.plot(epochs, [np.nan if h[f"val_{key}"] is None else h[f"val_{key}"] for h in history], marker="o", ms=3,
                    label=f"validation {key}")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(f"{title}: training vs validation")
        if key == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(_save(fig, Path(out_dir) / f"{key}.png"))
    return paths


def _plot_fit(fit: dict[str, float], out_dir: Path) -> list[Path]:
    """One result of a fitted head: training and validation accuracy / loss as two bars."""
    plt = _plt()
    paths = []
    for key, title in (("accuracy", "Accuracy"), ("loss", "Loss")):
        fig, ax = plt.subplots(figsize=(6, 4))
        names, values = ["training"], [fit[f"train_{key}"]]
        if fit.get(f"val_{key}") is not None:  # a refit on every file has no held-out part
            names.append(fit.get("held_out_name", "validation"))
            values.append(fit[f"val_{key}"])
        bars = ax.bar(names, values, color=["C0", "C1"][: len(values)])
        ax.bar_label(bars, fmt="%.3f")
        ax.set_ylabel(key)
        ax.set_title(f"{title} of the fit (full-batch L-BFGS, {int(fit.get('iterations', 0))} iterations):\n"
                     "one result, no training curve", fontsize=10)
        if key == "accuracy":
            ax.set_ylim(0, 1.08)
        ax.grid(alpha=0.3, axis="y")
        paths.append(_save(fig, out_dir / f"{key}.png"))
    return paths


def plot_confusion(cm: np.ndarray, classes: list[str], path: str | Path, *, normalize: bool = False, title: str = "Confusion matrix") -> Path:
    """Confusion matrix (rows = true class, columns = predicted), counts or row-normalised."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    k = len(classes)
    size = max(4.5, 0.6 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(shown.max(), 1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    thresh = shown.max() / 2 if shown.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if shown[i, j] > thresh else "black")
    return _save(fig, Path(path))


def _per_class_curves(y_true: np.ndarray, proba: np.ndarray, classes: list[str], path: Path, kind: str, title: str) -> Path:
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for i, name in enumerate(classes):
        pos = (y_true == i).astype(int)
        if pos.sum() == 0 or pos.sum() == len(pos):
            ax.plot([], [], label=f"{name} (n/a: {'no' if pos.sum() == 0 else 'only'} positives)")
            continue
        if kind == "roc":
            fpr, tpr, _ = roc_curve(pos, proba[:, i])
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.2f})")
        else:
            prec, rec, _ = precision_recall_curve(pos, proba[:, i])
            ax.step(rec, prec, where="post", label=f"{name} (AP {average_precision_score(pos, proba[:, i]):.2f})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
    return _save(fig, path)


def plot_roc(y_true: np.ndarray, proba: np.ndarray, classes: list[str], path: str | Path, *, title: str = "ROC per class (one vs rest)") -> Path:
    """One-vs-rest ROC curve per class with its AUC."""
    return _per_class_curves(np.asarray(y_true), np.asarray(proba), classes, Path(path), "roc", title)


def plot_pr(y_true: np.ndarray, proba: np.ndarray, classes: list[str], path: str | Path, *, title: str = "Precision-recall per class") -> Path:
    """Precision-recall curve per class with its average precision (AP)."""
    return _per_class_curves(np.asarray(y_true), np.asarray(proba), classes, Path(path), "pr", title)


def plot_reliability(panels: list[tuple[str, dict[str, Any], dict[str, Any]]], path: str | Path, *, temperature: float = 1.0) -> Path:
    """Reliability diagram(s): mean confidence vs accuracy per confidence bin, before and after scaling.

    Parameters
    ----------
    panels
        ``(title, bins_before, bins_after)`` per panel, bins from
        :func:`~cultural_music.metrics.calibration.reliability_bins` (before: temperature 1).
    temperature
        The temperature of the "after" curves (shown in the legend).

    Each panel has the diagonal (perfect calibration), the two curves (marker area grows with
    the bin's count, ECE in the legend) and, below, the histogram of calibrated confidences.
    """
    plt = _plt()
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 6.2), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for col, (title, before, after) in enumerate(panels):
        ax, hist = axes[0, col], axes[1, col]
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
        for bins, name, style in ((before, "T = 1 (uncalibrated)", dict(color="tab:orange", ls=":", marker="s")),
                                  (after, f"T = {temperature:.2f} (calibrated)", dict(color="tab:blue", ls="-", marker="o"))):
            pts = [(c, a, n) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"]) if n]
            if not pts:
                continue
            conf, acc, cnt = (np.array(v, dtype=float) for v in zip(*pts))
            ax.plot(conf, acc, lw=1.5, label=f"{name}, ECE {bins['ece']:.3f}", color=style["color"], ls=style["ls"])
            ax.scatter(conf, acc, s=12 + 120 * cnt / cnt.max(), color=style["color"], marker=style["marker"], zorder=3)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.05)
        ax.set_ylabel("accuracy in bin")
        ax.set_title(f"Reliability: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        edges = np.asarray(after["edges"])
        hist.bar(edges[:-1], after["count"], width=np.diff(edges), align="edge", color="tab:blue", alpha=0.6, edgecolor="white")
        hist.set_xlabel("confidence (top probability)")
        hist.set_ylabel("items")
        hist.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))
