"""``cultural-music predict``."""

from __future__ import annotations

import json

import click


def register(cli: click.Group) -> None:
    cli.add_command(predict)


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of the text line.")
def predict(model_dir: str, paths: tuple[str, ...], as_json: bool) -> None:
    """Name the kind of each recording in PATHS with MODEL_DIR."""
    from ..errors import AudioLoadError
    from ..predict import Classifier, format_prediction

    clf = Classifier.load(model_dir)
    failed = 0
    for path in paths:
        try:
            pred = clf.predict(path)
        except AudioLoadError as err:
            failed += 1
            if as_json:
                click.echo(json.dumps({"path": path, "status": "error", "reason": err.reason}))
            else:
                click.echo(f"error: {err}", err=True)
            continue
        click.echo(json.dumps({**pred.to_dict(), "status": "ok"}) if as_json else format_prediction(pred))
    if failed:
        raise click.exceptions.Exit(1)
