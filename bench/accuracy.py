"""Group-aware cross-validation of the models on the shared real data sets (issue 9).

One experiment = one model + config overrides, trained and evaluated once per fold:
test = one fold (``--fold-column`` of ``groups.csv``, or the ``group`` column: leave one group
out), validation = a class-stratified ``train.val_fraction`` (15 %) of the remaining groups (``--val groups``) or the
next fold (``--val next-fold``, for groups that span classes such as speakers), train = the
rest.  Every fold's model folder, ``metrics.json`` and a ``summary.json`` (mean +- std of
clip- and recording-level macro-F1 and accuracy, wall times) go under ``--out``; finished folds
are skipped when the command is run again.

``--model sklearn-logreg`` (issue 16) is the baseline the default must beat: StandardScaler +
scikit-learn LogisticRegression on the default ``musicnn`` head's cached embeddings, pooled per
recording (mean + max over all its patches), C and class weight chosen by an inner GroupKFold on
the training side, refitted on train + val (``bench/baseline.py``).  ``--subsample 5,10,20,...``
is the unbalanced protocol: a seeded subset of every class (sizes from the ladder, capped), the
same for every fold and model.  ``--compare`` prints default vs baseline per protocol.
``--per-class 5,10,20 --seeds 3`` is the few-labels protocol (issue 17): per outer fold and seed,
K recordings of every class drawn from the other folds (train + val among them), the test fold
untouched; ``--per-class-table`` prints recording macro-F1 mean ± std over folds x seeds per K.

Examples (CPU, 2 cores; features cached in --cache-dir and shared by all runs)::

    python bench/accuracy.py esc10-musicnn --data ../shared/data/esc10 --fold-column fold \\
        --duration 5 --model musicnn
    python bench/accuracy.py fsdd-res-cnn --data ../shared/data/fsdd --val next-fold \\
        --duration 1 --model res-cnn --set train.epochs=30
    python bench/accuracy.py fsdd-sklearn-logreg --data ../shared/data/fsdd --val next-fold \\
        --duration 1 --model sklearn-logreg
    python bench/accuracy.py fsdd-unbal-musicnn --data ../shared/data/fsdd --val next-fold \\
        --duration 1 --model musicnn --subsample 5,10,20,40,80,160,320
    python bench/accuracy.py esc10-auto --data ../shared/data/esc10 --fold-column fold \\
        --duration 5 --model auto [--candidates all]   # the model chosen inside every fold
    python bench/accuracy.py --table      # Markdown table of every summary under --root
    python bench/accuracy.py --compare    # musicnn vs sklearn-logreg on each protocol
    python bench/accuracy.py esc10-few-musicnn --data ../shared/data/esc10 --fold-column fold \\
        --duration 5 --model musicnn --per-class 5,10,20 --seeds 3     # and --model sklearn-logreg
    python bench/accuracy.py --per-class-table
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from baseline import choose, fit, pool_recording, predict_proba, subsample

from cultural_music.atomic import atomic_write_json
from cultural_music.config import Config
from cultural_music.data.dataset import Recording
from cultural_music.models import check_config, default_config

CACHE = Path("/tmp/cm_cache")
BASELINE = "sklearn-logreg"  #: --model of the scikit-learn baseline (bench/baseline.py)
AUTO = "auto"  #: --model that chooses among --candidates inside every fold (training/auto.py)


def read_folds(groups_csv: Path, column: str) -> dict[str, str]:
    """``rel_path -> fold`` from the groups CSV."""
    with open(groups_csv, newline="", encoding="utf-8") as fh:
        return {row["path"]: row[column] for row in csv.DictReader(fh)}


def assign(recordings: list[Recording], folds: dict[str, str], test_fold: str, *, val: str, seed: int,
           val_fraction: float = 0.15) -> list[Recording]:
    """Recordings with ``split`` set for one fold (see the module docstring)."""
    from dataclasses import replace

    order = sorted(set(folds.values()), key=lambda f: (len(f), f))
    rest = [r for r in recordings if folds[r.rel_path] != test_fold]
    if val == "next-fold":
        val_fold = order[(order.index(test_fold) + 1) % len(order)]
        val_groups = {r.group for r in rest if folds[r.rel_path] == val_fold}
    else:
        by_class: dict[str, set[str]] = defaultdict(set)
        for r in rest:
            by_class[r.label].add(r.group)
        rng = np.random.default_rng([seed, len(order), order.index(test_fold)])
        val_groups = set()
        for label in sorted(by_class):
            groups = sorted(by_class[label])
            n_val = max(1, int(round(val_fraction * len(groups))))
            val_groups.update(groups[i] for i in rng.permutation(len(groups))[:n_val])
    out = []
    for r in recordings:
        side = "test" if folds[r.rel_path] == test_fold else "val" if r.group in val_groups else "train"
        out.append(replace(r, split=side))
    return out


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["train.mixup_alpha=0", ...]`` -> ``{"train": {"mixup_alpha": 0}}`` (values parsed as JSON)."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        key, _, raw = item.partition("=")
        section, _, name = key.partition(".")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[section][name] = tuple(value) if isinstance(value, list) else value
    return dict(out)


def experiment_config(args: argparse.Namespace) -> Config:
    """The run's config: the model's own settings (``sklearn-logreg``: those of the head named by
    ``--baseline-on``, default ``musicnn``, so it reads the very same cached embeddings),
    ``--duration`` and ``--set``."""
    model = getattr(args, "baseline_on", "musicnn") if args.model == BASELINE else candidate_configs(args)[0] if args.model == AUTO else args.model
    cfg = default_config(model, Config()).replace(audio={"clip_seconds": args.duration})
    sets = parse_set(args.set)
    if sets:
        cfg = cfg.replace(**sets)
    check_config(cfg)
    return cfg


def candidate_configs(args: argparse.Namespace, names_only: bool = True) -> Any:
    """``--model auto``: the candidate names (``names_only``) or name -> config (each model's own
    settings, ``--duration`` and ``--set``)."""
    from cultural_music.models import available_models
    from cultural_music.training.auto import resolve_candidates

    names = resolve_candidates(args.candidates, available_models())
    if names_only:
        return names
    sets = parse_set(args.set)
    return {n: default_config(n, Config()).replace(audio={"clip_seconds": args.duration}, **sets) for n in names}


def train_fold(args: argparse.Namespace, data: Path, fdir: Path, cfg: Config, split: Callable[..., Any], log: Callable[[str], None]) -> Any:
    """One fold's model folder: ``run_training``, or with ``--model auto`` the choice on the fold's train split first."""
    from cultural_music.training.pipeline import choose_and_prepare, fit, prepare_run, run_training

    kw = dict(groups_csv=data / "groups.csv", cache_dir=args.cache_dir, workers=args.workers, progress=False, log=log)
    if args.model != AUTO:
        return run_training(data, fdir, cfg, assign_split=split, **kw)
    prepared = prepare_run(data, fdir, cfg, **kw)
    prepared, same = choose_and_prepare(prepared, candidate_configs(args, names_only=False), split)
    return fit(prepared, fdir, assign_split=same)


def fold_split(folds: dict[str, str], fold: str, args: argparse.Namespace, cfg: Config
               ) -> Callable[[list[Recording]], list[Recording]]:
    """``recordings -> recordings with split set`` for one test fold: the ``--subsample`` subset
    (the same for every fold and every model), then :func:`assign`."""

    def split(recs: list[Recording]) -> list[Recording]:
        if args.subsample:
            keep, _ = subsample_recordings(recs, folds, args)
            recs = [r for r in recs if r.rel_path in keep]
        return assign(recs, folds, fold, val=args.val, seed=cfg.train.seed, val_fraction=cfg.train.val_fraction)

    return split


def subsample_recordings(recs: list[Recording], folds: dict[str, str], args: argparse.Namespace) -> tuple[set[str], dict[str, int]]:
    """The unbalanced protocol's kept paths and per-class counts (``bench/baseline.subsample``)."""
    return subsample([(r.rel_path, r.label, folds[r.rel_path]) for r in recs], args.subsample, seed=args.subsample_seed)


