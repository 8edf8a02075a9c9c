"""Label many files into one results file (CSV, JSON lines, JSON or parquet), resumable after any kill.

Folders are expanded recursively to audio files.  Each file gets one row; a file that cannot be
read gets a row with ``status`` ``"error"`` and the ``reason``, and the run goes on.  Rows are
appended as files finish (:mod:`~cultural_music.inference.writers`: nothing is held in memory,
the driver is the only writer), optionally with a segments table (one row per timeline segment).
``resume=True`` skips every file that already has a row, so a rerun after any kill (even
SIGKILL) writes each file's row exactly once.  Where the files are labelled is a
:class:`Labeller`: this process, a local pool (``--workers``) or Ray (``--backend ray``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cultural_music.errors import AudioLoadError, CulturalMusicError, DatasetError, OutputError, ParameterError
from cultural_music.data.dataset import AUDIO_EXTENSIONS
from cultural_music.inference.classifier import Prediction, WindowClassifier
from cultural_music.inference.writers import CSV_FIELDS, RESULTS, SEGMENTS, RowFile, open_rows, path_key, segment_rows

__all__ = ["AUDIO_EXTENSIONS", "CSV_FIELDS", "BatchSummary", "InProcess", "Labeller", "expand_inputs", "prediction_row",
           "error_row", "run_batch", "try_predict", "label_row"]


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders replaced by their audio files (recursive, sorted, extension
    case-insensitive).  A path that does not exist is kept: predicting it reports the error."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and not f.is_dir()))
        else:
            out.append(p)
    return out


def prediction_row(pred: Prediction) -> dict[str, Any]:
    """JSON row of a prediction: :meth:`Prediction.to_dict` plus ``reason`` (None)."""
    return {**pred.to_dict(), "reason": None}


def error_row(path: str | Path, reason: str) -> dict[str, Any]:
    """JSON row of a file that could not be labelled."""
    return {"path": str(path), "status": "error", "label": None, "confidence": None, "uncertain": None, "top": [],
            "duration": None, "n_clips": None, "reason": reason}


class Labeller(Protocol):
    """Where the files of a batch are labelled, chosen once by the CLI (``--workers``, ``--backend``):
    :class:`InProcess`, :class:`~cultural_music.inference.pool.PoolLabeller` (a local process pool) or
    ``cultural_music.cluster.ray_predict.RayLabeller`` (Ray tasks).  ``rows`` yields exactly one
    :func:`label_row` row per file, in completion order, as files finish."""

    def rows(self, files: Sequence[Path], *, hop_seconds: float | None = None,
             threshold: float | None = None) -> Iterator[dict[str, Any]]: ...


class InProcess:
    """Every file labelled here, in order, by ``classifier``."""

    def __init__(self, classifier: WindowClassifier) -> None:
        self.classifier = classifier

    def rows(self, files: Sequence[Path], *, hop_seconds: float | None = None,
             threshold: float | None = None) -> Iterator[dict[str, Any]]:
        for path in files:
            yield label_row(self.classifier, path, hop_seconds=hop_seconds, threshold=threshold)


@dataclass
class BatchSummary:
    """Counts of a batch run: files labelled, of those uncertain, failed, skipped by ``resume``."""

    n_ok: int = 0
    n_uncertain: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    out: str = ""

    def count(self, row: dict[str, Any]) -> None:
        """Count one JSON row (``status`` ``"ok"`` or ``"error"``)."""
        if row["status"] == "ok":
            self.n_ok += 1
            self.n_uncertain += int(bool(row["uncertain"]))
        else:
            self.n_failed += 1

    def line(self) -> str:
        """``N ok (U uncertain), F failed, S already done -> OUT``."""
        skipped = f", {self.n_skipped} already done" if self.n_skipped else ""
        return f"{self.n_ok} ok ({self.n_uncertain} uncertain), {self.n_failed} failed{skipped} -> {self.out}"


def run_batch(classifier: WindowClassifier | None, inputs: Sequence[str | Path], *, out: str | Path,
              resume: bool = False, overwrite: bool = False, hop_seconds: float | None = None,
              threshold: float | None = None, progress: bool = True, segments: str | Path | None = None,
              labeller: Labeller | None = None, on_row: Callable[[dict[str, Any]], Any] | None = None,
              flush_seconds: float | None = None) -> BatchSummary:
    """Label every file of ``inputs`` (files and folders) into the results file ``out``.

    Parameters
    ----------
    classifier
        A loaded model (PyTorch or ONNX), used when ``labeller`` is None.
    inputs
        Files and folders (expanded with :func:`expand_inputs`).
    out
        ``.csv`` (one flat row per file: path, status, label, confidence, uncertain, top-3 with
        probabilities, duration in seconds, clips, reason), ``.jsonl`` / ``.json`` (the
        :meth:`Prediction.to_dict` rows with ``reason``, including the timeline) or ``.parquet``
        (the CSV's information, top-k as a list).
    resume, overwrite
        See :func:`~cultural_music.inference.writers.open_rows`.
    hop_seconds, threshold
        Passed to :meth:`WindowClassifier.predict`.
    progress
        Show a progress bar on stderr.
    segments
        Also write the segments table (file, start, end in seconds, label, confidence,
        uncertain) to this ``.csv``/``.jsonl``/``.json``/``.parquet``.
    labeller
        Where files are labelled (default: :class:`InProcess` with ``classifier``).
    on_row
        Called with each new JSON row, after it was written.
    flush_seconds
        Unused (rows are appended as they finish); kept so that older callers still run.

    Raises
    ------
    DatasetError
        No input file at all.
    """
    files = expand_inputs(inputs)
    if not files:
        raise DatasetError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, inputs))}")
    if labeller is None:
        if classifier is None:
            raise ParameterError("run_batch needs a classifier or a labeller")
        labeller = InProcess(classifier)
    results, segs = _open_outputs(out, segments, resume=resume, overwrite=overwrite)
    try:
        todo = [f for f in files if path_key(f) not in results.done]
        summary = BatchSummary(n_skipped=len(files) - len(todo), out=str(results.path))
        _label_into(labeller.rows(todo, hop_seconds=hop_seconds, threshold=threshold), len(todo), results, segs,
                    summary, progress=progress, on_row=on_row)
    finally:
        if segs is not None:
            segs.close()
        results.close()
    return summary


def _open_outputs(out: str | Path, segments: str | Path | None, *, resume: bool,
                  overwrite: bool) -> tuple[RowFile, RowFile | None]:
    """The results file and the segments table (or None), open for appending, in step: the
    segments of a file whose result row a kill lost are dropped (written again with the row)."""
    if segments is not None and Path(segments).suffix.lower() == ".parquet" and Path(out).suffix.lower() != ".parquet":
        raise ParameterError(f"--segments {segments}: a .parquet segments table needs a .parquet --out (its rows are "
                             "buffered in groups; so are the results, in step), or use .csv/.jsonl segments")
    if segments is not None and Path(segments).exists() and not (resume or overwrite):
        raise OutputError(f"{segments}: already exists (pass --resume to continue it, or --overwrite)")
    results = open_rows(out, RESULTS, resume=resume, overwrite=overwrite)
    if segments is None:
        return results, None
    try:
        segs = open_rows(segments, SEGMENTS, resume=resume, overwrite=overwrite, option="segments")
        segs.keep_only(results.done)
    except BaseException:
        results.close()
        raise
    if segs.buffered:
        results.before_flush = segs.flush
    return results, segs


def _label_into(rows: Iterator[dict[str, Any]], total: int, results: RowFile, segs: RowFile | None,
                summary: BatchSummary, *, progress: bool, on_row: Callable[[dict[str, Any]], Any] | None) -> None:
    """Write each row as it comes (its segments first, then its result row: the result row marks
    the file done), counting it and moving the progress bar."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        for row in rows:
            if segs is not None:
                for seg in segment_rows(row):
                    segs.write(seg)
            results.write(row)
            summary.count(row)
            bar.update(1)
            if row["status"] != "ok":
                bar.set_postfix(failed=summary.n_failed)
            if on_row is not None:
                on_row(row)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # stop a pool or Ray tasks still running
        bar.close()


def try_predict(classifier: WindowClassifier, path: Path, *, hop_seconds: float | None = None,
                threshold: float | None = None) -> Prediction | str:
    """The prediction of one file, or why it failed (a one-line reason): the one error policy of
    ``predict``, with or without ``--out``.  A bad file never stops a run of many; only a bad
    option (:class:`~cultural_music.errors.ParameterError`, every file would fail alike) raises."""
    try:
        return classifier.predict(path, hop_seconds=hop_seconds, threshold=threshold)
    except AudioLoadError as err:
        return err.reason
    except ParameterError:
        raise
    except CulturalMusicError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - a decoder crash on one file must not end the run; it is reported
        return f"unexpected {type(err).__name__}: {err}"


def label_row(classifier: WindowClassifier, path: Path, *, hop_seconds: float | None = None,
              threshold: float | None = None) -> dict[str, Any]:
    """One JSON row: :func:`prediction_row`, or :func:`error_row` when :func:`try_predict` gives a reason."""
    got = try_predict(classifier, path, hop_seconds=hop_seconds, threshold=threshold)
    return error_row(path, got) if isinstance(got, str) else prediction_row(got)
