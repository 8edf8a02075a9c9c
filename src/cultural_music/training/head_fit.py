"""Fit a convex head (``musicnn``) on the training side: choose its settings, fit, keep the
held-out answers that calibrate it.

With ``train.tune`` set, the train and validation splits together are the training side: the
head's C and class weighting are chosen there by group cross-validation
(:mod:`.head_search`), the head is fitted on all of it with the chosen settings, and the
out-of-fold logits of that setting (every training-side clip answered by a fit that did not see
its group) calibrate it.  The cached augmented variants of training-side files (``--augment-variants N``:
pitch / tempo copies, :data:`~cultural_music.models.musicnn_head.EMBEDDING_AUGMENT`) are extra
fit rows of their recording (:class:`~.head_search.ExtraRows`): in every inner fold that fits
their group and in the final fit, never held out, never calibrating.  Without ``tune`` (or with too few groups to fold) the head is fitted on
the train split with the configured settings and calibrated on the validation split, as an
epoch-trained model is.  The test split is never read here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from cultural_music.config import Config
from cultural_music.data.dataset import Recording
from cultural_music.features.extract import ExtractResult
from cultural_music.metrics.classification import softmax
from cultural_music.training.calibrate import recording_level
from cultural_music.training.clip_dataset import ClipDataset, ClipItem, VariantDataset, build_items
from cultural_music.training.convex_head import convex_parts, fit_logreg, pooled_features, write_head
from cultural_music.training.head_search import C_GRID, WEIGHTINGS, ExtraRows, HeadChoice, choose_head

__all__ = ["ConvexFit", "fit_convex_head", "variant_rows"]


@dataclass
class ConvexFit:
    """What :func:`fit_convex_head` did: the config with the chosen settings (``tune`` emptied),
    the history record, the held-out logits ``(n, k)`` / labels / recording of each clip that
    calibrate the head, the search (or ``None``), and the clips fitted."""

    cfg: Config
    history: list[dict[str, Any]]
    held_logits: np.ndarray
    held_labels: np.ndarray
    held_rels: list[str]
    search: HeadChoice | None
    n_fit_clips: int
    held_out: str


def _macro_f1(rels: list[str], labels: np.ndarray, extracted: ExtractResult, cfg: Config, k: int) -> Callable[[np.ndarray], float]:
    from sklearn.metrics import f1_score

    def score(logits: np.ndarray) -> float:
        proba, y = recording_level(rels, logits, labels, extracted, cfg)
        return float(f1_score(y, proba.argmax(1), average="macro", labels=np.unique(y), zero_division=0))

    return score


def fit_convex_head(model: nn.Module, recordings: list[Recording], extracted: ExtractResult, classes: list[str], cfg: Config,
                    log: Callable[[str], Any]) -> ConvexFit:
    """Fit ``model``'s convex head in place (see the module docstring) and return what was done."""
    t0 = time.perf_counter()
    eps = convex_parts(model).eps
    tc, k = cfg.train, len(classes)
    side = [r for r in recordings if r.split in ("train", "val")] if tc.tune else []
    search = None
    if side:
        items = build_items(side, extracted, classes, "train") + build_items(side, extracted, classes, "val")
        ds = ClipDataset(items)
        z, y, rels = pooled_features(model, ds), ds.labels, [it.rel_path for it in ds.items]
        group = {r.rel_path: r.group for r in side}
        extra = variant_rows(model, items, group)
        search = choose_head(z, y, np.array([group[r] for r in rels]), k, eps=eps, seed=tc.seed,
                             score=_macro_f1(rels, y, extracted, cfg, k),
                             C_values=C_GRID if "logreg_c" in tc.tune else (tc.logreg_c,),
                             weightings=WEIGHTINGS if "class_weighting" in tc.tune else (tc.class_weighting,),
                             default=(tc.logreg_c, tc.class_weighting), extra=extra)
    chosen = cfg if search is None else cfg.replace(train={"logreg_c": search.C, "class_weighting": search.class_weighting})
    chosen = chosen.replace(train={"tune": ()})
    if search is None or search.oof_logits is None:
        return _fit_train_calibrate_val(model, recordings, extracted, classes, chosen, search, eps, t0, log)
    fit = fit_logreg(np.concatenate([z, extra.z]), np.concatenate([y, extra.y]), k, C=search.C,
                     class_weighting=search.class_weighting, eps=eps)
    write_head(model, fit)
    train_logits = fit.logits(z, eps)
    record = _record(fit.iterations, train_logits, y, search.oof_logits, y, time.perf_counter() - t0, "cross-validated")
    best = max(row["macro_f1"] for row in search.table)
    log(f"head: C={search.C:g}, class weighting {search.class_weighting}, chosen by {search.n_folds}-fold group "
        f"cross-validation on the train + val splits ({len(side)} recordings, recording macro-F1 {best:.3f}); "
        f"fitted on all {len(y)} of their clips{_plus(extra)} by L-BFGS ({fit.iterations} iterations)")
    return ConvexFit(chosen, [record], search.oof_logits, y, rels, search, len(y) + len(extra.y),
                     f"out-of-fold answers of the {search.n_folds}-fold group cross-validation")