def start_experiment(args: argparse.Namespace) -> tuple[Path, dict[str, str], Config, Path, list[str], Callable[[str], None]]:
    """Common set-up: data folder, folds, config, output folder (``config.json``), folds to run, log."""
    data = Path(args.data).resolve()
    folds = read_folds(data / "groups.csv", args.fold_column)
    cfg = experiment_config(args)
    out = args.root / args.name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"config": cfg.to_dict(), "model": args.model, "data": str(data),
                                            "fold_column": args.fold_column, "val": args.val, "duration": args.duration,
                                            "subsample": args.subsample, "subsample_seed": args.subsample_seed,
                                            "baseline_fit": args.baseline_fit if args.model == BASELINE else None,
                                            **({"per_class": args.per_class, "seeds": args.seeds} if getattr(args, "per_class", None) else {})})
    fold_ids = sorted(set(folds.values()), key=lambda f: (len(f), f))
    if args.folds:
        fold_ids = [f for f in fold_ids if f in args.folds.split(",")]
    logf = open(out / "log.txt", "a", encoding="utf-8")

    def log(msg: str) -> None:
        logf.write(msg + "\n")
        logf.flush()

    return data, folds, cfg, out, fold_ids, log


def run_experiment(args: argparse.Namespace) -> dict[str, Any]:
    """Every fold of one experiment (finished folds skipped); returns :func:`summarise`."""
    from cultural_music.evaluation.evaluate import run_evaluation
    if args.model == BASELINE:
        return run_baseline(args)
    data, folds, cfg, out, fold_ids, log = start_experiment(args)
    for fold, fdir in pending_folds(out, fold_ids, log):
        t0 = time.perf_counter()
        run = train_fold(args, data, fdir, cfg, fold_split(folds, fold, args, cfg), log)
        wall = time.perf_counter() - t0
        m = run_evaluation(fdir, cache_dir=args.cache_dir, workers=args.workers, progress=False, plots=False, log=log).metrics
        rec = {
            "fold": fold, "clip_macro_f1": m["clip"]["macro_f1"], "clip_accuracy": m["clip"]["accuracy"],
            "rec_macro_f1": m["recording"]["macro_f1"], "rec_accuracy": m["recording"]["accuracy"],
            "n_test": m["n"], "n_test_clips": m["n_clips"], "best_epoch": run.best_epoch, "epochs": len(run.history),
            "train_seconds": float(sum(h["seconds"] for h in run.history)), "run_seconds": wall,
            "model": json.loads((fdir / "model.json").read_text())["model"]["name"],
        }
        save_fold(fdir, rec, log)
        (fdir / "model.safetensors").unlink(missing_ok=True) if args.drop_weights else None
    return summarise(out)


