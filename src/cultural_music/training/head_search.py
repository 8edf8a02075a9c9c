"""Choose a convex head's regularisation and class weighting by group cross-validation.

In the spirit of scikit-learn's ``LogisticRegressionCV``, but group-aware and scored the way
users are answered: for every ``C`` of a small grid (6 values over 5 decades) and every class
weighting (none, balanced), the head is fitted on k-1 folds of the *training side* (folds by
group: ``StratifiedGroupKFold``, so a performer, tonic or speaker is never on both sides) and
scored on the held-out fold by recording-level macro-F1, the recording probabilities made by
:func:`~cultural_music.metrics.recording.recordings_from_clips` (clips weighted by real audio).
The test split never enters.  Augmented variants of the training side's recordings
(:class:`ExtraRows`) are extra fit rows of their recording's group: a fold fits them only where
it fits their group and never holds them out, so a variant never answers for its own source.  Ties of macro-F1 (common on small sets) go to the lower
out-of-fold log loss, then to the smaller C, then to no weighting.  The out-of-fold logits of the chosen setting are honest held-out answers for every
training clip: calibration and the "uncertain" threshold are fitted on them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cultural_music.training.convex_head import HeadFit, fit_logreg

__all__ = ["C_GRID", "WEIGHTINGS", "ExtraRows", "HeadChoice", "choose_head", "group_folds"]

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  #: scikit-learn's C (inverse L2 strength on the summed loss)
WEIGHTINGS = ("none", "balanced")
MAX_FOLDS = 5


@dataclass
class HeadChoice:
    """The chosen ``C`` and ``class_weighting``, every setting's cross-validated score
    (``table``: dicts with ``C``, ``class_weighting``, ``macro_f1``), the number of folds, and the
    out-of-fold logits ``(n_clips, k)`` of the chosen setting (``None`` when nothing was searched)."""

    C: float
    class_weighting: str
    n_folds: int
    table: list[dict[str, Any]] = field(default_factory=list)
    oof_logits: np.ndarray | None = None
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        """model.json's ``head_search``."""
        return {"C": self.C, "class_weighting": self.class_weighting, "folds": self.n_folds,
                "scored_by": "recording macro-F1, group cross-validation on the training side", "grid": self.table,
                **({"note": self.reason} if self.reason else {})}


def group_folds(y: np.ndarray, groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to :data:`MAX_FOLDS` ``(fit, held_out)`` clip-index pairs, whole groups held out,
    class proportions kept as far as groups allow; ``[]`` if there are fewer than 2 groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    k = min(MAX_FOLDS, n_groups, int(np.bincount(y).max()) if len(y) else 0)  # scikit-learn: k <= the largest class
    if k < 2:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members than n_splits"
        folds = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))
    return [(a, b) for a, b in folds if len(np.unique(y[a])) >= 2 and len(b)]


@dataclass(frozen=True)
class ExtraRows:
    """Rows that only ever train: pooled features ``z`` ``(m, d)``, labels ``y`` and groups
    ``groups`` ``(m,)`` of augmented variants (a variant has its source recording's group).  In a
    fold they join the fit side when their group is fitted there, and are never held out or scored."""

    z: np.ndarray
    y: np.ndarray
    groups: np.ndarray

    @classmethod
    def none(cls, d: int) -> "ExtraRows":
        """No extra rows, for features of size ``d``."""
        return cls(np.zeros((0, d)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object))

    def with_rows(self, z: np.ndarray, y: np.ndarray, groups: np.ndarray, fit_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip rows ``fit_idx`` of ``z`` / ``y`` plus the extra rows of the groups among them."""
        keep = np.isin(self.groups, np.unique(groups[fit_idx]))
        return np.concatenate([z[fit_idx], self.z[keep]]), np.concatenate([y[fit_idx], self.y[keep]])


def choose_head(z: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, *, eps: float, seed: int,
                score, C_values: tuple[float, ...] = C_GRID, weightings: tuple[str, ...] = WEIGHTINGS,
                default: tuple[float, str], folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
                extra: ExtraRows | None = None) -> HeadChoice:
    """Search ``C_values`` x ``weightings`` on pooled features ``z`` ``(n, d)``, labels ``y`` and
    groups ``groups`` ``(n,)`` (one per clip).  ``score(oof_logits) -> float`` scores out-of-fold
    logits ``(n, k)`` (recording macro-F1, see the module docstring).  With one setting, or too
    few groups to fold, ``default`` is returned unsearched.  ``folds`` (``(fit, held)`` clip-index
    pairs, e.g. the model choice's, shared by several candidates) replaces :func:`group_folds`;
    then even one setting is cross-validated (its out-of-fold logits are wanted).  ``extra``:
    augmented variants, added to the fit side of every fold that fits their group (folds are made
    on the clips ``z`` alone; only clips are held out and scored)."""
    extra = ExtraRows.none(z.shape[1]) if extra is None else extra
    given = folds is not None
    folds = group_folds(y, groups, seed) if folds is None else folds
    if not folds or (len(C_values) * len(weightings) < 2 and not given):
        why = "" if folds else "too few groups to cross-validate: the configured settings are used"
        return HeadChoice(default[0], default[1], len(folds), reason=why)
    best: tuple[float, float, int] | None = None
    table, chosen = [], None
    for w_rank, weighting in enumerate(weightings):
        oofs = _oof_path(z, y, groups, extra, n_classes, folds, C_values, weighting, eps)
        for C, oof in zip(C_values, oofs):
            f1, nll = round(float(score(oof)), 6), round(_log_loss(oof, y), 6)
            table.append({"C": C, "class_weighting": weighting, "macro_f1": f1, "log_loss": nll})
            key = (f1, -nll, -C, -w_rank)  # ties: lower log loss, then smaller C, then no weighting
            if best is None or key > best:
                best, chosen = key, (C, weighting, oof)
    assert chosen is not None
    return HeadChoice(chosen[0], chosen[1], len(folds), table, chosen[2])


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean clip log loss (nats) of out-of-fold logits ``(n, k)``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def _oof_path(z: np.ndarray, y: np.ndarray, groups: np.ndarray, extra: ExtraRows, n_classes: int,
              folds: list[tuple[np.ndarray, np.ndarray]], C_values: tuple[float, ...], weighting: str, eps: float) -> list[np.ndarray]:
    """Out-of-fold logits ``(n, k)`` for every C, the fits of one fold (its clips plus the extra
    rows of its groups) warm-started along the C path."""
    oofs = [np.zeros((len(y), n_classes)) for _ in C_values]
    for fit_idx, held in folds:
        zf, yf = extra.with_rows(z, y, groups, fit_idx)
        warm: HeadFit | None = None
        for i in np.argsort(C_values):
            warm = fit_logreg(zf, yf, n_classes, C=C_values[i], class_weighting=weighting, eps=eps, warm=warm)
            oofs[i][held] = warm.logits(z[held], eps)
    return oofs
