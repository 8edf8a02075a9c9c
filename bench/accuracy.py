"""Group-aware cross-validation of the models on the shared real data sets (issue 9).

One experiment = one model + config overrides, trained and evaluated once per fold:
test = one fold (``--fold-column`` of ``groups.csv``, or the ``group`` column: leave one group
out), validation = a class-stratified ``train.val_fraction`` (15 %) of the remaining groups (``--val groups``) or the
next fold (``--val next-fold``, for groups that span classes such as speakers), train = the
rest.  Every fold's model folder, ``metrics.json`` and a ``summary.json`` (mean +- std of
clip- and recording-level macro-F1 and accuracy, wall times) go under ``--out``; finished folds
are skipped when the command is run again.

Examples (CPU, 2 cores; features cached in --cache-dir and shared by all runs)::

    python bench/accuracy.py esc10-musicnn --data ../shared/data/esc10 --fold-column fold \\
        --duration 5 --model musicnn
    python bench/accuracy.py fsdd-res-cnn --data ../shared/data/fsdd --val next-fold \\
        --duration 1 --model res-cnn --set train.epochs=30
    python bench/accuracy.py --table      # Markdown table of every summary under --root
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cultural_music.atomic import atomic_write_json
from cultural_music.config import Config
from cultural_music.data.dataset import Recording
from cultural_music.models import check_config, default_config

CACHE = Path("/tmp/cm_cache")


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


def run_experiment(args: argparse.Namespace) -> dict[str, Any]:
    from cultural_music.evaluation.evaluate import evaluate_model
    from cultural_music.training.pipeline import run_training

    data = Path(args.data).resolve()
    groups_csv = data / "groups.csv"
    folds = read_folds(groups_csv, args.fold_column)
    cfg = default_config(args.model, Config()).replace(audio={"clip_seconds": args.duration})
    sets = parse_set(args.set)
    if sets:
        cfg = cfg.replace(**sets)
    check_config(cfg)
    out = args.root / args.name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"config": cfg.to_dict(), "data": str(data), "fold_column": args.fold_column, "val": args.val})
    fold_ids = sorted(set(folds.values()), key=lambda f: (len(f), f))
    if args.folds:
        fold_ids = [f for f in fold_ids if f in args.folds.split(",")]
    logf = open(out / "log.txt", "a", encoding="utf-8")

    def log(msg: str) -> None:
        logf.write(msg + "\n")
        logf.flush()

    for fold in fold_ids:
        fdir = out / f"fold-{fold}"
        if (fdir / "fold.json").is_file():
            continue
        log(f"=== fold {fold}")
        t0 = time.perf_counter()
        run = run_training(data, fdir, cfg, groups_csv=groups_csv, cache_dir=args.cache_dir, workers=args.workers,
                           assign_split=lambda recs, f=fold: assign(recs, folds, f, val=args.val, seed=cfg.train.seed, val_fraction=cfg.train.val_fraction),
                           progress=False, log=log)
        wall = time.perf_counter() - t0
        m = evaluate_model(fdir, cache_dir=args.cache_dir, workers=args.workers, progress=False, plots=False, log=log)
        rec = {
            "fold": fold, "clip_macro_f1": m["clip"]["macro_f1"], "clip_accuracy": m["clip"]["accuracy"],
            "rec_macro_f1": m["recording"]["macro_f1"], "rec_accuracy": m["recording"]["accuracy"],
            "n_test": m["n"], "n_test_clips": m["n_clips"], "best_epoch": run.best_epoch, "epochs": len(run.history),
            "train_seconds": float(sum(h["seconds"] for h in run.history)), "run_seconds": wall,
        }
        atomic_write_json(fdir / "fold.json", rec)
        log(json.dumps(rec))
        (fdir / "model.safetensors").unlink(missing_ok=True) if args.drop_weights else None
    return summarise(out)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="experiment name (folder under --root)")
    ap.add_argument("--data", help="data folder with groups.csv")
    ap.add_argument("--model", default="seed-cnn")
    ap.add_argument("--duration", type=float, default=5.0, help="clip length in seconds")
    ap.add_argument("--fold-column", default="group", help="groups.csv column that defines the folds")
    ap.add_argument("--folds", default="", help="comma-separated subset of folds to run")
    ap.add_argument("--val", choices=("groups", "next-fold"), default="groups")
    ap.add_argument("--set", action="append", default=[], help="config override section.field=value (repeatable)")
    ap.add_argument("--root", type=Path, default=Path("/tmp/cm_bench"))
    ap.add_argument("--cache-dir", type=Path, default=CACHE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--drop-weights", action="store_true", help="delete each fold's weights after evaluation")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of all experiments and exit")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy machine)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_threads = lambda n: None  # keep it: the pipeline would set one per core
    if args.table:
        print(table(args.root))
        return
    s = run_experiment(args)
    print(json.dumps({k: v for k, v in s.items() if k != "per_fold"}, indent=1))


if __name__ == "__main__":
    main()