def run_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """The ``sklearn-logreg`` row: every fold of :func:`baseline_fold` on the default head's
    cached embeddings, the same recordings, folds and split assignment as the other rows."""
    from cultural_music.features.cache import FeatureCache
    from cultural_music.features.jobs import LocalRunner
    from cultural_music.training.pipeline import prepare

    data, folds, cfg, out, fold_ids, log = start_experiment(args)
    prepared = prepare(data, cfg, cache=FeatureCache(args.cache_dir), runner=LocalRunner(args.workers),
                       groups_csv=data / "groups.csv", progress=False, log=log)
    usable, extracted = prepared.recordings, prepared.features
    for fold, fdir in pending_folds(out, fold_ids, log):
        t0 = time.perf_counter()
        recs = fold_split(folds, fold, args, cfg)(usable)
        rec = {"fold": fold, **baseline_fold(recs, extracted, fit_on=tuple(args.baseline_fit.split("+"))), "run_seconds": time.perf_counter() - t0}
        save_fold(fdir, rec, log)
    return summarise(out)


def pending_folds(out: Path, fold_ids: list[str], log: Callable[[str], None]) -> Iterator[tuple[str, Path]]:
    """``(fold, out/fold-<fold>)`` for each fold not finished yet (no ``fold.json``), logged as it starts."""
    for fold in fold_ids:
        fdir = out / f"fold-{fold}"
        if not (fdir / "fold.json").is_file():
            log(f"=== fold {fold}")
            yield fold, fdir


