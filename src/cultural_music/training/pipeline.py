"""Training end to end: scan -> features -> split -> train -> model folder.

This is the one place that strings the stages together, in two steps: :func:`prepare` (scan the
folder, read the groups CSV, extract or find the clean features, warn once) gives
:class:`PreparedData`; :func:`fit` splits it, trains and writes one model folder.
:func:`run_training` is both; cross-validation prepares once and fits every fold.  Where the
work runs is the :class:`~cultural_music.features.jobs.Runner` the CLI chose.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cultural_music.atomic import atomic_write_json, ensure_dir
from cultural_music.config import Config
from cultural_music.data.dataset import DatasetScan, Recording, Skipped, read_groups_csv, scan_folder, split_recordings, write_split_csv
from cultural_music.errors import DatasetError, OutputError
from cultural_music.features.cache import FeatureCache, default_cache_dir
from cultural_music.features.extract import ExtractResult, extract_features
from cultural_music.features.jobs import LocalRunner, Runner, default_workers
from cultural_music.models import applicable_settings, build_model
from cultural_music.training.artifact import SPLIT_FILE, file_sha256, save_artifact
from cultural_music.training.clip_dataset import ClipDataset, build_items
from cultural_music.training.loop import CHECKPOINT_NAME, train_model

__all__ = ["TrainingRun", "PreparedData", "Refit", "prepare", "prepare_run", "fit", "run_training", "summary_table",
           "choose_and_prepare"]

Assign = Callable[[list[Recording]], list[Recording]]


@dataclass
class TrainingRun:
    """What :func:`run_training` / :func:`fit` produced."""

    model_dir: Path
    classes: list[str]
    recordings: list[Recording]
    skipped: list[Skipped]
    history: list[dict[str, float]]
    best_epoch: int


@dataclass
class PreparedData:
    """A data folder ready to split: the scan (``skipped`` also lists files that failed to
    decode), the usable recordings (``split`` not set; identical audio shares a group), their
    clean features, and the settings, cache and runner that made them."""

    scan: DatasetScan
    recordings: list[Recording]
    features: ExtractResult
    cfg: Config
    cache: FeatureCache
    runner: Runner
    progress: bool = True
    log: Callable[[str], Any] = field(default=print, repr=False)
    model_choice: dict[str, Any] | None = None  #: model.json's ``model_choice`` (``--model auto``), if made

    def assign(self, assign_split: Assign | None = None) -> list[Recording]:
        """The usable recordings with ``split`` set: ``assign_split`` (cross-validation's fold
        assignment), default :func:`split_recordings` with the config's fractions and seed."""
        cfg, usable = self.cfg, list(self.recordings)
        if assign_split is None:
            return split_recordings(usable, val_fraction=cfg.train.val_fraction, test_fraction=cfg.train.test_fraction, seed=cfg.train.seed)
        return assign_split(usable)

    def split(self, assign_split: Assign | None = None) -> tuple[list[Recording], ExtractResult, list[Skipped]]:
        """Split by group (:meth:`assign`) and add the augmented variants of the training files (cached).

        Returns the split recordings, their features (clean entries, and augmented ones for
        training files) and every skipped file; ``self`` is not changed.
        """
        cfg, recordings = self.cfg, self.assign(assign_split)
        clean = self.features
        features = ExtractResult(dict(clean.entries), list(clean.skipped), clean.n_decoded, clean.n_indexed)
        skipped = list(self.scan.skipped)
        if cfg.augment.n_variants > 0:
            sides = ("train", "val") if cfg.train.tune else ("train",)  # a tuned head's training side is train + val
            train_recs = [r for r in recordings if r.split in sides]
            aug = extract_features(train_recs, cfg, self.cache, augment_splits=sides, runner=self.runner, progress=self.progress,
                                   desc="augmented variants")
            skipped.extend(aug.skipped)
            features.entries.update(aug.entries)
            features.n_decoded += aug.n_decoded
        return recordings, features, skipped


