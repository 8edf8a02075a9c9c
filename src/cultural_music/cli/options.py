"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

__all__ = ["cache_option", "workers_option", "quiet_option", "backend_options", "check_backend", "make_runner", "make_labeller"]


def cache_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False),
        envvar="CULTURAL_MUSIC_CACHE",
        default=None,
        help="Feature cache folder (default: $CULTURAL_MUSIC_CACHE or ~/.cache/cultural-music).",
    )(f)


def workers_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes for decoding + features (default: all cores).")(f)


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(f)


def backend_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--backend local|ray`` and ``--address`` (the Ray cluster to join; docs/cluster.md)."""
    f = click.option("--address", default=None, metavar="ADDRESS",
                     help="With --backend ray: the cluster to join ('auto' or HEAD:6379); default: a local Ray instance.")(f)
    return click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                        help="Where the work runs: this machine, or Ray (pip install 'cultural-music[cluster]'); "
                             "for train, --workers then counts training workers.")(f)


def check_backend(backend: str, address: str | None) -> None:
    """``--address`` only means something with ``--backend ray``."""
    if address and backend != "ray":
        raise click.UsageError("--address needs --backend ray")


def make_runner(backend: str, address: str | None, workers: int | None) -> Any:
    """The one :class:`~cultural_music.features.jobs.Runner` of a command, from ``--backend``,
    ``--address`` and ``--workers``: a ``LocalRunner`` or (importing Ray only then) a ``RayRunner``."""
    check_backend(backend, address)
    if backend == "ray":
        from cultural_music.cluster.runner import RayRunner

        return RayRunner(address, workers)
    from cultural_music.features.jobs import LocalRunner

    return LocalRunner(workers)


def make_labeller(backend: str, address: str | None, workers: int | None, model_dir: str, onnx: bool) -> Any:
    """Where ``predict --out`` labels its files: ``None`` (this process, the default), a local
    ``PoolLabeller`` (``--workers N``, N > 1) or (importing Ray only then) a ``RayLabeller``."""
    check_backend(backend, address)
    if backend == "ray":
        from cultural_music.cluster.ray_predict import RayLabeller

        return RayLabeller(model_dir, onnx=onnx, address=address, workers=workers)
    if workers is not None and workers > 1:
        from cultural_music.inference.pool import PoolLabeller

        return PoolLabeller(model_dir, onnx=onnx, workers=workers)
    return None