def save_fold(fdir: Path, rec: dict[str, Any], log: Callable[[str], None]) -> None:
    """Write a finished fold's record to ``fdir/fold.json`` (atomically: the fold counts as done) and log it."""
    fdir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(fdir / "fold.json", rec)
    log(json.dumps(rec))


def baseline_fold(recs: list[Recording], extracted: Any, *, fit_on: tuple[str, ...] = ("train", "val")) -> dict[str, Any]:
    """Fit the baseline on the fold's ``fit_on`` recordings (default train + val; C and class
    weight by inner group-aware CV there, never on the test fold), score its test recordings and clips with ``classification_metrics``."""
    from cultural_music.metrics.classification import classification_metrics

    classes = sorted({r.label for r in recs})
    index = {c: i for i, c in enumerate(classes)}
    train = [r for r in recs if r.split in fit_on]
    test = [r for r in recs if r.split == "test"]
    emb = {r.rel_path: np.load(extracted.entries[r.rel_path].clean_path) for r in recs}
    x = np.stack([pool_recording(emb[r.rel_path]) for r in train])
    y = np.array([index[r.label] for r in train])
    t0 = time.perf_counter()
    choice = choose(x, y, [r.group for r in train], len(classes))
    model = fit(x, y, choice.c, choice.weight)
    seconds = time.perf_counter() - t0
    y_rec = np.array([index[r.label] for r in test])
    m_rec = classification_metrics(y_rec, predict_proba(model, np.stack([pool_recording(emb[r.rel_path]) for r in test]), len(classes)), classes)
    clips = [(index[r.label], pool_recording(e[None])) for r in test for e in emb[r.rel_path]]
    m_clip = classification_metrics(np.array([c[0] for c in clips]), predict_proba(model, np.stack([c[1] for c in clips]), len(classes)), classes)
    return {
        "clip_macro_f1": m_clip["macro_f1"], "clip_accuracy": m_clip["accuracy"],
        "rec_macro_f1": m_rec["macro_f1"], "rec_accuracy": m_rec["accuracy"], "n_test": m_rec["n"], "n_test_clips": len(clips),
        "n_train": len(train), "best_epoch": None, "epochs": 1, "train_seconds": seconds,
        "C": choice.c, "class_weight": choice.weight or "none", "inner_splits": choice.n_splits,
        "inner_macro_f1": [{"C": c, "class_weight": w or "none", "macro_f1": f} for (c, w), f in choice.scores.items()],
    }


def summarise(out: Path) -> dict[str, Any]:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("fold-*/fold.json"))]
    summary: dict[str, Any] = {"name": out.name, "folds": len(rows), "per_fold": rows}
    for key in ("clip_macro_f1", "clip_accuracy", "rec_macro_f1", "rec_accuracy", "train_seconds", "run_seconds", "epochs"):
        vals = np.array([r[key] for r in rows], dtype=float)
        summary[key] = {"mean": float(vals.mean()) if len(vals) else float("nan"), "std": float(vals.std()) if len(vals) else float("nan")}
    atomic_write_json(out / "summary.json", summary)
    return summary


def table(root: Path) -> str:
    lines = ["| experiment | folds | clip macro-F1 | recording macro-F1 | clip accuracy | training s / fold | epochs |",
             "|---|---|---|---|---|---|---|"]
    for d in sorted(x for x in root.iterdir() if x.is_dir() and list(x.glob("fold-*/fold.json"))):
        s = summarise(d)
        f = lambda k, n=3: f"{s[k]['mean']:.{n}f} ± {s[k]['std']:.{n}f}"  # noqa: E731
        lines.append(f"| {d.name} | {s['folds']} | {f('clip_macro_f1')} | {f('rec_macro_f1')} | {f('clip_accuracy')} | "
                     f"{s['train_seconds']['mean']:.0f} | {s['epochs']['mean']:.1f} |")
    return "\n".join(lines)


