"""``cultural-music features``: fill the feature cache for a data folder."""

from __future__ import annotations

import click

from cultural_music.cli.options import backend_options, cache_option, make_runner, quiet_option, workers_option


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--duration", type=click.FloatRange(min=0.05), default=30.0, show_default=True, help="Clip length in seconds.")
@click.option("--sample-rate", type=click.IntRange(1000, 384000), default=22050, show_default=True, help="Sample rate in Hz.")
@click.option("--n-mels", type=click.IntRange(8, 512), default=128, show_default=True)
@click.option("--model", "model_name", default=None, metavar="NAME",
              help="Cache the features this model trains on (e.g. musicnn, yamnet, yamnet-mid, fusion: the backbone's embeddings; "
                   "they fix the sample rate and mels); default: log-mels with the settings above.")
@cache_option
@workers_option
@backend_options
@quiet_option
def features(data_dir: str, duration: float, sample_rate: int, n_mels: int, model_name: str | None, cache_dir: str | None,
             workers: int | None, backend: str, address: str | None, quiet: bool) -> None:
    """Decode DATA_DIR/<Class>/<files> and cache their features, so that training decodes nothing.

    With --backend ray the files are done by Ray tasks (on the cluster given by --address, else
    on a local Ray instance with --workers CPUs); DATA_DIR and the cache must then be at the
    same path on every node (docs/cluster.md).
    """
    from cultural_music.features.cache import FeatureCache, default_cache_dir
    from cultural_music.config import Config
    from cultural_music.features.extract import fill_cache

    cfg = Config().replace(audio={"sample_rate": sample_rate, "clip_seconds": duration}, features={"n_mels": n_mels})
    if model_name is not None:
        from cultural_music.cli.train import build_config

        cfg = build_config(model_name, {"duration": duration}).replace(augment={"n_variants": 0})
    runner = make_runner(backend, address, workers)
    store = FeatureCache(cache_dir or default_cache_dir())
    scan, result = fill_cache(data_dir, cfg, store, runner=runner, progress=not quiet)
    for w in scan.warnings:
        click.echo(f"warning: {w}", err=True)
    n_ok = len(result.entries)
    click.echo(f"{n_ok} file(s) with features: {result.n_decoded} decoded, {n_ok - result.n_decoded} from the cache"
               f" ({result.n_indexed} unchanged since indexed); cache {store.root}")
    if scan.skipped:
        click.echo(f"skipped {len(scan.skipped)} file(s):")
        for s in scan.skipped:
            click.echo(f"  {s.path}: {s.reason}")
