"""Training end to end: scan -> split -> features -> train -> model folder.

This is the one place that strings the stages together; the CLI only parses flags and calls
:func:`run_training`.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cultural_music.training.artifact import SPLIT_FILE, file_sha256, save_artifact
from cultural_music.atomic import atomic_write_json, ensure_dir
from cultural_music.features.cache import FeatureCache, default_cache_dir
from cultural_music.config import Config
from cultural_music.training.clip_dataset import ClipDataset, build_items
from cultural_music.data.dataset import DatasetScan, Recording, Skipped, read_groups_csv, scan_folder, split_recordings, write_split_csv
from cultural_music.errors import DatasetError, OutputError
from cultural_music.features.extract import ExtractResult, default_workers, extract_features
from cultural_music.models import applicable_settings, build_model
from cultural_music.training.loop import CHECKPOINT_NAME, train_model

__all__ = ["TrainingRun", "run_training", "prepare_dataset", "usable_recordings", "summary_table"]


@dataclass
class TrainingRun:
    """What :func:`run_training` produced."""

    model_dir: Path
    classes: list[str]
    recordings: list[Recording]
    skipped: list[Skipped]
    history: list[dict[str, float]]
    best_epoch: int


def usable_recordings(
    data_dir: str | Path,
    cfg: Config,
    cache: FeatureCache,
    *,
    groups_csv: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    backend: str = "local",
) -> tuple[DatasetScan, list[Recording], ExtractResult]:
    """Scan (with the optional group CSV), extract clean features (cached) and keep the files
    that decoded; identical audio under several paths is put in one group.

    Returns the scan (``skipped`` also lists files that failed to decode), the usable
    recordings (``split`` not set) and the features.  Raises :class:`DatasetError` when a class
    has no usable file or fewer than 2 classes remain.
    """
    scan = scan_folder(data_dir)
    if groups_csv is not None:
        scan = read_groups_csv(groups_csv, scan)
    for w in scan.warnings:
        log(f"warning: {w}")
    clean = extract_features(scan.recordings, cfg, cache, augment_splits=(), workers=workers, progress=progress,
                             desc="decode + features", backend=backend)
    scan.skipped.extend(clean.skipped)
    usable = [r for r in scan.recordings if r.rel_path in clean.entries]
    _check_duplicates(usable, clean, log)
    empty = sorted(set(scan.classes) - {r.label for r in usable})
    if empty:
        raise DatasetError(f"class(es) with no usable file: {', '.join(empty)} (see the skipped files above)")
    if len({r.label for r in usable}) < 2:
        raise DatasetError("fewer than 2 classes have usable files")
    return scan, usable, clean


def prepare_dataset(
    data_dir: str | Path,
    cfg: Config,
    cache: FeatureCache,
    *,
    groups_csv: str | Path | None = None,
    workers: int = 1,
    assign_split: Callable[[list[Recording]], list[Recording]] | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    backend: str = "local",
) -> tuple[DatasetScan, list[Recording], ExtractResult]:
    """:func:`usable_recordings`, then split by group and add augmented variants.

    ``assign_split`` maps the usable recordings to recordings with ``split`` set (default:
    :func:`split_recordings` with the config's fractions and seed; cross-validation passes
    its fold assignment); ``backend`` runs the extraction (``"local"`` or ``"ray"``).  Returns
    the scan (with every skipped file), the split recordings and the features.
    """
    scan, usable, clean = usable_recordings(data_dir, cfg, cache, groups_csv=groups_csv, workers=workers,
                                            progress=progress, log=log, backend=backend)
    if assign_split is None:
        recordings = split_recordings(usable, val_fraction=cfg.train.val_fraction, test_fraction=cfg.train.test_fraction, seed=cfg.train.seed)
    else:
        recordings = assign_split(usable)
    train_recs = [r for r in recordings if r.split == "train"]
    if cfg.augment.n_variants > 0:
        aug = extract_features(train_recs, cfg, cache, workers=workers, progress=progress, desc="augmented variants", backend=backend)
        scan.skipped.extend(aug.skipped)
        clean.entries.update(aug.entries)
        clean.n_decoded += aug.n_decoded
    return scan, recordings, clean


def _check_duplicates(recordings: list[Recording], extracted: ExtractResult, log: Callable[[str], Any]) -> None:
    """Warn about identical audio (same SHA-256) under several paths; a duplicate pair shares a group."""
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(recordings):
        by_sha[extracted.entries[r.rel_path].sha].append(i)
    for idxs in by_sha.values():
        if len(idxs) > 1:
            paths = [recordings[i].rel_path for i in idxs]
            labels = sorted({recordings[i].label for i in idxs})
            note = f" in different classes ({', '.join(labels)})" if len(labels) > 1 else ""
            log(f"warning: identical audio{note}: {', '.join(paths)}; kept on one side of the split")
            group = recordings[idxs[0]].group
            for i in idxs[1:]:
                recordings[i] = replace(recordings[i], group=group)


def summary_table(recordings: list[Recording], extracted: ExtractResult) -> str:
    """Files and minutes per class and split, as an aligned text table."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))
    for r in recordings:
        e = extracted.entries.get(r.rel_path)
        if e is None:
            continue
        for key in (r.split or "all", "total"):
            rows[r.label][key][0] += 1
            rows[r.label][key][1] += e.duration / 60.0
    splits = [s for s in ("train", "val", "test") if any(s in v for v in rows.values())]
    cols = splits + ["total"]
    width = max([5] + [len(c) for c in rows])
    head = f"{'class':<{width}}  " + "  ".join(f"{c + ' files/min':>17}" for c in cols)
    lines = [head, "-" * len(head)]
    totals = {c: [0, 0.0] for c in cols}
    for label in sorted(rows):
        cells = []
        for c in cols:
            n, m = rows[label].get(c, [0, 0.0])
            totals[c][0] += n
            totals[c][1] += m
            cells.append(f"{n:>8d} / {m:>6.1f}")
        lines.append(f"{label:<{width}}  " + "  ".join(f"{x:>17}" for x in cells))
    lines.append("-" * len(head))
    lines.append(f"{'all':<{width}}  " + "  ".join(f"{f'{n:>8d} / {m:>6.1f}':>17}" for n, m in totals.values()))
    return "\n".join(lines)


