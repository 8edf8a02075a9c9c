"""``cultural-music embed``: store one embedding per recording (and per window) of a folder."""

from __future__ import annotations

import click

from cultural_music.cli.options import backend_options, cache_option, make_runner, quiet_option, workers_option


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Embedding model folder (its backbone and settings).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Index folder (created, or extended with new files).")
@click.option("--windows", is_flag=True, help="Also store one embedding per clip-long window.")
@cache_option
@workers_option
@backend_options
@quiet_option
def embed(folder: str, model_dir: str, out: str, windows: bool, cache_dir: str | None, workers: int | None,
          backend: str, address: str | None, quiet: bool) -> None:
    """Embed every audio file under FOLDER with MODEL's backbone into the search index --out (docs/search.md)."""
    from cultural_music.features.cache import FeatureCache, default_cache_dir
    from cultural_music.search.index import embed_folder

    runner = make_runner(backend, address, workers)
    rep = embed_folder(folder, model_dir, out, windows=windows, cache=FeatureCache(cache_dir or default_cache_dir()),
                       runner=runner, progress=not quiet)
    rows = ", ".join(f"{n} {name}{' (faiss index)' if rep.ann.get(name) else ''}" for name, n in rep.rows.items())
    click.echo(f"{rep.directory}: {rep.added} added, {rep.replaced} replaced, {rep.kept} kept; {rows}")
    if rep.skipped:
        click.echo(f"skipped {len(rep.skipped)} file(s):")
        for s in rep.skipped:
            click.echo(f"  {s.path}: {s.reason}")
