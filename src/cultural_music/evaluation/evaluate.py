"""Score a model folder on its sealed test split, or on any labelled folder.

Metrics are computed at two levels: clip (each fixed-length cached clip) and recording (a file's
clip probabilities averaged, weighted by the seconds of real audio each clip holds, by
:func:`~cultural_music.metrics.recording.recording_probabilities`: the very function ``predict`` calls on
the same windows, so the recording level is what a user gets from ``predict``).  The top-level
``accuracy`` / ``macro_f1`` / ``n`` of ``metrics.json`` are the recording-level ones.

Outputs (in the model folder, or ``external/<folder name>/`` for ``data_dir``):
``metrics.json``, ``test_predictions.csv`` (error analysis: wrong recordings first, most
confident first), ``plots/*.png`` and ``report.html``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cultural_music.training.artifact import Artifact, checked_split_csv, load_artifact
from cultural_music.atomic import atomic_write_json, atomic_write_text
from cultural_music.features.cache import FeatureCache, default_cache_dir
from cultural_music.metrics.calibration import DEFAULT_BINS, nll, reliability_bins
from cultural_music.training.clip_dataset import ClipDataset, build_items
from cultural_music.data.dataset import Recording, read_split_csv, scan_folder
from cultural_music.errors import DatasetError
from cultural_music.features.extract import default_workers, extract_features
from cultural_music.metrics.classification import classification_metrics, log_loss_nats, softmax
from cultural_music.metrics.recording import recordings_from_clips
from cultural_music.training.loop import predict_logits

__all__ = ["Evaluation", "held_out_evaluation", "run_evaluation", "evaluate_recordings", "clip_and_recording_probabilities", "prediction_rows",
           "PREDICTIONS_FILE"]

PREDICTIONS_FILE = "test_predictions.csv"


@dataclass
class Evaluation:
    """What :func:`run_evaluation` computed: the metrics dict plus the per-recording predictions.

    ``rec_proba`` is ``(n_recordings, n_classes)`` (calibrated, clip probabilities averaged),
    ``clip_proba`` ``(n_clips, n_classes)``; ``predictions`` are the rows of
    ``test_predictions.csv``; ``files`` names what was written (``metrics``, ``report``, ...).
    """

    metrics: dict[str, Any]
    classes: list[str]
    rec_paths: list[str]
    rec_true: np.ndarray
    rec_proba: np.ndarray
    clip_true: np.ndarray
    clip_proba: np.ndarray
    predictions: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)


def clip_and_recording_probabilities(art: Artifact, recordings: list[Recording], extracted: Any, split: str) -> dict[str, Any]:
    """Clip- and recording-level probabilities for the recordings of ``split``.

    Returns a dict with ``clip_logits (n_clips, k)``, ``clip_proba (n_clips, k)`` (divided by
    the model's calibration temperature), ``clip_proba_raw`` (temperature 1), ``clip_true
    (n_clips,)``, ``rec_paths``, ``rec_proba (n_recs, k)``, ``rec_proba_raw``, ``rec_true
    (n_recs,)`` and ``temperature``.  Recording probabilities come from the clips exactly as
    ``predict`` makes them from its windows (:func:`~cultural_music.metrics.recording.recordings_from_clips`).
    """
    items = build_items(recordings, extracted, art.classes, split)
    ds = ClipDataset(items)
    k = len(art.classes)
    temperature = float(art.meta.get("calibration", {}).get("temperature", 1.0))
    logits = predict_logits(art.model, ds) if len(ds) else np.zeros((0, k), dtype=np.float32)
    proba = softmax(logits, temperature) if len(ds) else logits
    raw = softmax(logits, 1.0) if len(ds) else logits
    groups = [it.rel_path for it in items]
    a = art.config.audio
    durations = {rel: extracted.entries[rel].duration for rel in set(groups)}
    shape = {"window": float(a.clip_seconds), "clip_samples": a.clip_samples, "sample_rate": a.sample_rate}
    rec_paths, rec_proba = recordings_from_clips(groups, proba, durations, **shape)
    _, rec_raw = recordings_from_clips(groups, raw, durations, **shape)
    first_label: dict[str, int] = {}
    for it in items:
        first_label.setdefault(it.rel_path, it.label)
    rec_true = np.array([first_label[p] for p in rec_paths], dtype=int)
    return {"clip_logits": logits, "clip_proba": proba, "clip_proba_raw": raw, "clip_true": ds.labels,
            "rec_paths": rec_paths, "rec_proba": rec_proba, "rec_proba_raw": rec_raw, "rec_true": rec_true,
            "temperature": temperature}


def calibration_metrics(res: dict[str, Any], *, n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """ECE and NLL before (``T = 1``) and after the model's temperature, at clip and recording level.

    NLL is in nats per item; each level also holds its reliability bins (``before`` / ``after``).
    """
    out: dict[str, Any] = {"temperature": res["temperature"], "n_bins": n_bins}
    for level, y, raw, cal in (("clip", res["clip_true"], res["clip_proba_raw"], res["clip_proba"]),
                               ("recording", res["rec_true"], res["rec_proba_raw"], res["rec_proba"])):
        before, after = reliability_bins(y, raw, n_bins=n_bins), reliability_bins(y, cal, n_bins=n_bins)
        out[level] = {"ece_before": before["ece"], "ece_after": after["ece"],
                      "nll_before": log_loss_nats(y, raw, raw.shape[1]) if len(y) else 0.0,
                      "nll_after": log_loss_nats(y, cal, cal.shape[1]) if len(y) else 0.0,
                      "reliability_before": before, "reliability_after": after}
    if len(res["clip_true"]):  # exact clip NLL from the logits
        out["clip"]["nll_before"] = nll(res["clip_logits"], res["clip_true"], 1.0)
        out["clip"]["nll_after"] = nll(res["clip_logits"], res["clip_true"], res["temperature"])
    return out


def prediction_rows(rec_paths: list[str], rec_true: np.ndarray, rec_proba: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """One row per recording: path, true, predicted, confidence, top-3, correct.

    Sorted for error analysis: wrong answers first, most confident first (the most misleading
    mistakes on top); then right answers, least confident first.
    """
    rows = []
    for path, y, p in zip(rec_paths, rec_true, rec_proba):
        order = np.argsort(-p, kind="stable")
        rows.append({"path": path, "true": classes[int(y)], "predicted": classes[int(order[0])],
                     "confidence": float(p[order[0]]), "top3": [(classes[int(i)], float(p[i])) for i in order[:3]],
                     "correct": bool(order[0] == y)})
    wrong = sorted((r for r in rows if not r["correct"]), key=lambda r: (-r["confidence"], r["path"]))
    right = sorted((r for r in rows if r["correct"]), key=lambda r: (r["confidence"], r["path"]))
    return wrong + right


def predictions_csv_text(rows: list[dict[str, Any]], *, extra: tuple[str, ...] = ()) -> str:
    """CSV ``path,true,predicted,confidence,correct,top3`` (``top3`` as ``a:0.810|b:0.120|c:0.030``)
    plus the ``extra`` keys of each row as further columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "true", "predicted", "confidence", "correct", "top3", *extra])
    for r in rows:
        w.writerow([r["path"], r["true"], r["predicted"], f"{r['confidence']:.4f}", int(r["correct"]),
                    "|".join(f"{c}:{p:.3f}" for c, p in r["top3"]), *(r[k] for k in extra)])
    return buf.getvalue()


