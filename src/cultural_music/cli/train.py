"""``cultural-music train`` and ``cultural-music models``.

Each model comes with the settings it is meant to be trained with (feature kind, sample rate,
recipe: see ``cultural-music models``); an option given on the command line overrides them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cultural_music.cli.options import backend_options, cache_option, make_runner, quiet_option, workers_option

__all__ = ["DEFAULT_MODEL", "build_config", "resolve_model", "model_options"]

#: ``train`` / ``cv`` without ``--model``: choose among the candidates on the train split (docs/models.md)
DEFAULT_MODEL = "auto"

# option name -> (config section, field); options left out keep the model's default
_FIELDS: dict[str, tuple[str, str]] = {
    "duration": ("audio", "clip_seconds"),
    "sample_rate": ("audio", "sample_rate"),
    "pad": ("audio", "pad"),
    "n_mels": ("features", "n_mels"),
    "augment_variants": ("augment", "n_variants"),
    "spec_mask_p": ("augment", "spec_mask_p"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "seed": ("train", "seed"),
    "patience": ("train", "patience"),
    "learning_rate": ("train", "learning_rate"),
    "weight_decay": ("train", "weight_decay"),
    "lr_schedule": ("train", "lr_schedule"),
    "mixup": ("train", "mixup_alpha"),
    "label_smoothing": ("train", "label_smoothing"),
    "class_weights": ("train", "class_weighting"),
    "balanced_sampling": ("train", "balanced_sampling"),
    "backbone_lr_scale": ("train", "backbone_lr_scale"),
}


def build_config(model_name: str, options: dict[str, Any]) -> Any:
    """The model's default config with the options that were given (not ``None``) applied.

    ``options`` maps the names of :data:`_FIELDS` (and ``backbone``) to values; ``backbone``
    picks the pretrained network of an embedding model (``features.backbone``).  Raises
    :class:`click.BadParameter` for an unknown model or settings the model cannot use.
    """
    from cultural_music.errors import ParameterError
    from cultural_music.models import available_models, check_config, default_config
    from cultural_music.models.res_cnn import check_input_size

    if model_name not in available_models():
        raise click.BadParameter(f"unknown model {model_name!r}; choose from {', '.join(available_models())}", param_hint="--model")
    cfg = default_config(model_name)
    changes: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        if value is not None and name in _FIELDS:
            section, field = _FIELDS[name]
            changes.setdefault(section, {})[field] = value
    given = set(changes.get("train", {}))  # a setting given on the command line is not searched
    if cfg.train.tune and given & set(cfg.train.tune):
        changes.setdefault("train", {})["tune"] = tuple(t for t in cfg.train.tune if t not in given)
    backbone = options.get("backbone")
    if backbone is not None:
        if cfg.features.backbone is None:
            raise click.BadParameter(f"model {model_name!r} has no pretrained backbone to choose", param_hint="--backbone")
        changes.setdefault("features", {})["backbone"] = backbone
    try:
        cfg = cfg.replace(**changes) if changes else cfg
        check_config(cfg)
        check_input_size(cfg)
    except ParameterError as err:
        raise click.BadParameter(str(err)) from err
    return cfg


def resolve_model(model_name: str, candidates: str | None, options: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """The config to scan the data with and, for ``--model auto``, every candidate's config
    (:func:`build_config` of each, so the options given apply where the candidate allows);
    ``None`` for a named model.  Raises :class:`click.BadParameter`."""
    from cultural_music.errors import ParameterError
    from cultural_music.models import available_models
    from cultural_music.training.auto import AUTO, resolve_candidates

    if model_name != AUTO:
        if candidates is not None:
            raise click.BadParameter("only with --model auto (the default)", param_hint="--candidates")
        return build_config(model_name, options), None
    try:
        names = resolve_candidates(candidates, available_models())
    except ParameterError as err:
        raise click.BadParameter(str(err), param_hint="--candidates") from err
    cfgs = {name: build_config(name, options) for name in names}
    return next(iter(cfgs.values())), cfgs


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that choose a model and override its default settings (``train``, ``cv``);
    they arrive as ``model_name``, ``candidates`` and the :data:`_FIELDS` names (``None`` = the
    model's default)."""
    for option in reversed(_MODEL_OPTIONS):
        command = option(command)
    return command