def protocols(root: Path, models: tuple[str, ...]) -> dict[tuple, dict[str, dict[str, float]]]:
    """``protocol -> model -> {fold: recording macro-F1}`` of the experiments under ``root`` whose
    model is one of ``models`` (a protocol: data folder, fold column, val, clip seconds, subsample)."""
    rows: dict[tuple, dict[str, dict[str, float]]] = defaultdict(dict)
    for d in sorted(x for x in root.iterdir() if (x / "config.json").is_file() and list(x.glob("fold-*/fold.json"))):
        c = json.loads((d / "config.json").read_text())
        model = c.get("model", c["config"]["train"]["model"])  # config.json files of older runs lack "model"
        if model not in models or (c.get("baseline_fit") or "train+val") != "train+val":
            continue  # the train-only baseline is a diagnostic (--table), not the row the default must beat
        key = (Path(c["data"]).name, c["fold_column"], c["val"], c["config"]["audio"]["clip_seconds"],
               tuple(c.get("subsample") or ()), c.get("subsample_seed") or 0)
        folds = [json.loads(p.read_text()) for p in sorted(d.glob("fold-*/fold.json"))]
        rows[key][model] = {r["fold"]: float(r["rec_macro_f1"]) for r in folds}
    return dict(rows)


def compare(root: Path, *, default: str = "musicnn", margin: float = 0.01) -> str:
    """Markdown: per protocol the recording macro-F1 (mean ± std over the folds both finished)
    of the ``default`` model and of the baseline, and whether default >= baseline - ``margin``."""
    lines = [f"| data | folds | subsample | {default} rec. macro-F1 | {BASELINE} rec. macro-F1 | difference | default >= baseline - {margin} |",
             "|---|---|---|---|---|---|---|"]
    for key, pair in sorted(protocols(root, (default, BASELINE)).items(), key=lambda kv: str(kv[0])):
        a, b = pair.get(default, {}), pair.get(BASELINE, {})
        common = sorted(set(a) & set(b)) if a and b else sorted(a or b)
        va, vb = (np.array([m[f] for f in common]) if m else None for m in (a, b))
        f = lambda v: f"{v.mean():.3f} ± {v.std():.3f}" if v is not None else ""  # noqa: E731
        diff = float(va.mean() - vb.mean()) if va is not None and vb is not None else None
        verdict = "" if diff is None else ("yes" if diff >= -margin else "**no**")
        lines.append(f"| {key[0]} | {key[1]} ({len(common)}) | {','.join(map(str, key[4])) or 'all'} | {f(va)} | {f(vb)} | "
                     f"{'' if diff is None else f'{diff:+.3f}'} | {verdict} |")
    return "\n".join(lines)


def per_class_subset(recs: list[Recording], folds: dict[str, str], test_fold: str, k: int, seed: int) -> list[Recording]:
    """The few-labels protocol (``--per-class``): the test fold untouched, and of the other folds
    ``k`` recordings per class (fewer where a class has fewer), drawn in one seeded order per
    ``(seed, test fold)``, so the ``k = 5`` subset lies inside the ``k = 10`` one of the same seed."""
    order = sorted(set(folds.values()), key=lambda f: (len(f), f))
    rng = np.random.default_rng([seed, order.index(test_fold)])
    by_class: dict[str, list[str]] = defaultdict(list)
    for r in sorted(recs, key=lambda r: r.rel_path):
        if folds[r.rel_path] != test_fold:
            by_class[r.label].append(r.rel_path)
    keep: set[str] = set()
    for label in sorted(by_class):
        paths = by_class[label]
        keep.update(paths[i] for i in rng.permutation(len(paths))[:k])
    return [r for r in recs if folds[r.rel_path] == test_fold or r.rel_path in keep]


