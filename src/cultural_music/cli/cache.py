"""``cultural-music cache info|clear``."""

from __future__ import annotations

import json

import click

from cultural_music.cli.options import cache_option


def _cache(cache_dir: str | None):  # noqa: ANN202 - FeatureCache, imported lazily
    from cultural_music.features.cache import FeatureCache, default_cache_dir

    return FeatureCache(cache_dir or default_cache_dir())


@click.group()
def cache() -> None:
    """Inspect or empty the feature cache."""


@cache.command()
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def info(cache_dir: str | None, as_json: bool) -> None:
    """Where the cache is, its entries and size, per feature settings."""
    data = _cache(cache_dir).info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"cache: {data['root']}")
    click.echo(f"entries: {data['entries']}  size: {_size(int(data['bytes']))}  indexed files: {data['indexed_files']}")
    for key, v in data["feature_keys"].items():
        click.echo(f"  settings {key}: {v['entries']} entries, {_size(v['bytes'])}")


@cache.command()
@cache_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear(cache_dir: str | None, yes: bool) -> None:
    """Delete every cached feature file (they are rebuilt when needed)."""
    store = _cache(cache_dir)
    if not yes:
        click.confirm(f"delete all cached features under {store.root}?", abort=True)
    click.echo(f"removed {store.clear()} cached feature file(s) from {store.root}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