def format_skipped(skipped: list[Skipped]) -> str:
    """One line per skipped file: ``path: reason``."""
    return "\n".join(f"  {s.path}: {s.reason}" for s in skipped)


def run_training(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: Config,
    *,
    groups_csv: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    resume: bool = False,
    assign_split: Callable[[list[Recording]], list[Recording]] | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    backend: str = "local",
    address: str | None = None,
) -> TrainingRun:
    """Train a model on a folder-per-class data set and write the model folder.

    Writes ``model.safetensors``, ``model.json``, ``history.json``, ``split.csv`` and the
    training-curve plots into ``<out_dir>.tmp-<pid>`` beside ``out_dir`` and swaps that folder in
    only when complete (an existing model folder stays intact until then; the temp folder is
    removed on failure).  ``checkpoint.pt`` is kept in ``out_dir`` during training, where
    ``resume`` finds it; it goes with the old folder when the new one is in place.

    ``backend="ray"`` (docs/cluster.md) extracts features with Ray tasks and trains data-parallel
    (except a full-batch L-BFGS head, which trains in this process in seconds) on ``workers`` Ray actors (default: one per node of the cluster at ``address``; without
    ``address``, a local Ray instance with ``workers`` CPUs, default all cores); data, cache and
    ``out_dir`` must then be at the same path on every node.
    """
    from cultural_music.models.res_cnn import check_input_size

    check_input_size(cfg)  # before anything is decoded or written
    out = _check_out_dir(Path(out_dir))
    ensure_dir(out)  # holds checkpoint.pt during the run (beside an old model, which stays usable)
    build = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    ensure_dir(build)
    try:
        run = _train_into(build, out, data_dir, cfg, groups_csv=groups_csv, cache_dir=cache_dir, workers=workers,
                          resume=resume, assign_split=assign_split, progress=progress, log=log, backend=backend,
                          address=address)
        _swap_in(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return replace(run, model_dir=out)


def _check_out_dir(out: Path) -> Path:
    """Refuse an existing folder that is not a model folder: the swap would delete its files."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and "model.json" not in names and names != {CHECKPOINT_NAME}:
            raise OutputError(f"{out}: exists and is not a model folder (no model.json); choose a new or empty --out")
    return out


def _swap_in(build: Path, out: Path) -> None:
    """Replace ``out`` by the finished folder ``build``: the old folder is renamed aside, the new
    one renamed into place, then the old one (with the run's checkpoint.pt) is deleted."""
    old = out.parent / f"{out.name}.old-{os.getpid()}"
    try:
        if out.exists():
            os.replace(out, old)
        os.replace(build, out)
    except OSError as err:
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise OutputError(f"{out}: cannot put the new model folder in place ({err.strerror or err})") from err
    shutil.rmtree(old, ignore_errors=True)


def _train_into(
    out: Path,
    ckpt_dir: Path,
    data_dir: str | Path,
    cfg: Config,
    *,
    groups_csv: str | Path | None,
    cache_dir: str | Path | None,
    workers: int | None,
    resume: bool,
    assign_split: Callable[[list[Recording]], list[Recording]] | None,
    progress: bool,
    log: Callable[[str], Any],
    backend: str,
    address: str | None,
) -> TrainingRun:
    """The whole run, writing the model folder ``out`` and checkpoints into ``ckpt_dir``."""
    cache = FeatureCache(cache_dir or default_cache_dir())
    if backend == "ray":  # default workers: one per node of a cluster, else this machine's cores
        from cultural_music.cluster.session import cluster_nodes, connect

        connect(address, num_cpus=workers or default_workers())
        workers = workers or (cluster_nodes() if address else default_workers())
    workers = default_workers() if workers is None else max(1, workers)
    torch.set_num_threads(default_workers())
    scan, recordings, extracted = prepare_dataset(
        data_dir, cfg, cache, groups_csv=groups_csv, workers=workers, assign_split=assign_split, progress=progress, log=log,
        backend=backend,
    )
    if scan.skipped:
        log(f"skipped {len(scan.skipped)} file(s):\n" + format_skipped(scan.skipped))
    log(summary_table(recordings, extracted))
    write_split_csv(out / SPLIT_FILE, recordings)
    classes = sorted({r.label for r in recordings})
    train_ds = ClipDataset(build_items(recordings, extracted, classes, "train"), train=True, seed=cfg.train.seed, augment=cfg.augment)
    val_ds = ClipDataset(build_items(recordings, extracted, classes, "val"))
    log(f"training '{cfg.train.model}' on {len(train_ds)} clips, validating on {len(val_ds)} clips")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.train.model, n_classes=len(classes), n_rows=cfg.features.n_rows)
    if backend == "ray" and cfg.train.optimizer == "lbfgs":
        # a full-batch L-BFGS head sees every clip on every rank: data parallelism would only repeat it
        log("the L-BFGS head trains here, in seconds; Ray did the feature extraction")
        result = train_model(model, train_ds, val_ds, cfg.train, checkpoint_dir=ckpt_dir, resume=resume, log=log)
    elif backend == "ray":
        from cultural_music.cluster.ray_train import train_on_ray

        log(f"data-parallel training on {workers} Ray worker(s)")
        result = train_on_ray(model, train_ds, val_ds, cfg.train, workers=workers, checkpoint_dir=ckpt_dir, resume=resume, log=log)
    else:
        result = train_model(model, train_ds, val_ds, cfg.train, checkpoint_dir=ckpt_dir, resume=resume, log=log)
    atomic_write_json(out / "history.json", result.history)
    data_summary = _data_summary(scan, recordings, extracted)
    post = fit_on_validation(model, val_ds)
    save_artifact(
        out, model, classes=classes, config=cfg, model_name=cfg.train.model,
        extra={
            "training": {**_training_summary(result), "train_clips": len(train_ds), "val_clips": len(val_ds)},
            "settings": applicable_settings(cfg),
            "data": data_summary,
            "split_sha256": file_sha256(out / SPLIT_FILE),
            **post,
        },
    )
    from cultural_music.metrics.plots import plot_history

    plot_history(result.history, out / "plots", best_epoch=result.best_epoch)
    return TrainingRun(out, classes, recordings, scan.skipped, result.history, result.best_epoch)


def _training_summary(result: Any) -> dict[str, Any]:
    """model.json's training summary: epochs for an epoch loop; iterations, final loss and the
    validation result once for a full-batch L-BFGS fit."""
    h = result.history[0]
    if h.get("fit") == "lbfgs":
        return {"fit": "lbfgs", "iterations": h["iterations"], "final_train_loss": h["train_loss"],
                "train_accuracy": h["train_accuracy"], "val_loss": h["val_loss"], "val_accuracy": h["val_accuracy"]}
    return {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss, "epochs_run": len(result.history),
            "stopped_early": result.stopped_early}


def fit_on_validation(model: torch.nn.Module, val_ds: ClipDataset) -> dict[str, Any]:
    """Settings fitted on the validation split after training: calibration, then the
    "uncertain" threshold on calibrated recording-level probabilities."""
    from cultural_music.metrics.calibration import fit_temperature
    from cultural_music.metrics.classification import softmax
    from cultural_music.metrics.classification import mean_by_group
    from cultural_music.training.loop import predict_logits
    from cultural_music.metrics.uncertainty import fit_threshold

    logits = predict_logits(model, val_ds)
    labels = val_ds.labels
    calibration = fit_temperature(logits, labels)
    proba = softmax(logits, float(calibration.get("temperature", 1.0)))
    rec_paths, rec_proba = mean_by_group([it.rel_path for it in val_ds.items], proba)
    first = {}
    for it in val_ds.items:
        first.setdefault(it.rel_path, it.label)
    rec_labels = np.array([first[p] for p in rec_paths], dtype=int)
    return {"calibration": calibration, "uncertain": fit_threshold(rec_proba, rec_labels)}


def _data_summary(scan: DatasetScan, recordings: list[Recording], extracted: ExtractResult) -> dict[str, Any]:
    per: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: {"files": 0, "minutes": 0.0, "clips": 0}))
    for r in recordings:
        e = extracted.entries[r.rel_path]
        cell = per[r.label][r.split]
        cell["files"] += 1
        cell["minutes"] += round(e.duration / 60.0, 4)
        cell["clips"] += e.n_clips
    return {
        "data_dir": str(scan.root),
        "per_class": {k: dict(v) for k, v in per.items()},
        "skipped": [{"path": s.path, "reason": s.reason} for s in scan.skipped],
    }
