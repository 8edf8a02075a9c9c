"""``cultural-music evaluate``."""

from __future__ import annotations

import json

import click

from cultural_music.cli.options import cache_option, quiet_option, workers_option


def format_metrics(m: dict) -> str:
    """Human summary: headline numbers at both levels and the per-class table."""
    rec, clip = m["recording"], m["clip"]
    lines = [
        f"test recordings: {m['n']}  (clips: {m['n_clips']})",
        f"recording level: accuracy {rec['accuracy']:.4f}  balanced {rec['balanced_accuracy']:.4f}  macro-F1 {rec['macro_f1']:.4f}"
        f"  (majority baseline accuracy {rec['baseline_accuracy']:.4f})",
        f"clip level:      accuracy {clip['accuracy']:.4f}  balanced {clip['balanced_accuracy']:.4f}  macro-F1 {clip['macro_f1']:.4f}",
        *_calibration_lines(m),
        "",
        f"{'class':<20} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    for name, c in rec["per_class"].items():
        lines.append(f"{name:<20} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {c['support']:>8d}")
    return "\n".join(lines)


def _calibration_lines(m: dict) -> list[str]:
    cal = m.get("calibration")
    if not cal:
        return []
    t, rec = cal["temperature"], cal["recording"]
    return [f"calibration:     temperature {t:.3f}; recording-level ECE {rec['ece_before']:.4f} at T=1 -> {rec['ece_after']:.4f}"]


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), default=None, help="Score this labelled folder instead of the sealed test split.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (accuracy, macro_f1, n, ...) on stdout.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (the report then shows placeholders).")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@cache_option
@workers_option
@quiet_option
def evaluate(model_dir: str, data_dir: str | None, as_json: bool, no_plots: bool, no_report: bool, cache_dir: str | None, workers: int | None, quiet: bool) -> None:
    """Metrics and plots of MODEL_DIR on its test split (or on --data DIR)."""
    from cultural_music.evaluation.evaluate import run_evaluation

    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    ev = run_evaluation(model_dir, data_dir=data_dir, cache_dir=cache_dir, workers=workers, progress=not (quiet or as_json),
                        plots=not no_plots, report=not no_report, log=log)
    m = ev.metrics
    if as_json:
        click.echo(json.dumps(m))
        return
    click.echo(format_metrics(m))
    if m.get("unknown_classes"):
        click.echo(f"not model classes, left out: {', '.join(m['unknown_classes'])}")
    click.echo(f"metrics: {ev.files['metrics']}")
    click.echo(f"predictions, wrong ones first: {ev.files['predictions']}")
    if "report" in ev.files:
        click.echo(f"report: {ev.files['report'].resolve().as_uri()}")