def _recordings_to_score(art: Artifact, data_dir: str | Path | None, log: Callable[[str], Any]) -> tuple[list[Recording], list[str], Path]:
    """Test recordings (sealed split or external folder), unknown class folders, output folder."""
    if data_dir is None:
        split_csv = checked_split_csv(art)  # missing, or not this model's split: a clear error
        root = Path(art.meta.get("data", {}).get("data_dir", "."))
        recordings = [r for r in read_split_csv(split_csv, root) if r.split == "test"]
        missing = [r for r in recordings if not r.path.exists()]
        if missing:
            raise DatasetError(
                f"{len(missing)} test file(s) of the training data are missing (first: {missing[0].path}); "
                "pass --data DIR to evaluate on another folder"
            )
        if not recordings:
            raise DatasetError(f"{split_csv}: no recording in the test split")
        return recordings, [], art.directory
    scan = scan_folder(data_dir, min_classes=1)
    unknown = sorted({r.label for r in scan.recordings} - set(art.classes))
    if unknown:
        counts = {u: sum(r.label == u for r in scan.recordings) for u in unknown}
        log("warning: folder(s) not among the model's classes, left out of the metrics: "
            + ", ".join(f"{u} ({n} files)" for u, n in counts.items()))
    recordings = [Recording(r.path, r.rel_path, r.label, r.group, "test") for r in scan.recordings if r.label in art.classes]
    if not recordings:
        raise DatasetError(f"{data_dir}: no file in a folder named like a model class ({', '.join(art.classes)})")
    return recordings, unknown, art.directory / "external" / Path(data_dir).resolve().name


