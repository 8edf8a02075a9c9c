"""The main job on built-in data: synthesise a 5-class demo set, train, evaluate, predict.

The data are synthetic (see :mod:`cultural_music.data.demo_data`): they borrow the names of the
reference classes but are not recordings of those kinds of music.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


__all__ = ["run_demo"]


def run_demo(
    out_dir: str | Path = "demo_run",
    *,
    per_class: int = 12,
    seconds: float = 30.0,
    clip_seconds: float = 10.0,
    epochs: int = 40,
    patience: int = 10,
    model: str = "seed-cnn",
    seed: int = 0,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    show_metrics: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on synthetic data under ``out_dir``.

    Writes ``out_dir/music/<Class>/`` (data: ``per_class`` recordings of ``seconds`` s per class,
    every 4th twice as long), ``out_dir/queries/`` (fresh recordings to name) and
    ``out_dir/model/`` (the model folder: held-out metrics and plots of the model trained on the
    train split, then the model refitted on every file).  The model uses ``clip_seconds``
    clips (10 s by default rather than the tool's 30 s, so this small set yields several
    clips per recording and enough training steps at the reference learning rate).  ``model``
    is trained with its own default settings (see ``cultural-music models``); ``"auto"`` chooses
    among the default candidates on the train split, as ``train`` does.  ``show_metrics``, if
    given, is called with the test metrics under the evaluation step's header.  Returns the test
    metrics and the prediction lines.
    """
    from cultural_music.data.demo_data import make_demo_dataset, make_demo_queries
    from cultural_music.evaluation.deploy import refit_on_everything, score_held_out
    from cultural_music.inference.classifier import Classifier, format_prediction
    from cultural_music.training.pipeline import choose_and_prepare, fit, prepare_run

    out = Path(out_dir)
    data = out / "music"
    log("== 1/4 synthesising the demo data set (SYNTHETIC audio, not real recordings) ==")
    files = make_demo_dataset(data, per_class=per_class, seconds=seconds, seed=seed)
    queries = make_demo_queries(out / "queries", seconds=seconds, seed=seed + 1000)
    log(f"{len(files)} files in {data}; {len(queries)} query files in {out / 'queries'}")
    log("== 2/4 training on the train split ==")
    cfgs = _configs(model, clip_seconds=clip_seconds, epochs=epochs, seed=seed, patience=patience)
    prepared = prepare_run(data, out / "model", next(iter(cfgs.values())), cache_dir=cache_dir or out / "cache",
                           workers=workers, progress=progress, log=log)
    assign = None
    if model == "auto":
        prepared, assign = choose_and_prepare(prepared, cfgs)
    run = fit(prepared, out / "model", assign_split=assign)
    log("== 3/4 evaluating on the sealed test split, then refitting on every file ==")
    metrics = score_held_out(prepared, run)
    if show_metrics is not None:
        show_metrics(metrics)
    run = refit_on_everything(prepared, run)
    log("== 4/4 predicting fresh recordings (the refitted model) ==")
    clf = Classifier.load(run.model_dir)
    lines = [format_prediction(clf.predict(q)) for q in queries]
    return {"metrics": metrics, "predictions": lines, "model_dir": str(run.model_dir)}


def _configs(model: str, **demo: float) -> dict[str, Any]:
    """name -> config of ``model`` (``"auto"``: of each default candidate) with the demo's clip
    length (seconds), epochs, patience and seed."""
    from cultural_music.models import available_models, default_config
    from cultural_music.training.auto import AUTO, resolve_candidates

    names = resolve_candidates(None, available_models()) if model == AUTO else (model,)
    return {name: default_config(name).replace(audio={"clip_seconds": demo["clip_seconds"]},
                                               train={"epochs": demo["epochs"], "seed": demo["seed"], "patience": demo["patience"]})
            for name in names}
