"""``cultural-music serve``."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    cli.add_command(serve)


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every network; think twice).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=100.0, show_default=True, help="Largest upload in MB (413 past it).")
@click.option("--max-duration", "max_duration", type=click.FloatRange(min=0, min_open=True), default=1800.0, show_default=True, help="Longest recording in seconds (413 past it).")
def serve(model_dir: str, host: str, port: int, max_upload_mb: float, max_duration: float) -> None:
    """Web page and HTTP API for MODEL_DIR: open http://HOST:PORT/ and drop a recording."""
    try:
        import uvicorn
    except ImportError as err:
        raise click.ClickException("the web server needs extra packages: pip install 'cultural-music[web]'") from err
    from ..serve import create_app

    app = create_app(model_dir, max_upload_mb=max_upload_mb, max_duration_s=max_duration)
    click.echo(f"serving {model_dir} at http://{host}:{port}/ (API docs: /docs); Ctrl+C stops")
    uvicorn.run(app, host=host, port=port, log_level="info")