def run_evaluation(
    model_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    plots: bool = True,
    report: bool = True,
    log: Callable[[str], Any] = print,
) -> Evaluation:
    """Evaluate a model folder; write ``metrics.json``, ``test_predictions.csv``, plots and report.

    Parameters
    ----------
    data_dir
        ``None``: the sealed test split recorded in ``split.csv`` (files under the training
        data folder).  A folder: every file of its class folders; folders whose names are not
        model classes are reported in ``unknown_classes`` and left out of the metrics.
    plots, report
        Write ``plots/*.png`` and the self-contained ``report.html`` (which embeds the plots
        made in this run).
    """
    art = load_artifact(model_dir)
    if data_dir is None and "refit" in art.meta:
        return held_out_evaluation(art, log)
    torch.set_num_threads(default_workers())
    recordings, unknown, out_dir = _recordings_to_score(art, data_dir, log)
    cache = FeatureCache(cache_dir or default_cache_dir())
    extracted = extract_features(recordings, art.config, cache, augment_splits=(), workers=default_workers() if workers is None else workers,
                                 progress=progress, desc="test features")
    for s in extracted.skipped:
        log(f"skipped {s.path}: {s.reason}")
    data = "test split" if data_dir is None else str(Path(data_dir).resolve())
    return evaluate_recordings(art, recordings, extracted, out_dir, data=data, unknown=None if data_dir is None else unknown,
                               plots=plots, report=report)


def held_out_evaluation(art: Artifact, log: Callable[[str], Any] = print) -> Evaluation:
    """The evaluation stored in a refitted model folder (``evaluation.deploy``): the test split was
    scored before the refit, and the deployed weights have since seen it, so it is never scored
    again; the stored ``metrics.json`` (and report) are returned as they are."""
    import json

    path = art.directory / "metrics.json"
    if not path.is_file():
        raise DatasetError(f"{path}: missing; this model was refitted on every file, so its test split cannot be "
                           "scored afresh: pass --data DIR with other labelled files")
    metrics = json.loads(path.read_text(encoding="utf-8"))
    log("this model was refitted on every file after its held-out evaluation: these are the metrics measured on the "
        "test split BEFORE the refit (the deployed weights have since seen those files); --data DIR scores other files")
    files = {"metrics": path, "predictions": art.directory / PREDICTIONS_FILE}
    if (art.directory / "report.html").is_file():
        files["report"] = art.directory / "report.html"
    empty = np.zeros((0, len(art.classes)))
    return Evaluation(metrics, art.classes, [], np.zeros(0, dtype=int), empty, np.zeros(0, dtype=int), empty, [], files)


