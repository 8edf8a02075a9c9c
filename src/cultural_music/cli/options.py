"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

__all__ = ["cache_option", "workers_option", "quiet_option"]


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
