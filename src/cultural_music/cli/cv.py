"""``cultural-music cv``."""

from __future__ import annotations

import json
from typing import Any

import click

from cultural_music.cli.options import cache_option, quiet_option, workers_option
from cultural_music.cli.train import model_options, resolve_model


def format_cv(s: dict) -> str:
    """Per-fold table and mean ± std [95% interval] of the headline metrics at both levels."""
    lines = [f"{s['scheme']}: {s['n_folds']} folds, {s['n_recordings']} recordings, {s['n_groups']} groups",
             f"{'fold':<16} {'test':>5} {'rec macro-F1':>12} {'clip macro-F1':>13} {'rec acc':>8} {'clip acc':>8}"]
    for r in s["folds"]:
        lines.append(f"{str(r['fold_name'])[:16]:<16} {r['n_test']:>5d} {r['recording_macro_f1']:>12.3f} {r['clip_macro_f1']:>13.3f}"
                     f" {r['recording_accuracy']:>8.3f} {r['clip_accuracy']:>8.3f}")
    lines.append("")
    for level in ("recording", "clip"):
        for key, label in (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
                           ("baseline_accuracy", "majority base")):
            st = s["metrics"][level][key]
            spread = f" ± {st['std']:.3f}  [95% CI {st['ci95'][0]:.3f}, {st['ci95'][1]:.3f}]" if st["std"] is not None else ""
            lines.append(f"{level + ' ' + label:<26} {st['mean']:.3f}{spread}")
    lines.append(f"pooled out-of-fold macro-F1: recording {s['pooled']['recording']['macro_f1']:.3f}, clip {s['pooled']['clip']['macro_f1']:.3f}")
    lines.append(f"wall time {s['seconds'] / 60:.1f} min")
    return "\n".join(lines)


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--folds", type=click.IntRange(min=0), default=5, show_default=True, help="k of group k-fold; 0 = one fold per group.")
@click.option("--leave-one-group-out", "logo", is_flag=True, help="One fold per group (same as --folds 0), e.g. per speaker.")
@click.option("--groups", "groups_csv", type=click.Path(exists=True, dir_okay=False), default=None, help="CSV 'path,group': files of one group stay in one fold.")
@click.option("--fold-column", default=None, help="Take predefined folds from this column of the --groups CSV (e.g. 'fold').")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="cv", show_default=True, help="Results folder (one model folder per fold inside).")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout (logs go to stderr).")
@cache_option
@workers_option
@quiet_option
def cv(data_dir: str, folds: int, logo: bool, groups_csv: str | None, fold_column: str | None, out_dir: str, model_name: str,
       candidates: str | None, as_json: bool, cache_dir: str | None, workers: int | None, quiet: bool, **options: Any) -> None:
    """Cross-validate on DATA_DIR/<Class>/<files>, grouped so no recording (or group) is on two sides.

    Every fold trains the model exactly as 'train' would (the model's settings, overridden by
    the options given), so the figures describe what 'train' delivers; with --model auto (the
    default) the model is chosen inside every fold, on its train split only.
    """
    from cultural_music.evaluation.cv import run_cv

    if folds == 1:
        raise click.BadParameter("must be 0 (one fold per group) or at least 2", param_hint="--folds")
    if fold_column is not None and groups_csv is None:
        raise click.BadParameter("needs --groups CSV (the file holding the column)", param_hint="--fold-column")
    cfg, cfgs = resolve_model(model_name, candidates, options)
    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    summary = run_cv(data_dir, cfg, folds=0 if logo else folds, groups_csv=groups_csv, fold_column=fold_column, out_dir=out_dir,
                     cache_dir=cache_dir, workers=workers, progress=not (quiet or as_json), log=log, candidates=cfgs)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(format_cv(summary))
        click.echo(f"results: {out_dir}/cv_results.csv, cv_summary.json, oof_predictions.csv, confusion_matrix.png")
