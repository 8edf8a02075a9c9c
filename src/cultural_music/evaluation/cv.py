"""Cross-validation by group: train and score one model per fold, pool the out-of-fold answers.

For fold ``i``: test = the recordings of fold ``i``; validation = a stratified group split of the
rest (early stopping and calibration only); train = the remainder.  The folder is scanned and
its features extracted ONCE (:func:`~cultural_music.training.pipeline.prepare`); each fold only
fits a full model folder ``OUT/fold_<i>/`` (:func:`~cultural_music.training.pipeline.fit`) and
scores its test recordings, at clip and recording level, from those features (no rescan, no
feature lookup).  Written to ``OUT``: ``cv_results.csv`` (one row per fold, rewritten after every fold), ``cv_summary.json`` (mean, std and 95% t-interval per metric, pooled out-of-fold
metrics and confusion matrices), ``oof_predictions.csv`` and ``confusion_matrix*.png``.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cultural_music.atomic import atomic_write_json, atomic_write_text, ensure_dir
from cultural_music.features.cache import FeatureCache, default_cache_dir
from cultural_music.config import Config
from cultural_music.data.dataset import Recording
from cultural_music.errors import DatasetError
from cultural_music.features.extract import ExtractResult
from cultural_music.features.jobs import LocalRunner
from cultural_music.data.folds import folds_from_column, group_kfold, leave_one_group_out, validation_split
from cultural_music.metrics.classification import classification_metrics

if TYPE_CHECKING:  # torch is imported only when a fold is fitted
    from cultural_music.training.pipeline import PreparedData

__all__ = ["run_cv", "fold_statistics", "CV_METRICS"]

CV_METRICS = ("macro_f1", "accuracy", "balanced_accuracy", "baseline_accuracy", "ece", "nll")


def fold_statistics(values: list[float], *, bounds: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """Mean, sample std (ddof 1) and 95% Student-t interval of per-fold values.

    ``bounds`` clips the interval to the metric's range (``(0, 1)`` for accuracy, F1, ECE).
    With one fold the std and interval are ``None``.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    mean = float(v.mean()) if n else None
    if n < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": n, "values": v.tolist()}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))
    low, high = mean - half, mean + half
    low = low if bounds[0] is None else max(low, bounds[0])
    high = high if bounds[1] is None else min(high, bounds[1])
    return {"mean": mean, "std": std, "ci95": [low, high], "n": n, "values": v.tolist()}


def _assigner(fold_of: dict[str, int], k: int, val_fraction: float, seed: int) -> Callable[[list[Recording]], list[Recording]]:
    def assign(recordings: list[Recording]) -> list[Recording]:
        unknown = [r.rel_path for r in recordings if r.rel_path not in fold_of]
        if unknown:
            raise DatasetError(f"{len(unknown)} file(s) appeared after the folds were made (first: {unknown[0]}); rerun")
        test = [Recording(r.path, r.rel_path, r.label, r.group, "test") for r in recordings if fold_of[r.rel_path] == k]
        rest = validation_split([r for r in recordings if fold_of[r.rel_path] != k], val_fraction=val_fraction, seed=seed + k)
        return rest + test
    return assign


def _check_fold_classes(recordings: list[Recording], fold_of: dict[str, int], names: list[str], log: Callable[[str], Any]) -> None:
    classes = sorted({r.label for r in recordings})
    for k, name in enumerate(names):
        outside = {r.label for r in recordings if fold_of[r.rel_path] != k}
        inside = {r.label for r in recordings if fold_of[r.rel_path] == k}
        if set(classes) - outside:
            raise DatasetError(f"fold {name}: class(es) {', '.join(sorted(set(classes) - outside))} only in this fold, "
                               "so no model could learn them; use fewer folds or other groups")
        if set(classes) - inside:
            log(f"warning: fold {name} has no test recording of {', '.join(sorted(set(classes) - inside))}")


