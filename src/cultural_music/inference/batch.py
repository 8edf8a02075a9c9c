"""Label many files into one results file (CSV or JSON), resumable, never left half-written.

Folders are expanded recursively to audio files.  Each file gets one row; a file that cannot be
read gets a row with ``status`` ``"error"`` and the ``reason``, and the run goes on.  Rows are
kept in memory and the whole results file is rewritten atomically every ``flush_seconds`` and at
the end (also on Ctrl-C), so a crash leaves the last complete version, and ``resume=True`` skips
every file that already has a row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cultural_music.atomic import atomic_write_text
from cultural_music.errors import AudioLoadError, CulturalMusicError, DatasetError, OutputError, ParameterError
from cultural_music.data.dataset import AUDIO_EXTENSIONS
from cultural_music.inference.classifier import Prediction, WindowClassifier

__all__ = ["AUDIO_EXTENSIONS", "CSV_FIELDS", "BatchSummary", "ResultsFile", "expand_inputs", "prediction_row",
           "error_row", "run_batch", "try_predict", "label_row"]

CSV_FIELDS = ("path", "status", "label", "confidence", "uncertain", "top1", "top1_p", "top2", "top2_p", "top3", "top3_p",
              "duration", "n_clips", "reason")


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


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """CSV form of a JSON row (probabilities 4 decimals, duration in seconds, 2 decimals)."""
    flat = {k: row.get(k) for k in ("path", "status", "label", "n_clips", "reason")}
    flat["confidence"] = None if row.get("confidence") is None else f"{row['confidence']:.4f}"
    flat["uncertain"] = None if row.get("uncertain") is None else int(bool(row["uncertain"]))
    flat["duration"] = None if row.get("duration") is None else f"{row['duration']:.2f}"
    for i, t in enumerate(row.get("top") or [], start=1):
        flat[f"top{i}"], flat[f"top{i}_p"] = t["label"], f"{t['probability']:.4f}"
    return flat


class ResultsFile:
    """Rows of a results file (``.csv`` or ``.json`` by extension), rewritten atomically on flush.

    Parameters
    ----------
    path
        Output file; its extension picks the format.
    resume
        Load the rows already in ``path`` (if it exists) and keep them.
    overwrite
        Without ``resume``, an existing ``path`` is an error unless this is True.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in ("csv", "json"):
            raise ParameterError(f"The 'out' parameter must end in .csv or .json. Got {str(path)!r} instead.")
        self.rows: list[dict[str, Any]] = []
        if self.path.exists() and not resume and not overwrite:
            raise OutputError(f"{self.path}: already exists (pass --resume to continue it, or --overwrite)")
        if resume and self.path.is_file():
            self.rows = self._read()
        self.done = {_key(r["path"]) for r in self.rows if r.get("path")}

    def _read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
            if self.format == "json":
                rows = json.loads(text) if text.strip() else []
                if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                    raise ValueError("expected a JSON list of row objects")
                return rows
            reader = csv.DictReader(io.StringIO(text))
            if text.strip() and "path" not in (reader.fieldnames or []):
                raise ValueError("no 'path' column")
            return [dict(r) for r in reader]
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
            raise OutputError(f"{self.path}: cannot resume from it ({err})") from err

    def add(self, row: dict[str, Any]) -> None:
        """Append a JSON row (converted to the CSV form for a ``.csv`` file)."""
        self.rows.append(_flat(row) if self.format == "csv" else row)
        self.done.add(_key(row["path"]))

    def flush(self) -> None:
        """Rewrite the whole file atomically."""
        if self.format == "json":
            text = json.dumps(self.rows, indent=1, ensure_ascii=False) + "\n"
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
            text = buf.getvalue()
        atomic_write_text(self.path, text)


def _key(path: str | Path) -> str:
    return os.path.normcase(os.path.abspath(str(path)))


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


def run_batch(classifier: WindowClassifier, inputs: Sequence[str | Path], *, out: str | Path, resume: bool = False,
              overwrite: bool = False, hop_seconds: float | None = None, threshold: float | None = None,
              progress: bool = True, flush_seconds: float = 5.0,
              on_row: Callable[[dict[str, Any]], Any] | None = None) -> BatchSummary:
    """Label every file of ``inputs`` (files and folders) into the results file ``out``.

    Parameters
    ----------
    classifier
        A loaded model (PyTorch or ONNX).
    inputs
        Files and folders (expanded with :func:`expand_inputs`).
    out
        ``.csv`` (one flat row per file: path, status, label, confidence, uncertain, top-3 with
        probabilities, duration in seconds, clips, reason) or ``.json`` (a list of
        :meth:`Prediction.to_dict` rows with ``reason``, including the timeline).
    resume, overwrite
        See :class:`ResultsFile`.
    hop_seconds, threshold
        Passed to :meth:`WindowClassifier.predict`.
    progress
        Show a progress bar on stderr.
    flush_seconds
        Rewrite the results file at most this often (seconds) while running.
    on_row
        Called with each new JSON row.

    Raises
    ------
    DatasetError
        No input file at all.
    """
    from tqdm import tqdm

    results = ResultsFile(out, resume=resume, overwrite=overwrite)
    files = expand_inputs(inputs)
    if not files:
        raise DatasetError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, inputs))}")
    todo = [f for f in files if _key(f) not in results.done]
    summary = BatchSummary(n_skipped=len(files) - len(todo), out=str(results.path))
    bar = tqdm(todo, total=len(todo), unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        for row in _rows(classifier, bar, results, flush_seconds, hop_seconds=hop_seconds, threshold=threshold):
            summary.count(row)
            if row["status"] != "ok":
                bar.set_postfix(failed=summary.n_failed)
            if on_row is not None:
                on_row(row)
    finally:
        bar.close()
        results.flush()
    return summary


def _rows(classifier: WindowClassifier, paths: Iterable[Path], results: ResultsFile, flush_seconds: float,
          **predict_kw: Any) -> Iterator[dict[str, Any]]:
    """Label each path into ``results`` (rewritten at most every ``flush_seconds``), yielding each new row."""
    last = time.monotonic()
    for path in paths:
        row = label_row(classifier, path, **predict_kw)
        results.add(row)
        yield row
        if time.monotonic() - last >= flush_seconds:
            results.flush()
            last = time.monotonic()


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