def per_class_split(folds: dict[str, str], fold: str, k: int, seed: int, args: argparse.Namespace, cfg: Config
                    ) -> Callable[[list[Recording]], list[Recording]]:
    """``recordings -> recordings with split set``: :func:`per_class_subset`, then :func:`assign`
    (train / val among the kept ones, as in every other protocol)."""

    def split(recs: list[Recording]) -> list[Recording]:
        kept = per_class_subset(recs, folds, fold, k, seed)
        return assign(kept, folds, fold, val=args.val, seed=cfg.train.seed, val_fraction=cfg.train.val_fraction)

    return split


def run_per_class(args: argparse.Namespace) -> dict[str, Any]:
    """Every (K, seed, fold) of the few-labels protocol for one model; features prepared once,
    each fit scored on its untouched test fold (finished runs skipped); returns
    :func:`summarise_per_class`."""
    from cultural_music.features.cache import FeatureCache
    from cultural_music.features.jobs import LocalRunner
    from cultural_music.training.pipeline import prepare

    data, folds, cfg, out, fold_ids, log = start_experiment(args)
    prepared = prepare(data, cfg, cache=FeatureCache(args.cache_dir), runner=LocalRunner(args.workers),
                       groups_csv=data / "groups.csv", progress=False, log=log)
    for k in args.per_class:
        for seed in range(args.seeds):
            for fold in fold_ids:
                fdir = out / f"k{k}" / f"seed-{seed}" / f"fold-{fold}"
                if (fdir / "fold.json").is_file():
                    continue
                log(f"=== K={k} seed {seed} fold {fold}")
                t0 = time.perf_counter()
                split = per_class_split(folds, fold, k, seed, args, cfg)
                if args.model == BASELINE:
                    fdir.mkdir(parents=True, exist_ok=True)
                    rec = baseline_fold(split(prepared.recordings), prepared.features)
                else:
                    rec = _package_fold(prepared, fdir, split)
                rec = {**rec, "k": k, "seed": seed, "fold": fold, "run_seconds": time.perf_counter() - t0}
                save_fold(fdir, rec, log)
    return summarise_per_class(out)


def _package_fold(prepared: Any, fdir: Path, split: Callable[[list[Recording]], list[Recording]]) -> dict[str, Any]:
    """Fit a package model on one split of ``prepared`` and score its test recordings as saved
    (as ``evaluation.cv`` does); the fold's row."""
    from cultural_music.evaluation.evaluate import evaluate_recordings
    from cultural_music.features.extract import ExtractResult
    from cultural_music.training.artifact import load_artifact
    from cultural_music.training.pipeline import fit

    run = fit(prepared, fdir, assign_split=split)
    m = evaluate_recordings(load_artifact(fdir), run.recordings, ExtractResult(dict(prepared.features.entries)), fdir,
                            plots=False, report=False).metrics
    sides = [r.split for r in run.recordings]
    return {"clip_macro_f1": m["clip"]["macro_f1"], "clip_accuracy": m["clip"]["accuracy"], "rec_macro_f1": m["recording"]["macro_f1"],
            "rec_accuracy": m["recording"]["accuracy"], "n_test": m["n"], "n_test_clips": m["n_clips"],
            "n_train": sides.count("train") + sides.count("val"), "epochs": len(run.history),
            "train_seconds": float(sum(h["seconds"] for h in run.history))}


def summarise_per_class(out: Path) -> dict[str, Any]:
    """``summary.json`` of a few-labels experiment: per K, mean +- std over folds x seeds."""
    summary: dict[str, Any] = {"name": out.name, "per_class": {}}
    for kdir in sorted(out.glob("k*"), key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else -1):
        rows = [json.loads(p.read_text()) for p in sorted(kdir.glob("seed-*/fold-*/fold.json"))]
        if not rows:
            continue
        cell: dict[str, Any] = {"runs": len(rows), "seeds": len({r["seed"] for r in rows}), "folds": len({r["fold"] for r in rows})}
        for key in ("rec_macro_f1", "clip_macro_f1", "rec_accuracy", "run_seconds"):
            vals = np.array([r[key] for r in rows], dtype=float)
            cell[key] = {"mean": float(vals.mean()), "std": float(vals.std())}
        summary["per_class"][kdir.name[1:]] = cell
    atomic_write_json(out / "summary.json", summary)
    return summary


