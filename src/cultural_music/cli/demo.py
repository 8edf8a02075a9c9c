"""``cultural-music demo``."""

from __future__ import annotations

import click

from cultural_music.cli.options import quiet_option, workers_option


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="demo_run", show_default=True)
@click.option("--per-class", type=click.IntRange(min=3), default=12, show_default=True, help="Recordings per class.")
@click.option("--seconds", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Length of a demo recording (every 4th is twice as long).")
@click.option("--clip-seconds", type=click.FloatRange(min=0.5), default=10.0, show_default=True, help="Clip length the model uses.")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--model", "model_name", default=None, help="Architecture (see 'cultural-music models') [default: train's default].")
@click.option("--seed", type=int, default=0, show_default=True)
@workers_option
@quiet_option
def demo(out_dir: str, per_class: int, seconds: float, clip_seconds: float, epochs: int, patience: int,
         model_name: str | None, seed: int, workers: int | None, quiet: bool) -> None:
    """Synthesise a 5-class demo set, then train, evaluate and predict end to end."""
    from cultural_music.demo import run_demo
    from cultural_music.cli.train import DEFAULT_MODEL
    from cultural_music.cli.evaluate import format_metrics

    result = run_demo(out_dir, per_class=per_class, seconds=seconds, clip_seconds=clip_seconds, epochs=epochs,
                      patience=patience, model=model_name or DEFAULT_MODEL, seed=seed, workers=workers,
                      progress=not quiet, log=click.echo, show_metrics=lambda m: click.echo(format_metrics(m)))
    for line in result["predictions"]:
        click.echo(line)
    click.echo(f"model, metrics.json and plots: {result['model_dir']}")
