"""Score a model folder on its sealed test split, or on any labelled folder.

Metrics are computed at two levels: clip (each fixed-length clip) and recording (a file's clip
probabilities averaged, which is what a user gets from ``predict``).  The top-level
``accuracy`` / ``macro_f1`` / ``n`` of ``metrics.json`` are the recording-level ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifact import Artifact, load_artifact
from .atomic import atomic_write_json
from .cache import FeatureCache, default_cache_dir
from .data import ClipDataset, build_items
from .dataset import Recording, read_split_csv, scan_folder
from .errors import DatasetError
from .extract import default_workers, extract_features
from .metrics import classification_metrics, mean_by_group, softmax
from .train import predict_logits

__all__ = ["evaluate_model", "clip_and_recording_probabilities"]


def clip_and_recording_probabilities(art: Artifact, recordings: list[Recording], extracted: Any, split: str) -> dict[str, Any]:
    """Clip- and recording-level probabilities for the recordings of ``split``.

    Returns a dict with ``clip_proba (n_clips, k)``, ``clip_true (n_clips,)``, ``rec_paths``,
    ``rec_proba (n_recs, k)``, ``rec_true (n_recs,)``.
    """
    items = build_items(recordings, extracted, art.classes, split)
    ds = ClipDataset(items)
    temperature = float(art.meta.get("calibration", {}).get("temperature", 1.0))
    logits = predict_logits(art.model, ds) if len(ds) else np.zeros((0, len(art.classes)))
    proba = softmax(logits, temperature) if len(ds) else logits
    clip_true = ds.labels
    rec_paths, rec_proba = mean_by_group([it.rel_path for it in items], proba)
    first_label = {}
    for it in items:
        first_label.setdefault(it.rel_path, it.label)
    rec_true = np.array([first_label[p] for p in rec_paths], dtype=int)
    return {"clip_proba": proba, "clip_true": clip_true, "rec_paths": rec_paths, "rec_proba": rec_proba, "rec_true": rec_true}


def evaluate_model(
    model_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Evaluate a model folder and write ``metrics.json`` (and plots).

    Parameters
    ----------
    data_dir
        ``None``: the sealed test split recorded in ``split.csv`` (files under the training
        data folder).  A folder: every file of its class folders; folders whose names are not
        model classes are reported in ``unknown_classes`` and left out of the metrics.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1``, ``n`` (recording level) plus ``clip`` and ``recording``
        sections, ``skipped`` files and, for external data, ``unknown_classes``.
    """
    art = load_artifact(model_dir)
    torch.set_num_threads(default_workers())
    cfg = art.config
    cache = FeatureCache(cache_dir or default_cache_dir())
    unknown: list[str] = []
    if data_dir is None:
        split_csv = art.directory / "split.csv"
        if not split_csv.is_file():
            raise DatasetError(f"{split_csv}: missing; pass --data DIR to evaluate on a labelled folder")
        root = Path(art.meta.get("data", {}).get("data_dir", "."))
        recordings = [r for r in read_split_csv(split_csv, root) if r.split == "test"]
        missing = [r for r in recordings if not r.path.exists()]
        if missing:
            raise DatasetError(
                f"{len(missing)} test file(s) of the training data are missing (first: {missing[0].path}); "
                "pass --data DIR to evaluate on another folder"
            )
        out_dir = art.directory
    else:
        scan = scan_folder(data_dir, min_classes=1)
        unknown = sorted({r.label for r in scan.recordings} - set(art.classes))
        if unknown:
            log(f"warning: folder(s) not among the model's classes, left out: {', '.join(unknown)}")
        recordings = [Recording(r.path, r.rel_path, r.label, r.group, "test") for r in scan.recordings if r.label in art.classes]
        if not recordings:
            raise DatasetError(f"{data_dir}: no file in a folder named like a model class ({', '.join(art.classes)})")
        out_dir = art.directory / "external" / Path(data_dir).resolve().name
    extracted = extract_features(recordings, cfg, cache, augment_splits=(), workers=default_workers() if workers is None else workers,
                                 progress=progress, desc="test features")
    for s in extracted.skipped:
        log(f"skipped {s.path}: {s.reason}")
    res = clip_and_recording_probabilities(art, recordings, extracted, "test")
    if len(res["rec_true"]) == 0:
        raise DatasetError("no usable test recording")
    clip = classification_metrics(res["clip_true"], res["clip_proba"], art.classes)
    rec = classification_metrics(res["rec_true"], res["rec_proba"], art.classes)
    metrics: dict[str, Any] = {
        "accuracy": rec["accuracy"],
        "macro_f1": rec["macro_f1"],
        "balanced_accuracy": rec["balanced_accuracy"],
        "n": rec["n"],
        "n_clips": clip["n"],
        "level": "recording",
        "data": "test split" if data_dir is None else str(Path(data_dir).resolve()),
        "classes": art.classes,
        "recording": rec,
        "clip": clip,
        "skipped": [{"path": s.path, "reason": s.reason} for s in extracted.skipped],
    }
    if data_dir is not None:
        metrics["unknown_classes"] = unknown
    atomic_write_json(out_dir / "metrics.json", metrics)
    if plots:
        _write_plots(art, res, rec, out_dir / "plots")
    return metrics


def _write_plots(art: Artifact, res: dict[str, Any], rec: dict[str, Any], plot_dir: Path) -> None:
    import json

    from .plots import plot_confusion, plot_history, plot_pr, plot_roc

    hist_path = art.directory / "history.json"
    if hist_path.is_file():
        history = json.loads(hist_path.read_text())
        plot_history(history, art.directory / "plots", best_epoch=art.meta.get("training", {}).get("best_epoch"))
    n = rec["n"]
    plot_confusion(np.array(rec["confusion_matrix"]), art.classes, plot_dir / "confusion_matrix.png",
                   title=f"Confusion matrix (test recordings, n={n})")
    plot_roc(res["rec_true"], res["rec_proba"], art.classes, plot_dir / "roc.png", title=f"ROC per class, one vs rest (n={n})")
    plot_pr(res["rec_true"], res["rec_proba"], art.classes, plot_dir / "pr.png", title=f"Precision-recall per class (n={n})")
