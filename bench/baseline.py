"""The ``sklearn-logreg`` baseline of ``bench/accuracy.py`` and its unbalanced protocol (issue 16).

Baseline: the cached musicnn embeddings the default ``musicnn`` head sees (the clean cache
entry of a file, float32 ``(n_clips, 1506, patches)``), pooled per recording: mean and max over
every 3 s patch of every clip of the file, concatenated -> ``(3012,)``.  A scikit-learn
``StandardScaler`` + ``LogisticRegression`` (lbfgs, multinomial) on those vectors; ``C`` and
``class_weight`` (none or balanced) are chosen by the macro-F1 of out-of-fold predictions of a
``GroupKFold`` over the groups of the training side (train + val of the outer fold; the test fold
is never seen), then the winner is refitted on the whole training side.

Unbalanced protocol: :func:`subsample` keeps a seeded subset of every class, class sizes taken
from a ladder (5, 10, 20, 40, ... recordings), each class's kept recordings spread evenly over the
outer folds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["C_GRID", "WEIGHTS", "Choice", "pool_recording", "choose", "fit", "predict_proba", "subsample", "ladder"]

#: inverse L2 strengths searched (6 values, 1e-3 .. 1e2)
C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 6))
#: class weightings searched
WEIGHTS: tuple[str | None, ...] = (None, "balanced")


def pool_recording(emb: np.ndarray) -> np.ndarray:
    """``(n_clips, dim, patches)`` embeddings of one file -> ``(2 * dim,)`` float32: mean, then
    max, over all ``n_clips * patches`` patch embeddings."""
    flat = np.moveaxis(np.asarray(emb, dtype=np.float32), 1, -1).reshape(-1, emb.shape[1])
    return np.concatenate([flat.mean(axis=0), flat.max(axis=0)]).astype(np.float32)


def _model(c: float, weight: str | None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=weight, max_iter=300, tol=1e-4))


def predict_proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n, n_classes)`` probabilities; a class the model never saw in training gets 0."""
    out = np.zeros((len(x), n_classes), dtype=np.float64)
    out[:, model.classes_] = model.predict_proba(x)
    return out


def fit(x: np.ndarray, y: np.ndarray, c: float, weight: str | None):
    """StandardScaler + LogisticRegression fitted on ``x`` ``(n, d)``, int labels ``y`` ``(n,)``."""
    return _model(c, weight).fit(x, y)


@dataclass(frozen=True)
class Choice:
    """The winning setting and every setting's inner out-of-fold macro-F1 (``(C, weight) -> F1``)."""

    c: float
    weight: str | None
    scores: dict[tuple[float, str | None], float]
    n_splits: int


def choose(x: np.ndarray, y: np.ndarray, groups: Sequence[str], n_classes: int, *, n_splits: int = 5,
           grid: Iterable[float] = C_GRID, weights: Iterable[str | None] = WEIGHTS) -> Choice:
    """Pick ``C`` and ``class_weight`` by a group-aware inner CV on the training side only.

    ``x`` ``(n, d)``, ``y`` ``(n,)`` int in ``[0, n_classes)``, ``groups`` ``(n,)``: a
    ``GroupKFold`` with ``min(n_splits, n_groups)`` splits; each setting's score is the macro-F1
    (classes present in ``y``) of its pooled out-of-fold predictions.  Ties go to the smaller
    ``C`` (stronger L2), then to no weighting.
    """
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    k = min(n_splits, len(set(groups.tolist())))
    splits = list(GroupKFold(n_splits=k).split(x, y, groups))
    present = sorted(set(y.tolist()))
    scores: dict[tuple[float, str | None], float] = {}
    for weight in weights:
        for c in grid:
            oof = np.zeros(len(y), dtype=int)
            for tr, va in splits:
                oof[va] = predict_proba(fit(x[tr], y[tr], c, weight), x[va], n_classes).argmax(axis=1)
            scores[(c, weight)] = float(f1_score(y, oof, labels=present, average="macro", zero_division=0))
    best = max(scores.items(), key=lambda kv: (round(kv[1], 12), -kv[0][0], kv[0][1] is None))[0]
    return Choice(best[0], best[1], scores, k)


def ladder(n_classes: int, *, start: int = 5, sizes: Sequence[int] | None = None) -> list[int]:
    """Class sizes: ``sizes`` (the last one repeated for further classes), or ``start * 2**i``."""
    if sizes:
        return [int(sizes[min(i, len(sizes) - 1)]) for i in range(n_classes)]
    return [start * 2**i for i in range(n_classes)]


def subsample(items: Sequence[tuple[str, str, str]], sizes: Sequence[int] | None = None, *, seed: int = 0
              ) -> tuple[set[str], dict[str, int]]:
    """Seeded unbalanced subset of ``(rel_path, label, fold)`` items.

    The classes (sorted, then a seeded permutation) get the sizes of :func:`ladder`, capped at the
    class's recordings; within a class the kept recordings are dealt round-robin over its folds
    (folds and recordings in seeded order), so every fold keeps about ``size / n_folds`` of it.
    Returns the kept ``rel_path`` set and ``label -> kept count``.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rel, label, fold in items:
        by_class[label][fold].append(rel)
    labels = sorted(by_class)
    order = [labels[i] for i in rng.permutation(len(labels))]
    kept: set[str] = set()
    counts: dict[str, int] = {}
    for label, size in zip(order, ladder(len(order), sizes=sizes)):
        queues = [[v[i] for i in rng.permutation(len(v))] for _, v in sorted(by_class[label].items())]
        queues = [queues[i] for i in rng.permutation(len(queues))]
        take: list[str] = []
        while len(take) < size and any(queues):
            for q in queues:
                if q and len(take) < size:
                    take.append(q.pop())
        kept.update(take)
        counts[label] = len(take)
    return kept, counts
