"""``cultural-music similar``: the recordings of an index most like a query file."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("query", type=click.Path(exists=True, dir_okay=False))
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many results.")
@click.option("--windows", is_flag=True, help="Search the index's windows instead of whole recordings.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Check that this model embeds as the index does (the query always uses the index's settings).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result.")
def similar(index_dir: str, query: str, k: int, windows: bool, model_dir: str | None, as_json: bool) -> None:
    """List the K recordings of INDEX_DIR nearest to QUERY, with cosine distances (0 = same)."""
    from cultural_music.search.query import similar as find

    for m in find(index_dir, query, k=k, windows=windows, model_dir=model_dir):
        if as_json:
            click.echo(json.dumps(m.to_dict()))
        else:
            span = f" [{m.start:.1f}-{m.end:.1f} s]" if windows else ""
            click.echo(f"{m.rank:>3}  {m.distance:.4f}  {m.path}{span}")
