"""``cultural-music serve``."""

from __future__ import annotations

import click

_POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every network; think twice).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=_POSITIVE, default=100.0, show_default=True, help="Largest upload in MB (413 past it).")
@click.option("--max-duration", "max_duration", type=_POSITIVE, default=1800.0, show_default=True, help="Longest recording in seconds (413 past it).")
@click.option("--max-samples", type=_POSITIVE, default=172.8e6, show_default=True,
              help="Most samples (frames x channels, from the header) one recording may decode (413 past it); 172.8e6 is 30 min of 48 kHz stereo.")
@click.option("--max-sample-rate", type=_POSITIVE, default=192000, show_default=True, help="Highest sample rate in Hz (422 past it).")
@click.option("--long-after", type=_POSITIVE, default=120.0, show_default=True,
              help="Seconds (or as many samples as that long a 48 kHz stereo file) past which a recording runs on a second model thread, so it never delays short ones.")
@click.option("--max-temp-mb", type=_POSITIVE, default=2048.0, show_default=True, help="Temp-disk MB all uploads in flight may use together (507 past it).")
@click.option("--body-timeout", type=_POSITIVE, default=20.0, show_default=True, help="Seconds an upload may send nothing before it is dropped (408).")
@click.option("--upload-timeout", type=_POSITIVE, default=900.0, show_default=True, help="Seconds a whole upload may take (408).")
@click.option("--head-timeout", type=_POSITIVE, default=10.0, show_default=True, help="Seconds a new connection has to send its request headers.")
@click.option("--keep-alive", type=_POSITIVE, default=5.0, show_default=True, help="Seconds an idle connection is kept open between requests.")
@click.option("--max-connections", type=click.IntRange(min=1), default=256, show_default=True, help="Open connections at most (503 past it).")
def serve(model_dir: str, host: str, port: int, max_upload_mb: float, max_duration: float, max_samples: float,
          max_sample_rate: float, long_after: float, max_temp_mb: float, body_timeout: float, upload_timeout: float,
          head_timeout: float, keep_alive: float, max_connections: int) -> None:
    """Web page and HTTP API for MODEL_DIR: open http://HOST:PORT/ and drop a recording."""
    try:
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise click.ClickException("the web server needs extra packages: pip install 'cultural-music[web]'") from err
    from cultural_music.serve import create_app
    from cultural_music.serve.server import make_server

    app = create_app(model_dir, max_upload_mb=max_upload_mb, max_duration_s=max_duration, max_samples=max_samples,
                     max_sample_rate=max_sample_rate, long_after_s=long_after, max_temp_mb=max_temp_mb,
                     body_timeout_s=body_timeout, upload_timeout_s=upload_timeout)
    click.echo(f"serving {model_dir} at http://{host}:{port}/ (API docs: /docs); Ctrl+C stops")
    make_server(app, host=host, port=port, head_timeout_s=head_timeout, keep_alive_s=keep_alive,
                max_connections=max_connections).run()