def evaluate_recordings(art: Artifact, recordings: list[Recording], extracted: Any, out_dir: Path, *, data: str = "test split",
                        unknown: list[str] | None = None, plots: bool = True, report: bool = True,
                        deployed: dict[str, Any] | None = None) -> Evaluation:
    """Score the ``"test"`` recordings with the model ``art`` (in memory) from their features
    ``extracted`` (an :class:`~cultural_music.features.extract.ExtractResult`) and write
    ``metrics.json``, ``test_predictions.csv`` and, if asked, plots and ``report.html`` into
    ``out_dir``.  ``data`` describes the data in ``metrics.json``; ``unknown`` (external data
    only) lists class folders left out; ``deployed`` (``evaluation.deploy``) says what the model
    deployed after this evaluation was trained on.  Cross-validation calls this for each fold.
    """
    res = clip_and_recording_probabilities(art, recordings, extracted, "test")
    if len(res["rec_true"]) == 0:
        raise DatasetError("no usable test recording")
    metrics, rows = _metrics(art, res, data, extracted.skipped)
    if unknown is not None:
        metrics["unknown_classes"] = unknown
    if deployed is not None:
        metrics["deployed"] = deployed
    files = {"metrics": out_dir / "metrics.json", "predictions": out_dir / PREDICTIONS_FILE}
    atomic_write_text(files["predictions"], predictions_csv_text(rows))
    images = _write_plots(art, res, metrics, out_dir / "plots") if plots else {}
    if report:
        from cultural_music.evaluation.report import write_report

        files["report"] = write_report(out_dir / "report.html", metrics=metrics, meta=art.meta, predictions=rows,
                                       images=images, model_dir=art.directory)
        metrics["report"] = "report.html"
    atomic_write_json(files["metrics"], metrics)
    files.update({f"plot:{k}": v for k, v in images.items()})
    return Evaluation(metrics, art.classes, res["rec_paths"], res["rec_true"], res["rec_proba"], res["clip_true"],
                      res["clip_proba"], rows, files)


def _metrics(art: Artifact, res: dict[str, Any], data: str, skipped: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``metrics.json`` (without the output names added later) and the prediction rows."""
    clip = classification_metrics(res["clip_true"], res["clip_proba"], art.classes)
    rec = classification_metrics(res["rec_true"], res["rec_proba"], art.classes)
    rows = prediction_rows(res["rec_paths"], res["rec_true"], res["rec_proba"], art.classes)
    metrics: dict[str, Any] = {
        "accuracy": rec["accuracy"],
        "macro_f1": rec["macro_f1"],
        "balanced_accuracy": rec["balanced_accuracy"],
        "n": rec["n"],
        "n_clips": clip["n"],
        "level": "recording",
        "data": data,
        "classes": art.classes,
        "recording": rec,
        "clip": clip,
        "calibration": calibration_metrics(res),
        "n_wrong": sum(not r["correct"] for r in rows),
        "predictions_csv": PREDICTIONS_FILE,
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }
    return metrics, rows


def _write_plots(art: Artifact, res: dict[str, Any], metrics: dict[str, Any], plot_dir: Path) -> dict[str, Path]:
    """Every evaluation plot; returns ``{name: path}`` (the training curves live in the model folder)."""
    import json

    from cultural_music.metrics.plots import plot_confusion, plot_history, plot_pr, plot_reliability, plot_roc

    images: dict[str, Path] = {}
    hist_path = art.directory / "history.json"
    if hist_path.is_file():
        history = json.loads(hist_path.read_text())
        acc, loss = plot_history(history, art.directory / "plots", best_epoch=art.meta.get("training", {}).get("best_epoch"))
        images.update(accuracy=acc, loss=loss)
    rec = metrics["recording"]
    n, cm = rec["n"], np.array(rec["confusion_matrix"])
    images["confusion"] = plot_confusion(cm, art.classes, plot_dir / "confusion_matrix.png",
                                         title=f"Confusion matrix, counts (test recordings, n={n})")
    images["confusion_normalized"] = plot_confusion(cm, art.classes, plot_dir / "confusion_matrix_normalized.png", normalize=True,
                                                    title=f"Confusion matrix, row-normalised (n={n})")
    images["roc"] = plot_roc(res["rec_true"], res["rec_proba"], art.classes, plot_dir / "roc.png",
                             title=f"ROC per class, one vs rest (n={n})")
    images["pr"] = plot_pr(res["rec_true"], res["rec_proba"], art.classes, plot_dir / "pr.png",
                           title=f"Precision-recall per class (n={n})")
    cal = metrics["calibration"]
    images["reliability"] = plot_reliability(
        [(f"clips (n={metrics['n_clips']})", cal["clip"]["reliability_before"], cal["clip"]["reliability_after"]),
         (f"recordings (n={n})", cal["recording"]["reliability_before"], cal["recording"]["reliability_after"])],
        plot_dir / "reliability.png", temperature=cal["temperature"])
    return images