def prepare(
    data_dir: str | Path,
    cfg: Config,
    *,
    cache: FeatureCache | None = None,
    runner: Runner | None = None,
    groups_csv: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> PreparedData:
    """Scan ``data_dir`` (with the optional group CSV), extract its clean features (cached) and
    keep the files that decoded; warnings (scan, identical audio, skipped files) are logged once.

    ``cache`` defaults to the default cache folder, ``runner`` to a :class:`LocalRunner` on
    every core.  Raises :class:`DatasetError` when a class has no usable file or fewer than 2
    classes remain.
    """
    cache = FeatureCache(default_cache_dir()) if cache is None else cache
    runner = LocalRunner() if runner is None else runner
    scan = scan_folder(data_dir)
    if groups_csv is not None:
        scan = read_groups_csv(groups_csv, scan)
    for w in scan.warnings:
        log(f"warning: {w}")
    clean = extract_features(scan.recordings, cfg, cache, augment_splits=(), runner=runner, progress=progress,
                             desc="decode + features")
    scan.skipped.extend(clean.skipped)
    if scan.skipped:
        log(f"skipped {len(scan.skipped)} file(s):\n" + format_skipped(scan.skipped))
    usable = [r for r in scan.recordings if r.rel_path in clean.entries]
    _check_duplicates(usable, clean, log)
    empty = sorted(set(scan.classes) - {r.label for r in usable})
    if empty:
        raise DatasetError(f"class(es) with no usable file: {', '.join(empty)} (see the skipped files above)")
    if len({r.label for r in usable}) < 2:
        raise DatasetError("fewer than 2 classes have usable files")
    return PreparedData(scan, usable, clean, cfg, cache, runner, progress, log)


def choose_and_prepare(prepared: PreparedData, candidates: dict[str, Config], assign_split: Assign | None = None
                       ) -> tuple[PreparedData, Assign]:
    """``--model auto``: choose among ``candidates`` (name -> config) on the train split of
    ``prepared.assign(assign_split)`` (:func:`~cultural_music.training.auto.choose_model`; the
    validation and test recordings are not read), log the comparison, and return the winner's
    prepared data (its config, its clean features of every recording, ``model_choice`` set) with
    an assigner that gives :func:`fit` exactly the split the choice was made on."""
    from cultural_music.training.auto import choose_model, format_choice

    recordings = prepared.assign(assign_split)
    train = [r for r in recordings if r.split == "train"]
    prepared.log(f"choosing the model among {', '.join(candidates)} on the train split ({len(train)} recordings)")
    choice = choose_model(train, candidates, cache=prepared.cache, runner=prepared.runner, seed=prepared.cfg.train.seed,
                          progress=prepared.progress, log=prepared.log)
    summary = choice.summary()
    prepared.log(format_choice(summary))
    won = prepared
    if choice.cfg != prepared.cfg:
        feats = extract_features(prepared.recordings, choice.cfg, prepared.cache, augment_splits=(), runner=prepared.runner,
                                 progress=prepared.progress, desc=f"decode + features ({choice.winner})")
        if feats.skipped:
            prepared.log(f"skipped {len(feats.skipped)} file(s):\n" + format_skipped(feats.skipped))
        usable = [r for r in prepared.recordings if r.rel_path in feats.entries]
        scan = replace(prepared.scan, skipped=prepared.scan.skipped + feats.skipped)
        won = replace(prepared, scan=scan, recordings=usable, features=feats, cfg=choice.cfg)
    keep = {r.rel_path: r for r in recordings}

    def same_split(usable: list[Recording]) -> list[Recording]:
        return [keep[r.rel_path] for r in usable if r.rel_path in keep]

    return replace(won, model_choice=summary), same_split


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
    runner: Runner | None = None,
    resume: bool = False,
    assign_split: Assign | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> TrainingRun:
    """Train a model on a folder-per-class data set and write the model folder: :func:`prepare_run`
    then :func:`fit` (no refit: ``evaluation.deploy.train_and_deploy`` adds the held-out
    evaluation and the refit on every file, as ``cultural-music train`` does).

    ``runner`` runs the feature jobs and the training (default: a :class:`LocalRunner` of
    ``workers`` processes, default every core).  ``cluster.runner.RayRunner`` (docs/cluster.md)
    extracts with Ray tasks and trains data-parallel on its workers (except a full-batch L-BFGS
    head, which trains in this process in seconds); data, cache and ``out_dir`` must then be at
    the same path on every node.  See :func:`fit` for what is written where.
    """
    prepared = prepare_run(data_dir, out_dir, cfg, groups_csv=groups_csv, cache_dir=cache_dir, workers=workers, runner=runner,
                           progress=progress, log=log)
    return fit(prepared, out_dir, assign_split=assign_split, resume=resume)


def prepare_run(data_dir: str | Path, out_dir: str | Path, cfg: Config, *, groups_csv: str | Path | None = None,
                cache_dir: str | Path | None = None, workers: int | None = None, runner: Runner | None = None,
                progress: bool = True, log: Callable[[str], Any] = print) -> PreparedData:
    """Check the settings and ``out_dir`` before anything is decoded or written, then :func:`prepare`."""
    from cultural_music.models.res_cnn import check_input_size

    check_input_size(cfg)
    ensure_dir(_check_out_dir(Path(out_dir)))
    runner = LocalRunner(workers) if runner is None else runner
    torch.set_num_threads(default_workers())
    return prepare(data_dir, cfg, cache=FeatureCache(cache_dir or default_cache_dir()), runner=runner,
                   groups_csv=groups_csv, progress=progress, log=log)


def fit(prepared: PreparedData, out_dir: str | Path, *, assign_split: Assign | None = None, resume: bool = False,
        refit: Refit | None = None) -> TrainingRun:
    """Split ``prepared`` (``assign_split``: see :meth:`PreparedData.split`), train, write the model folder.

    Writes ``model.safetensors``, ``model.json``, ``history.json``, ``split.csv`` and the
    training-curve plots into ``<out_dir>.tmp-<pid>`` beside ``out_dir`` and swaps that folder in
    only when complete (an existing model folder stays intact until then; the temp folder is
    removed on failure).  ``checkpoint.pt`` is kept in ``out_dir`` during training, where
    ``resume`` finds it; it goes with the old folder when the new one is in place.  ``refit``
    (``evaluation.deploy``): a refit on every file, keeping the measured model's split and
    held-out evaluation (see :class:`Refit`).
    """
    out = _check_out_dir(Path(out_dir))
    ensure_dir(out)  # holds checkpoint.pt during the run (beside an old model, which stays usable)
    build = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    ensure_dir(build)
    try:
        run = _fit_into(build, out, prepared, assign_split, resume, refit)
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


@dataclass
class Refit:
    """A refit on every file (``evaluation.deploy``): the measured model's calibration and
    "uncertain" threshold (``carry``), its ``split.csv`` to keep (``split_csv``), the files of its
    held-out evaluation to copy in (``keep``: names in its folder) and model.json's ``refit``."""

    carry: dict[str, Any]
    split_csv: Path
    keep: list[str]
    info: dict[str, Any]


@dataclass
class _Fitted:
    """What training produced: the config the model was fitted with, its history, the kept
    epoch, model.json's training summary and the settings fitted on held-out answers."""

    cfg: Config
    history: list[dict[str, Any]]
    best_epoch: int
    summary: dict[str, Any]
    post: dict[str, Any]


def _fit_into(out: Path, ckpt_dir: Path, prepared: PreparedData, assign_split: Assign | None, resume: bool,
              refit: Refit | None = None) -> TrainingRun:
    """The training run, writing the model folder ``out`` and checkpoints into ``ckpt_dir``."""
    log = prepared.log
    torch.set_num_threads(default_workers())
    recordings, extracted, skipped = prepared.split(assign_split)
    new = skipped[len(prepared.scan.skipped):]  # the clean-feature skips were reported by prepare
    if new:
        log(f"skipped {len(new)} file(s):\n" + format_skipped(new))
    log(summary_table(recordings, extracted))
    classes = sorted({r.label for r in recordings})
    torch.manual_seed(prepared.cfg.train.seed)
    model = build_model(prepared.cfg.train.model, n_classes=len(classes), n_rows=prepared.cfg.features.n_rows)
    done = _train(model, recordings, extracted, classes, prepared, ckpt_dir, resume, None if refit is None else refit.carry)
    if refit is None:
        write_split_csv(out / SPLIT_FILE, recordings)
    else:
        _keep_evaluation(refit, out)
    atomic_write_json(out / "history.json", done.history)
    extra = {"training": done.summary, "settings": applicable_settings(done.cfg),
             "data": _data_summary(prepared.scan.root, skipped, recordings, extracted),
             "split_sha256": file_sha256(out / SPLIT_FILE), **done.post}
    if prepared.model_choice is not None:
        extra["model_choice"] = prepared.model_choice
    if refit is not None:
        extra["refit"] = refit.info
    save_artifact(out, model, classes=classes, config=done.cfg, model_name=done.cfg.train.model, extra=extra)
    from cultural_music.metrics.plots import plot_history

    plot_history(done.history, out / "plots", best_epoch=done.best_epoch)
    return TrainingRun(out, classes, recordings, skipped, done.history, done.best_epoch)


def _keep_evaluation(refit: Refit, out: Path) -> None:
    """Copy the measured model's split.csv and held-out evaluation files into the refit folder."""
    shutil.copy2(refit.split_csv, out / SPLIT_FILE)
    src = refit.split_csv.parent
    for name in refit.keep:
        if (src / name).is_dir():  # plots: the evaluation's; the training curves are drawn afresh
            shutil.copytree(src / name, out / name, dirs_exist_ok=True)
        elif (src / name).is_file():
            ensure_dir((out / name).parent)
            shutil.copy2(src / name, out / name)


def _train(model: torch.nn.Module, recordings: list[Recording], extracted: ExtractResult, classes: list[str],
           prepared: PreparedData, ckpt_dir: Path, resume: bool, carry: dict[str, Any] | None) -> _Fitted:
    """Fit ``model``: a convex head by :func:`~cultural_music.training.head_fit.fit_convex_head`,
    anything else through the runner with early stopping on the validation split.  ``carry``
    (a refit) replaces the settings fitted on held-out answers."""
    from cultural_music.training.convex_head import convex_parts
    from cultural_music.training.loop import is_full_batch

    cfg, log = prepared.cfg, prepared.log
    if is_full_batch(cfg.train) and convex_parts(model) is not None:
        return _train_convex(model, recordings, extracted, classes, cfg, log, carry)
    train_ds = ClipDataset(build_items(recordings, extracted, classes, "train"), train=True, seed=cfg.train.seed, augment=cfg.augment)
    val_ds = ClipDataset(build_items(recordings, extracted, classes, "val"))
    log(f"training '{cfg.train.model}' on {len(train_ds)} clips, validating on {len(val_ds)} clips")
    result = prepared.runner.train(model, train_ds, val_ds, cfg.train, local=train_model, checkpoint_dir=ckpt_dir,
                                   resume=resume, log=log)
    post = carry if carry is not None else fit_on_validation(model, val_ds, extracted, cfg)
    summary = {**result.summary(), "train_clips": len(train_ds), "val_clips": len(val_ds)}
    if not len(val_ds):
        summary.update(best_val_loss=None, kept="the last epoch (no validation split: every file trained the model)")
    return _Fitted(cfg, result.history, result.best_epoch, summary, post)


def _train_convex(model: torch.nn.Module, recordings: list[Recording], extracted: ExtractResult, classes: list[str], cfg: Config,
                  log: Callable[[str], Any], carry: dict[str, Any] | None) -> _Fitted:
    """A convex head: settings chosen by group cross-validation, fitted to convergence."""
    from cultural_music.training.calibrate import fit_after_training
    from cultural_music.training.head_fit import fit_convex_head

    cf = fit_convex_head(model, recordings, extracted, classes, cfg, log)
    h = cf.history[0]
    summary = {"fit": "lbfgs", "solver": "scikit-learn LogisticRegression (lbfgs), to convergence", "C": cf.cfg.train.logreg_c,
               "class_weighting": cf.cfg.train.class_weighting, "iterations": h["iterations"], "final_train_loss": h["train_loss"],
               "train_accuracy": h["train_accuracy"], "val_loss": h["val_loss"], "val_accuracy": h["val_accuracy"],
               "held_out": cf.held_out, "fit_clips": cf.n_fit_clips}
    if carry is not None:
        post = carry
    else:
        post = fit_after_training(cf.held_logits, cf.held_labels, cf.held_rels, extracted, cf.cfg)
    if cf.search is not None:
        post = {**post, "head_search": cf.search.summary()}
    if carry is not None:
        summary["held_out"] = "none: refitted on every file (the held-out figures are in metrics.json)"
    return _Fitted(cf.cfg, cf.history, 1, summary, post)


def fit_on_validation(model: torch.nn.Module, val_ds: ClipDataset, extracted: ExtractResult, cfg: Config) -> dict[str, Any]:
    """Calibration and the "uncertain" threshold fitted on the validation split's answers
    (:func:`~cultural_music.training.calibrate.fit_after_training`)."""
    from cultural_music.training.calibrate import fit_after_training
    from cultural_music.training.loop import predict_logits

    return fit_after_training(predict_logits(model, val_ds), val_ds.labels, [it.rel_path for it in val_ds.items], extracted, cfg)


def _data_summary(root: Path, skipped: list[Skipped], recordings: list[Recording], extracted: ExtractResult) -> dict[str, Any]:
    """model.json's ``data``: the data folder, files / minutes / clips per class and split, skipped files."""
    per: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: {"files": 0, "minutes": 0.0, "clips": 0}))
    for r in recordings:
        e = extracted.entries[r.rel_path]
        cell = per[r.label][r.split]
        cell["files"] += 1
        cell["minutes"] += round(e.duration / 60.0, 4)
        cell["clips"] += e.n_clips
    return {
        "data_dir": str(root),
        "per_class": {k: dict(v) for k, v in per.items()},
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }
