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
@click.option("--max-sample-rate", type=click.IntRange(min=1), default=192_000, show_default=True, help="Highest native sample rate in Hz (422 past it).")
@click.option("--max-msamples", type=click.FloatRange(min=0, min_open=True), default=180.0, show_default=True, help="Most samples (frames x channels, millions) decoded per upload (413 past it).")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True, help="Seconds a stalled upload may send nothing (408 past it).")
@click.option("--max-temp-mb", type=click.FloatRange(min=0, min_open=True), default=2048.0, show_default=True, help="Temp-disk MB all uploads in flight may use (507 past it).")
@click.option("--max-connections", type=click.IntRange(min=1), default=128, show_default=True, help="Open connections served at once (503 past it).")
@click.option("--keep-alive", type=click.IntRange(min=1), default=5, show_default=True, help="Seconds an idle connection stays open.")
def serve(model_dir: str, host: str, port: int, max_upload_mb: float, max_duration: float, max_sample_rate: int,
          max_msamples: float, read_timeout: float, max_temp_mb: float, max_connections: int, keep_alive: int) -> None:
    """Web page and HTTP API for MODEL_DIR: open http://HOST:PORT/ and drop a recording."""
    try:
        import uvicorn
    except ImportError as err:
        raise click.ClickException("the web server needs extra packages: pip install 'cultural-music[web]'") from err
    from ..serve import create_app
    from ..serve.app import server_config

    app = create_app(model_dir, max_upload_mb=max_upload_mb, max_duration_s=max_duration, max_sample_rate=max_sample_rate,
                     max_msamples=max_msamples, read_timeout_s=read_timeout, max_temp_mb=max_temp_mb)
    click.echo(f"serving {model_dir} at http://{host}:{port}/ (API docs: /docs); Ctrl+C stops")
    uvicorn.Server(server_config(app, host, port, max_connections=max_connections, keep_alive_s=keep_alive)).run()
