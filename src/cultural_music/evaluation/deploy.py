"""Measure on a split, deploy on everything: train, evaluate on the sealed test split, refit.

1. The model is trained on the train split (validation: early stopping, calibration; a convex
   head chooses its settings by group cross-validation on train + val) and written to ``out``.
2. It is scored on the sealed test split it never saw (``metrics.json``, ``report.html``,
   ``test_predictions.csv``, plots): the numbers a user can trust.
3. The deployed model is fitted again on *every* usable file (train + val + test) with the
   settings chosen in step 1 (a convex head: the chosen C and class weighting; an epoch-trained
   model: the kept number of epochs, over the larger set, the last epoch kept).  Its folder keeps
   the held-out evaluation of step 2 and the measured ``split.csv``; calibration and the
   "uncertain" threshold are those fitted on held-out answers in step 1.  model.json's
   ``refit`` and the report say so.

``refit=False`` stops after step 1 (the behaviour before refitting existed; ``evaluate`` then
scores the test split afresh).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cultural_music.config import Config
from cultural_music.data.dataset import Recording
from cultural_music.training.artifact import SPLIT_FILE, load_artifact, read_meta
from cultural_music.training.pipeline import PreparedData, Refit, TrainingRun, choose_and_prepare, fit

__all__ = ["train_and_deploy", "measure", "score_held_out", "refit_on_everything", "HELD_OUT_FILES"]

#: files of the held-out evaluation kept in the refitted folder (names relative to it); the
#: training curves (plots/accuracy.png, plots/loss.png) are the deployed model's own
HELD_OUT_FILES = ["metrics.json", "test_predictions.csv", "report.html", "plots"]


def train_and_deploy(prepared: PreparedData, out_dir: str | Path, *, refit: bool = True, resume: bool = False,
                     plots: bool = True, report: bool = True, candidates: dict[str, Config] | None = None
                     ) -> tuple[TrainingRun, dict[str, Any] | None]:
    """Steps 1-3 of the module docstring; returns the run of the model now in ``out_dir`` and
    the held-out metrics (``None`` with ``refit=False``).  ``candidates`` (``--model auto``:
    name -> config) first chooses the model on the train split
    (:func:`~cultural_music.training.pipeline.choose_and_prepare`); the refit keeps the winner."""
    assign = None
    if candidates:
        prepared, assign = choose_and_prepare(prepared, candidates)
    if not refit:
        return fit(prepared, out_dir, resume=resume, assign_split=assign), None
    run, metrics = measure(prepared, out_dir, resume=resume, plots=plots, report=report, assign_split=assign)
    return refit_on_everything(prepared, run), metrics


def measure(prepared: PreparedData, out_dir: str | Path, *, resume: bool = False, plots: bool = True,
            report: bool = True, assign_split: Any = None) -> tuple[TrainingRun, dict[str, Any]]:
    """Steps 1 and 2: train on the train split (``assign_split``: see ``fit``) into ``out_dir``,
    then :func:`score_held_out`."""
    run = fit(prepared, out_dir, resume=resume, assign_split=assign_split)
    return run, score_held_out(prepared, run, plots=plots, report=report)


def score_held_out(prepared: PreparedData, run: TrainingRun, *, plots: bool = True, report: bool = True) -> dict[str, Any]:
    """Step 2: score the sealed test split of the model ``run`` wrote, in its folder (metrics.json
    says the refit of step 3 follows); returns the metrics."""
    from cultural_music.evaluation.evaluate import evaluate_recordings

    art = load_artifact(run.model_dir)
    prepared.log("scoring the sealed test split (the numbers to trust: these files trained nothing yet)")
    ev = evaluate_recordings(art, run.recordings, prepared.features, run.model_dir, plots=plots, report=report,
                             deployed=_deployed_note(run.recordings, art.meta))
    prepared.log(f"held-out test split: recording accuracy {ev.metrics['accuracy']:.4f}, macro-F1 "
                 f"{ev.metrics['macro_f1']:.4f} ({ev.metrics['n']} recordings)")
    return ev.metrics


def refit_on_everything(prepared: PreparedData, measured: TrainingRun) -> TrainingRun:
    """Step 3: fit the deployed model on every usable file with the settings ``measured`` chose,
    keeping its held-out evaluation and split (the measured folder stays in place until the
    refitted one is complete: :func:`~cultural_music.training.pipeline.fit` swaps it in)."""
    meta = read_meta(measured.model_dir)
    note = _deployed_note(measured.recordings, meta)
    plan = Refit(carry={k: meta[k] for k in ("calibration", "uncertain", "head_search") if k in meta},
                 split_csv=measured.model_dir / SPLIT_FILE, keep=HELD_OUT_FILES, info=note)
    prepared.log(f"refitting on every file ({note['files']} recordings: train + val + test) with the settings chosen above")
    return fit(replace(prepared, cfg=_refit_config(prepared, meta)), measured.model_dir, assign_split=_everything_trains,
               refit=plan)


def _everything_trains(recordings: list[Recording]) -> list[Recording]:
    """Every usable recording in the train split (the deployed model sees all labels)."""
    return [replace(r, split="train") for r in recordings]


def _deployed_note(recordings: list[Recording], meta: dict[str, Any]) -> dict[str, Any]:
    """model.json's ``refit`` and metrics.json's ``deployed``: what the measured model (``meta``:
    its model.json) and the deployed weights saw."""
    counts = {s: sum(r.split == s for r in recordings) for s in ("train", "val", "test")}
    both = str(meta.get("training", {}).get("held_out", "")).startswith("out-of-fold")
    measured = (f"the train and val splits ({counts['train'] + counts['val']} files; settings chosen by group "
                "cross-validation there)" if both else f"the train split ({counts['train']} files; val: {counts['val']})")
    return {"trained_on": "every usable file: the train, val and test splits of split.csv",
            "files": len(recordings), "files_per_split": counts, "measured_model_trained_on": measured,
            "metrics_from": "the model trained without the test split, scored on it before the refit "
                            "(metrics.json, report.html); the deployed weights have since seen those test files"}


def _refit_config(prepared: PreparedData, meta: dict[str, Any]) -> Any:
    """The settings chosen by the measured run: a convex head's fitted config as saved (its C
    and class weighting, no search); an epoch-trained model's kept epoch count, no early stop."""
    from cultural_music.config import Config

    saved = Config.from_saved(meta["config"])
    cfg = prepared.cfg.replace(train={"logreg_c": saved.train.logreg_c, "class_weighting": saved.train.class_weighting,
                                      "tune": ()})
    best = meta.get("training", {}).get("best_epoch")
    if meta.get("training", {}).get("fit") != "lbfgs" and best:
        cfg = cfg.replace(train={"epochs": int(best), "patience": int(best) + 1})
    return cfg
