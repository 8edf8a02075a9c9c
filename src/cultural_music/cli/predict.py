"""``cultural-music predict``.

Exit codes: without ``--out``, 0 when every file was labelled and 1 when any failed (each
failure is one ``error: PATH: reason`` line on stderr, the other files are still labelled, and
a last ``error: N of M file(s) could not be labelled`` line).
With ``--out``, 0 when the batch completed, bad files included (they are rows with status
``error``); 1 when not one file could be labelled.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from typing import Any

import click

from cultural_music.cli.options import backend_options, make_labeller, quiet_option


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write one row per file to this .csv, .jsonl, .json or .parquet (with a progress bar) instead of printing.")
@click.option("--segments", "segments", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="With --out: also write each file's timeline segments to this .csv, .jsonl or .parquet.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --out: label in this many processes (default 1), or the CPUs of a local Ray instance.")
@backend_options
@click.option("--resume", is_flag=True, help="With --out: skip files already in the output file.")
@click.option("--overwrite", is_flag=True, help="With --out: replace an existing output file.")
@click.option("--hop", "hop", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Seconds between window starts (default: one clip, the clips evaluate scores; less: a finer timeline).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None, metavar="P",
              help="Answer 'uncertain' below this confidence (default: the model's, from validation; 0 = never).")
@click.option("--onnx", "use_onnx", is_flag=True, help="Run MODEL_DIR/model.onnx with onnxruntime (no torch).")
@click.option("--timeline", is_flag=True, help="Also print each file's labelled segments.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of the text line.")
@click.option("--labels", "labels", multiple=True, metavar="FORMAT",
              help="Also write each file's timeline as a label file: audacity, raven, sonic-visualiser "
                   "(repeat or comma-separate for several; docs/prediction.md).")
@click.option("--labels-dir", "labels_dir", type=click.Path(file_okay=False), default=None,
              help="With --labels: write label files under this folder, mirroring the input tree "
                   "(default: next to each recording).")
@quiet_option
def predict(model_dir: str, paths: tuple[str, ...], out: str | None, segments: str | None, workers: int | None,
            backend: str, address: str | None, resume: bool, overwrite: bool, hop: float | None,
            threshold: float | None, use_onnx: bool, timeline: bool, as_json: bool, labels: tuple[str, ...],
            labels_dir: str | None, quiet: bool) -> None:
    """Name the kind of each recording in PATHS (files or folders) with MODEL_DIR."""
    from cultural_music.errors import CulturalMusicError
    from cultural_music.inference.batch import run_batch
    from cultural_music.inference.label_files import LabelWriter, check_label_options
    from cultural_music.inference.load import load_classifier

    check_label_options(labels, labels_dir)
    if out is None and (segments or workers or address or backend != "local"):
        raise click.UsageError("--segments, --workers, --backend and --address need --out")
    labeller = make_labeller(backend, address, workers, model_dir, use_onnx) if out is not None else None
    clf = load_classifier(model_dir, onnx=use_onnx)
    writer = LabelWriter(paths, labels, sample_rate=clf.config.audio.sample_rate, out_dir=labels_dir,
                         report=lambda msg: click.echo(one_line(f"error: {msg}"), err=True)) if labels else None
    if out is not None:
        summary = run_batch(clf, paths, out=out, resume=resume, overwrite=overwrite, hop_seconds=hop,
                            threshold=threshold, progress=not quiet, segments=segments, labeller=labeller,
                            on_row=writer.write_row if writer else None)
        click.echo(summary.line())
        if summary.n_ok == 0 and summary.n_failed:
            raise CulturalMusicError(f"no file could be labelled ({summary.n_failed} failed; reasons in {out})")
    else:
        _print_predictions(clf, paths, hop=hop, threshold=threshold, timeline=timeline, as_json=as_json,
                           on_prediction=writer.write_prediction if writer else None)
    if writer is not None and writer.failed:
        raise CulturalMusicError(writer.summary())


def _print_predictions(clf: Any, paths: tuple[str, ...], *, hop: float | None, threshold: float | None,
                       timeline: bool, as_json: bool, on_prediction: Callable[[Any], Any] | None = None) -> None:
    """One line per file on stdout; a file that fails is reported (stderr, or a JSON error row)
    and skipped, as in a batch run (:func:`~cultural_music.inference.batch.try_predict`)."""
    from cultural_music.errors import CulturalMusicError
    from cultural_music.inference.batch import error_row, expand_inputs, prediction_row, try_predict
    from cultural_music.inference.classifier import format_prediction, format_timeline

    files = expand_inputs(paths)
    if not files:
        raise CulturalMusicError(f"no audio files in {', '.join(paths)}")
    failed = 0
    for path in files:
        got = try_predict(clf, path, hop_seconds=hop, threshold=threshold)
        if on_prediction is not None and not isinstance(got, str):
            on_prediction(got)
        if isinstance(got, str):
            failed += 1
            if as_json:
                click.echo(json.dumps(error_row(path, got)))
            else:
                click.echo(one_line(f"error: {path}: {got}"), err=True)
        elif as_json:
            click.echo(json.dumps(prediction_row(got), ensure_ascii=False))
        else:
            click.echo(one_line(format_prediction(got)))
            if timeline:
                click.echo("\n".join(one_line(line) for line in format_timeline(got.timeline).splitlines()))
    if failed:
        raise CulturalMusicError(f"{failed} of {len(files)} file(s) could not be labelled")


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with control characters (newline, carriage return, escape, ... and the Unicode line
    and paragraph separators) written as ``repr``-style escapes (``\\n``, ``\\x1b``), so that
    a file name cannot split a result line or drive the terminal.  Other text is unchanged."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)


def _escape(ch: str) -> str:
    return _ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