def run_cv(data_dir: str | Path, cfg: Config, *, folds: int = 5, groups_csv: str | Path | None = None,
           fold_column: str | None = None, out_dir: str | Path = "cv", cache_dir: str | Path | None = None,
           workers: int | None = None, progress: bool = True, log: Callable[[str], Any] = print,
           candidates: dict[str, Config] | None = None) -> dict[str, Any]:
    """Cross-validate ``cfg`` on a folder-per-class data set, grouped so nothing leaks.

    Parameters
    ----------
    folds
        ``k >= 2``: stratified group k-fold (seeded with ``cfg.train.seed``); ``0``: leave one
        group out (one fold per group, e.g. per speaker).  Ignored with ``fold_column``.
    groups_csv
        CSV ``path,group[,...]``; default: every recording is its own group.
    fold_column
        Take the folds from this column of ``groups_csv`` (e.g. ESC's official ``fold``).
    out_dir
        Results folder; fold ``i``'s model folder is ``out_dir/fold_<i>``.
    candidates
        ``--model auto``: name -> config, chosen among inside every fold on its train split only
        (``cfg`` scans the folder); the fold row's ``model`` is the winner.

    Returns
    -------
    dict
        The ``cv_summary.json`` content: ``metrics[level][metric]`` (level ``clip`` or
        ``recording``) with ``mean``, ``std``, ``ci95`` and per-fold ``values``; ``pooled``
        out-of-fold metrics per level (with confusion matrices); ``folds`` (one row per fold);
        ``scheme``, ``n_folds``, ``classes``, ``seconds``, ``files``.
    """
    from cultural_music.training.pipeline import prepare

    if fold_column is not None and groups_csv is None:  # before any decoding
        raise DatasetError(f"--fold-column {fold_column} needs the CSV holding it (--groups CSV)")
    t_start, out = time.perf_counter(), ensure_dir(out_dir)
    prepared = prepare(data_dir, cfg, cache=FeatureCache(cache_dir or default_cache_dir()), runner=LocalRunner(workers),
                       groups_csv=groups_csv, progress=progress, log=log)
    recordings, root, skipped = prepared.recordings, prepared.scan.root, prepared.scan.skipped
    fold_idx, names, scheme = _make_folds(recordings, cfg, folds, groups_csv, fold_column, root, log)
    fold_of = {r.rel_path: f for r, f in zip(recordings, fold_idx)}
    _check_fold_classes(recordings, fold_of, names, log)
    classes = sorted({r.label for r in recordings})
    n_groups = len({r.group for r in recordings})
    log(f"cross-validation: {scheme}, {len(names)} folds over {len(recordings)} recordings in {n_groups} groups, {len(classes)} classes")
    rows: list[dict[str, Any]] = []
    pooled: dict[str, list[Any]] = defaultdict(list)
    for k, name in enumerate(names):
        rows.append(_run_fold(prepared, k, name, fold_of, len(names), out, classes, pooled, candidates))
        atomic_write_text(out / "cv_results.csv", _rows_csv(rows))
        _log_done(rows[-1], k, len(names), time.perf_counter() - t_start, log)
    return _finish(rows, pooled, out, t_start, scheme=scheme, n_folds=len(names), fold_names=names,
                   n_recordings=len(recordings), n_groups=n_groups, classes=classes, data_dir=str(root),
                   groups_csv=str(groups_csv) if groups_csv else None, config=cfg.to_dict(),
                   candidates=list(candidates) if candidates else None,
                   skipped=[{"path": s.path, "reason": s.reason} for s in skipped])


def _log_done(row: dict[str, Any], k: int, n_folds: int, elapsed: float, log: Callable[[str], Any]) -> None:
    """Fold ``k`` done: its time, macro-F1 and the time left (``elapsed`` seconds since the start)."""
    eta = (elapsed / (k + 1)) * (n_folds - k - 1)
    log(f"fold {k + 1}/{n_folds} done in {row['seconds']:.0f} s: macro-F1 recording {row['recording_macro_f1']:.3f}, "
        f"clip {row['clip_macro_f1']:.3f}" + (f"; about {eta / 60:.1f} min left" if eta > 0 else ""))


def _finish(rows: list[dict[str, Any]], pooled: dict[str, list[Any]], out: Path, t_start: float,
            **fields: Any) -> dict[str, Any]:
    """Write ``oof_predictions.csv``, the confusion plots and ``cv_summary.json`` (the summary
    with ``fields``, the wall time and the file names); returns the summary."""
    from cultural_music.evaluation.evaluate import predictions_csv_text

    summary = _summarise(rows, pooled, fields["classes"], out)
    summary.update(**fields, seconds=time.perf_counter() - t_start)
    atomic_write_text(out / "oof_predictions.csv", predictions_csv_text(pooled["rows"], extra=("fold",)))
    summary["files"] = {n: str(out / n) for n in ("cv_results.csv", "cv_summary.json", "oof_predictions.csv",
                                                   "confusion_matrix.png", "confusion_matrix_normalized.png")}
    atomic_write_json(out / "cv_summary.json", summary)
    return summary


def _make_folds(recordings: list[Recording], cfg: Config, folds: int, groups_csv: str | Path | None, fold_column: str | None,
                root: Path, log: Callable[[str], Any]) -> tuple[list[int], list[str], str]:
    """Fold index per recording, fold names and the scheme's description."""
    if fold_column is not None:
        assert groups_csv is not None
        fold_idx, names = folds_from_column(recordings, groups_csv, fold_column, root)
        return fold_idx, names, f"predefined folds (column '{fold_column}' of {Path(groups_csv).name})"
    if folds == 0:
        fold_idx, names = leave_one_group_out(recordings)
        if len(names) > 50:
            log(f"warning: leave one group out trains {len(names)} models (one per group); "
                "pass --groups CSV to group files by source or speaker, or use --folds K")
        return fold_idx, names, "leave one group out"
    fold_idx, names = group_kfold(recordings, n_folds=folds, seed=cfg.train.seed)
    return fold_idx, names, f"stratified group {folds}-fold (seed {cfg.train.seed})"


def _run_fold(prepared: PreparedData, k: int, name: str, fold_of: dict[str, int], n_folds: int, out: Path,
              classes: list[str], pooled: dict[str, list[Any]], candidates: dict[str, Config] | None = None) -> dict[str, Any]:
    """Fit fold ``k`` on the prepared data (model folder ``out/fold_<k+1>``), score its test
    recordings from the features already there, add its answers to ``pooled``; its row.

    The model is scored as saved (weights read back, milliseconds): the network left in memory by
    training gives logits that differ in the last float32 bits, and folds must give the numbers
    ``evaluate`` gives for the folder."""
    from cultural_music.evaluation.evaluate import evaluate_recordings
    from cultural_music.training.artifact import load_artifact
    from cultural_music.training.pipeline import choose_and_prepare, fit

    t0 = time.perf_counter()
    cfg, log = prepared.cfg, prepared.log
    log(f"== fold {k + 1}/{n_folds} (test: {name}, {sum(f == k for f in fold_of.values())} recordings) ==")
    fold_dir = out / f"fold_{k + 1}"
    assign = _assigner(fold_of, k, cfg.train.val_fraction, cfg.train.seed)
    if candidates:  # the model is chosen on this fold's train split only
        prepared, assign = choose_and_prepare(prepared, candidates, assign)
    run = fit(prepared, fold_dir, assign_split=assign)
    ev = evaluate_recordings(load_artifact(fold_dir), run.recordings, ExtractResult(dict(prepared.features.entries)), fold_dir,
                             plots=False, report=False)
    if ev.classes != classes:
        raise DatasetError(f"fold {name}: model classes {ev.classes} differ from the data's {classes}")
    pooled["rec_true"].append(ev.rec_true)
    pooled["rec_proba"].append(ev.rec_proba)
    pooled["clip_true"].append(ev.clip_true)
    pooled["clip_proba"].append(ev.clip_proba)
    pooled["rows"] += [{**r, "fold": name} for r in ev.predictions]
    return _fold_row(k, name, run, ev.metrics, time.perf_counter() - t0, prepared.cfg.train.model)


def _fold_row(k: int, name: str, run: Any, m: dict[str, Any], seconds: float, model: str) -> dict[str, Any]:
    splits = [r.split for r in run.recordings]
    row: dict[str, Any] = {"fold": k + 1, "fold_name": name, "model": model, "n_train": splits.count("train"), "n_val": splits.count("val"),
                           "n_test": m["n"], "n_test_clips": m["n_clips"], "best_epoch": run.best_epoch,
                           "epochs_run": len(run.history), "temperature": m["calibration"]["temperature"], "seconds": seconds}
    for level in ("recording", "clip"):
        for key in CV_METRICS:
            if key == "ece":
                row[f"{level}_ece"] = m["calibration"][level]["ece_after"]
            elif key == "nll":
                row[f"{level}_nll"] = m["calibration"][level]["nll_after"]
            else:
                row[f"{level}_{key}"] = m[level][key]
    return row


def _rows_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()})
    return buf.getvalue()


def _summarise(rows: list[dict[str, Any]], pooled: dict[str, list[Any]], classes: list[str], out: Path) -> dict[str, Any]:
    from cultural_music.metrics.plots import plot_confusion

    metrics = {level: {key: fold_statistics([r[f"{level}_{key}"] for r in rows], bounds=(0.0, None if key == "nll" else 1.0))
                       for key in CV_METRICS} for level in ("recording", "clip")}
    rec = classification_metrics(np.concatenate(pooled["rec_true"]), np.concatenate(pooled["rec_proba"]), classes)
    clip = classification_metrics(np.concatenate(pooled["clip_true"]), np.concatenate(pooled["clip_proba"]), classes)
    cm = np.array(rec["confusion_matrix"])
    n = rec["n"]
    plot_confusion(cm, classes, out / "confusion_matrix.png", title=f"Out-of-fold confusion, counts ({len(rows)} folds, {n} recordings)")
    plot_confusion(cm, classes, out / "confusion_matrix_normalized.png", normalize=True,
                   title=f"Out-of-fold confusion, row-normalised ({len(rows)} folds)")
    return {"metrics": metrics, "pooled": {"recording": rec, "clip": clip}, "folds": rows}