def per_class_table(root: Path) -> str:
    """Markdown: one row per few-labels experiment under ``root``, recording macro-F1 mean ± std
    (folds x seeds) per K."""
    exps = []
    for d in sorted(x for x in root.iterdir() if (x / "config.json").is_file()):
        c = json.loads((d / "config.json").read_text())
        if c.get("per_class"):
            exps.append((d, c, summarise_per_class(d)["per_class"]))
    ks = sorted({int(k) for _, _, s in exps for k in s})
    lines = ["| experiment | model | " + " | ".join(f"K = {k}" for k in ks) + " | runs (seeds x folds) |",
             "|---|---|" + "---|" * len(ks) + "---|"]
    for d, c, s in exps:
        cells = [f"{s[str(k)]['rec_macro_f1']['mean']:.3f} ± {s[str(k)]['rec_macro_f1']['std']:.3f}" if str(k) in s else "" for k in ks]
        runs = ", ".join(f"{v['seeds']}x{v['folds']}" for v in s.values())
        lines.append(f"| {d.name} | {c['model']} | " + " | ".join(cells) + f" | {runs} |")
    return "\n".join(lines)


def add_per_class_args(ap: argparse.ArgumentParser) -> None:
    """The few-labels options (issue 17, item 6)."""
    ap.add_argument("--per-class", type=lambda v: [int(x) for x in v.split(",")], default=None, metavar="5,10,20",
                    help="few-labels protocol: K training recordings per class (seeded; the test fold untouched)")
    ap.add_argument("--seeds", type=int, default=3, help="--per-class: subsets drawn per K and fold (seeds 0..S-1)")
    ap.add_argument("--per-class-table", action="store_true", help="print the few-labels table of every experiment and exit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="experiment name (folder under --root)")
    ap.add_argument("--data", help="data folder with groups.csv")
    ap.add_argument("--model", default="seed-cnn", help=f"a model of the package, or {BASELINE!r} (bench/baseline.py)")
    ap.add_argument("--candidates", default=None, help="with --model auto: comma-separated models, or 'all' (adds res-cnn)")
    ap.add_argument("--duration", type=float, default=5.0, help="clip length in seconds")
    ap.add_argument("--fold-column", default="group", help="groups.csv column that defines the folds")
    ap.add_argument("--folds", default="", help="comma-separated subset of folds to run")
    ap.add_argument("--val", choices=("groups", "next-fold"), default="groups")
    ap.add_argument("--subsample", type=lambda v: [int(x) for x in v.split(",")], default=None, metavar="5,10,20,...",
                    help="unbalanced protocol: keep a seeded subset, class sizes from this ladder (capped; the last repeats)")
    ap.add_argument("--baseline-fit", choices=("train+val", "train"), default="train+val",
                    help=f"{BASELINE}: the recordings it is tuned and fitted on (train = what the default head trains on)")
    ap.add_argument("--baseline-on", default="musicnn", metavar="MODEL",
                    help=f"{BASELINE}: the embedding model whose cached embeddings it reads (musicnn, yamnet, fusion)")
    ap.add_argument("--subsample-seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="config override section.field=value (repeatable)")
    ap.add_argument("--root", type=Path, default=Path("/tmp/cm_bench"))
    ap.add_argument("--cache-dir", type=Path, default=CACHE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--drop-weights", action="store_true", help="delete each fold's weights after evaluation")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of all experiments and exit")
    ap.add_argument("--compare", action="store_true", help="print musicnn vs sklearn-logreg per protocol and exit")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy machine)")
    add_per_class_args(ap)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_threads = lambda n: None  # keep it: the pipeline would set one per core
    if args.table:
        print(table(args.root))
        return
    if args.compare:
        print(compare(args.root))
        return
    if args.per_class_table:
        print(per_class_table(args.root))
        return
    if args.per_class:
        print(json.dumps(run_per_class(args)["per_class"], indent=1))
        return
    s = run_experiment(args)
    print(json.dumps({k: v for k, v in s.items() if k != "per_fold"}, indent=1))


if __name__ == "__main__":
    main()
