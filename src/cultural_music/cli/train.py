"""``cultural-music train``."""

from __future__ import annotations

import click

from .options import cache_option, quiet_option, workers_option


def register(cli: click.Group) -> None:
    cli.add_command(train)


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="model", show_default=True, help="Model folder to write.")
@click.option("--duration", type=click.FloatRange(min=0.05), default=30.0, show_default=True, help="Clip length in seconds.")
@click.option("--sample-rate", type=click.IntRange(1000, 384000), default=22050, show_default=True, help="Sample rate in Hz.")
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--groups", "groups_csv", type=click.Path(exists=True, dir_okay=False), default=None, help="CSV 'path,group': files of one group stay on one side of the split.")
@click.option("--model", "model_name", default="seed-cnn", show_default=True, help="Architecture (see 'cultural-music models').")
@click.option("--patience", type=click.IntRange(min=1), default=6, show_default=True, help="Early-stopping patience in epochs.")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--augment-variants", type=click.IntRange(0, 64), default=2, show_default=True, help="Augmented copies per training clip (cached).")
@click.option("--n-mels", type=click.IntRange(8, 512), default=128, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/checkpoint.pt.")
@cache_option
@workers_option
@quiet_option
def train(data_dir: str, out_dir: str, duration: float, sample_rate: int, epochs: int, batch_size: int, seed: int,
          groups_csv: str | None, model_name: str, patience: int, learning_rate: float, augment_variants: int,
          n_mels: int, resume: bool, cache_dir: str | None, workers: int | None, quiet: bool) -> None:
    """Train a classifier on DATA_DIR/<Class>/<files> and write a model folder."""
    from ..config import Config
    from ..models import available_models
    from ..pipeline import run_training

    if model_name not in available_models():
        raise click.BadParameter(f"unknown model {model_name!r}; choose from {', '.join(available_models())}", param_hint="--model")
    cfg = Config().replace(
        audio={"sample_rate": sample_rate, "clip_seconds": duration},
        features={"n_mels": n_mels},
        augment={"n_variants": augment_variants},
        train={"model": model_name, "epochs": epochs, "batch_size": batch_size, "seed": seed, "patience": patience,
               "learning_rate": learning_rate},
    )
    run = run_training(data_dir, out_dir, cfg, groups_csv=groups_csv, cache_dir=cache_dir, workers=workers,
                       resume=resume, progress=not quiet, log=click.echo)
    best = run.history[run.best_epoch - 1]
    click.echo(f"best epoch {run.best_epoch}: val_loss {best['val_loss']:.4f}, val_accuracy {best['val_accuracy']:.3f}")
    click.echo(f"model saved to {run.model_dir} (evaluate it: cultural-music evaluate {run.model_dir})")