_MODEL_OPTIONS = [
    click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
                 help="Architecture (see 'cultural-music models'); 'auto' compares the candidates by group cross-validation "
                      "on the train split and keeps the best (docs/models.md)."),
    click.option("--candidates", default=None, metavar="NAMES|all",
                 help="With --model auto: comma-separated models to compare, or 'all' (adds res-cnn: slow) "
                      "[default: the frozen-embedding heads musicnn, yamnet, yamnet-mid, fusion that are installed]."),
    click.option("--backbone", type=click.Choice(["MSD_musicnn", "MTT_musicnn"]), default=None, help="Pretrained network of --model musicnn [default: MSD_musicnn]."),
    click.option("--duration", type=click.FloatRange(min=0.05), default=None, help="Clip length in seconds [default: 30]."),
    click.option("--sample-rate", type=click.IntRange(1000, 384000), default=None, help="Sample rate in Hz [default: the model's: 22050, musicnn 16000]."),
    click.option("--epochs", type=click.IntRange(min=1), default=None, help="Most epochs [default: the model's]."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None, help="[default: the model's]"),
    click.option("--seed", type=int, default=None, help="[default: 42]"),
    click.option("--patience", type=click.IntRange(min=1), default=None, help="Early-stopping patience in epochs [default: the model's]."),
    click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate [default: the model's]."),
    click.option("--weight-decay", type=click.FloatRange(0, 1), default=None, help="AdamW weight decay; 0 = Adam [default: the model's]."),
    click.option("--lr-schedule", type=click.Choice(["none", "cosine", "onecycle"]), default=None, help="[default: the model's]"),
    click.option("--mixup", type=click.FloatRange(0, 100), default=None, help="Mixup alpha; 0 = off [default: the model's]."),
    click.option("--label-smoothing", type=click.FloatRange(0, 0.99), default=None, help="[default: 0]"),
    click.option("--class-weights", type=click.Choice(["none", "balanced"]), default=None, help="Loss weights for unbalanced classes [default: the model's]."),
    click.option("--balanced-sampling/--no-balanced-sampling", default=None, help="Draw every class equally often [default: off]."),
    click.option("--backbone-lr-scale", type=click.FloatRange(0, 1), default=None, help="Learning-rate factor of a fine-tuned backbone [default: 0.1]."),
    click.option("--augment-variants", type=click.IntRange(0, 64), default=None, help="Augmented copies per training clip (cached) [default: 2]."),
    click.option("--spec-mask-p", type=click.FloatRange(0, 1), default=None, help="SpecAugment masking probability [default: the model's]."),
    click.option("--n-mels", type=click.IntRange(8, 512), default=None, help="Mel bands of log-mel models [default: 128]."),
    click.option("--pad", type=click.Choice(["repeat", "zeros"]), default=None,
                 help="How a file shorter than one clip is filled: its audio repeated, or silence [default: repeat]."),
]


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="model", show_default=True, help="Model folder to write.")
@model_options
@click.option("--groups", "groups_csv", type=click.Path(exists=True, dir_okay=False), default=None, help="CSV 'path,group': files of one group stay on one side of the split.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/checkpoint.pt (the new model is built beside OUT and swapped in when complete).")
@click.option("--no-refit", is_flag=True, help="Keep the model trained on the train split only: no held-out evaluation and "
              "no refit on every file (then score it with 'cultural-music evaluate').")
@cache_option
@workers_option
@backend_options
@quiet_option
def train(data_dir: str, out_dir: str, model_name: str, candidates: str | None, groups_csv: str | None, resume: bool,
          no_refit: bool, cache_dir: str | None, workers: int | None, backend: str, address: str | None, quiet: bool,
          **options: Any) -> None:
    """Train a classifier on DATA_DIR/<Class>/<files> and write a model folder.

    With --backend ray, features are extracted by Ray tasks and the model is trained
    data-parallel on --workers Ray workers (torch DDP; each worker gets batch-size / workers
    clips per step, so the global batch is unchanged); see docs/cluster.md.
    """
    from cultural_music.evaluation.deploy import train_and_deploy
    from cultural_music.training.pipeline import prepare_run

    runner = make_runner(backend, address, workers)
    cfg, cfgs = resolve_model(model_name, candidates, options)
    prepared = prepare_run(data_dir, out_dir, cfg, groups_csv=groups_csv, cache_dir=cache_dir, runner=runner,
                           progress=not quiet, log=click.echo)
    run, held = train_and_deploy(prepared, out_dir, refit=not no_refit, resume=resume, candidates=cfgs)
    if held is None:
        best = run.history[run.best_epoch - 1]
        kept = "fitted" if best.get("fit") else f"best epoch {run.best_epoch}"
        click.echo(f"{kept}: val_loss {best['val_loss']:.4f}, val_accuracy {best['val_accuracy']:.3f}")
        click.echo(f"model saved to {run.model_dir} (evaluate it: cultural-music evaluate {run.model_dir})")
        return
    click.echo(f"held-out test split, measured before the refit: accuracy {held['accuracy']:.4f}, macro-F1 "
               f"{held['macro_f1']:.4f} ({held['n']} recordings; report: {run.model_dir / 'report.html'})")
    click.echo(f"model saved to {run.model_dir}, trained on every file ({len(run.recordings)} recordings) "
               f"('cultural-music evaluate {run.model_dir}' shows the held-out numbers; --data DIR scores other files)")


@click.command()
def models() -> None:
    """List the models 'train --model' accepts, with the settings each is trained with."""
    from cultural_music.models import available_models, model_defaults, model_summary
    from cultural_music.training.auto import AUTO, resolve_candidates

    mark = "  (default)" if DEFAULT_MODEL == AUTO else ""
    click.echo(f"{AUTO}{mark}: compares {', '.join(resolve_candidates(None, available_models()))} (--candidates all adds "
               "res-cnn) by group cross-validation on the train split and trains the best (docs/models.md)")
    for name in available_models():
        mark = "  (default)" if name == DEFAULT_MODEL else ""
        click.echo(f"{name}{mark}: {model_summary(name)}")
        for section, values in model_defaults(name).items():
            click.echo(f"    {section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