def variant_rows(model: nn.Module, items: list[ClipItem], group: dict[str, str]) -> ExtraRows:
    """Pooled features of the cached augmented variants of ``items`` (``cfg.augment.n_variants``
    per clip of a training file), labelled and grouped as their source recording (``group``:
    ``rel_path -> group``): extra rows of the fit, never held out."""
    var = VariantDataset(items)
    return ExtraRows(pooled_features(model, var), var.labels, np.array([group[it.rel_path] for it in var.items], dtype=object))


def _plus(extra: ExtraRows) -> str:
    return f" + {len(extra.y)} augmented variants" if len(extra.y) else ""


def _fit_train_calibrate_val(model: nn.Module, recordings: list[Recording], extracted: ExtractResult, classes: list[str],
                             cfg: Config, search: HeadChoice | None, eps: float, t0: float, log: Callable[[str], Any]) -> ConvexFit:
    """Fit on the train split with ``cfg``'s settings; the validation split calibrates."""
    tc, k = cfg.train, len(classes)
    train_ds = ClipDataset(build_items(recordings, extracted, classes, "train"))
    val_ds = ClipDataset(build_items(recordings, extracted, classes, "val"))
    z, y = pooled_features(model, train_ds), train_ds.labels
    extra = variant_rows(model, train_ds.items, {it.rel_path: it.rel_path for it in train_ds.items})
    fit = fit_logreg(np.concatenate([z, extra.z]), np.concatenate([y, extra.y]), k, C=tc.logreg_c,
                     class_weighting=tc.class_weighting, eps=eps)
    write_head(model, fit)
    zv, yv = pooled_features(model, val_ds), val_ds.labels
    val_logits = fit.logits(zv, eps)
    record = _record(fit.iterations, fit.logits(z, eps), y, val_logits, yv, time.perf_counter() - t0, "validation")
    why = f" ({search.reason})" if search is not None and search.reason else ""
    val = f", validation accuracy {record['val_accuracy']:.3f}" if len(yv) else ""
    log(f"head: C={tc.logreg_c:g}, class weighting {tc.class_weighting}{why}; fitted on {len(y)} training clips{_plus(extra)} "
        f"by L-BFGS ({fit.iterations} iterations){val}")
    return ConvexFit(cfg, [record], val_logits, yv, [it.rel_path for it in val_ds.items], search, len(y) + len(extra.y),
                     "the validation split")


def _record(iterations: int, fit_logits: np.ndarray, fit_y: np.ndarray, held_logits: np.ndarray, held_y: np.ndarray,
            seconds: float, held_name: str | None = None) -> dict[str, Any]:
    """The history record of a full-batch fit (the keys of ``training.loop.fit_head``'s)."""
    from cultural_music.metrics.classification import log_loss_nats

    def loss(logits: np.ndarray, y: np.ndarray) -> float:
        return float(log_loss_nats(y, softmax(logits), n_classes=logits.shape[1])) if len(y) else None

    def acc(logits: np.ndarray, y: np.ndarray) -> float:
        return float((logits.argmax(1) == y).mean()) if len(y) else None

    return {"fit": "lbfgs", "epoch": 1, "held_out_name": "held out" if held_name is None else held_name, "steps": 1, "steps_run": 1, "iterations": int(iterations),
            "train_loss": loss(fit_logits, fit_y), "train_accuracy": acc(fit_logits, fit_y),
            "val_loss": loss(held_logits, held_y), "val_accuracy": acc(held_logits, held_y), "seconds": round(seconds, 3)}
