"""Append-only row files for labelling an archive: ``.csv``, ``.jsonl``, ``.json`` and ``.parquet``.

Rows are written as they finish, never held in memory (memory flat in the number of files), and
every format survives a kill (SIGKILL, power loss) at any moment:

* ``.csv``: the header once, then one flushed line per row.  On resume a torn last record (no
  final newline, or an open quote) is cut off and rewritten.
* ``.jsonl``: one JSON object per flushed line; a torn last line is cut off on resume.
* ``.json``: rows go to a JSON-lines sidecar ``NAME.json.partial.jsonl``; at close it is turned
  into one valid JSON array (written to a temp file, then renamed) and removed.  A killed run
  leaves the sidecar, which resume continues.
* ``.parquet`` (``pip install 'cultural-music[archive]'``, pyarrow): rows are buffered in groups
  of :data:`PARQUET_GROUP` rows, each written as a complete part file
  ``NAME.parquet.parts/part-NNNNNN.parquet`` (temp then rename); at close the parts (and the rows
  of an earlier ``NAME.parquet``) become the row groups of ``NAME.parquet`` (temp then rename) and
  the parts are removed.  A kill loses at most the open group, which resume labels again.

Resume streams the keys (file paths) already written; nothing else is loaded.  The same classes
write the per-file results table (:data:`RESULTS`) and the segments table (:data:`SEGMENTS`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cultural_music.atomic import atomic_path
from cultural_music.errors import OutputError, ParameterError

__all__ = ["FORMATS", "PARQUET_GROUP", "RESULTS", "SEGMENTS", "CSV_FIELDS", "SEGMENT_FIELDS", "Table", "RowFile",
           "open_rows", "path_key", "flat_row", "segment_rows", "read_rows"]

FORMATS = ("csv", "json", "jsonl", "parquet")
PARQUET_GROUP = 256  #: rows per parquet row group (a kill loses at most this many, relabelled on resume)

CSV_FIELDS = ("path", "status", "label", "confidence", "uncertain", "top1", "top1_p", "top2", "top2_p", "top3", "top3_p",
              "duration", "n_clips", "reason")
SEGMENT_FIELDS = ("file", "start", "end", "label", "confidence", "uncertain")


def path_key(path: str | Path) -> str:
    """The identity of a file across runs: its absolute, case-normalised path."""
    return os.path.normcase(os.path.abspath(str(path)))


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """CSV form of a JSON result row (probabilities 4 decimals, duration in seconds, 2 decimals)."""
    flat = {k: row.get(k) for k in ("path", "status", "label", "n_clips", "reason")}
    flat["confidence"] = None if row.get("confidence") is None else f"{row['confidence']:.4f}"
    flat["uncertain"] = None if row.get("uncertain") is None else int(bool(row["uncertain"]))
    flat["duration"] = None if row.get("duration") is None else f"{row['duration']:.2f}"
    for i, t in enumerate((row.get("top") or [])[:3], start=1):
        flat[f"top{i}"], flat[f"top{i}_p"] = t["label"], f"{t['probability']:.4f}"
    return flat


def segment_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Segments-table rows of a JSON result row: ``file, start, end`` (seconds), ``label``,
    ``confidence`` (0..1), ``uncertain`` (the label is ``"uncertain"``); none for an error row."""
    return [{"file": row["path"], "start": float(s["start"]), "end": float(s["end"]), "label": s["label"],
             "confidence": float(s["confidence"]), "uncertain": s["label"] == "uncertain"}
            for s in row.get("timeline") or []]


def _flat_segment(seg: dict[str, Any]) -> dict[str, Any]:
    return {**seg, "start": f"{seg['start']:.3f}", "end": f"{seg['end']:.3f}", "confidence": f"{seg['confidence']:.4f}",
            "uncertain": int(bool(seg["uncertain"]))}


def _results_record(row: dict[str, Any]) -> dict[str, Any]:
    """Parquet record of a JSON result row (the CSV's information, top-k as a list)."""
    rec = {k: row.get(k) for k in ("path", "status", "label", "confidence", "uncertain", "duration", "n_clips", "reason")}
    rec["top"] = [{"label": t["label"], "probability": float(t["probability"])} for t in row.get("top") or []]
    return rec


def _results_schema() -> Any:
    import pyarrow as pa

    top = pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())]))
    return pa.schema([("path", pa.string()), ("status", pa.string()), ("label", pa.string()), ("confidence", pa.float64()),
                      ("uncertain", pa.bool_()), ("top", top), ("duration", pa.float64()), ("n_clips", pa.int64()),
                      ("reason", pa.string())])


def _segments_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("file", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("label", pa.string()),
                      ("confidence", pa.float64()), ("uncertain", pa.bool_())])


@dataclass(frozen=True)
class Table:
    """What one kind of row file holds: ``key`` (the column naming the file), the CSV columns and
    converters from a row to its CSV form and its parquet record, and the parquet schema."""

    name: str
    key: str
    csv_fields: tuple[str, ...]
    to_csv: Callable[[dict[str, Any]], dict[str, Any]]
    to_record: Callable[[dict[str, Any]], dict[str, Any]]
    schema: Callable[[], Any]


RESULTS = Table("results", "path", CSV_FIELDS, flat_row, _results_record, _results_schema)
SEGMENTS = Table("segments", "file", SEGMENT_FIELDS, _flat_segment, dict, _segments_schema)


def _format(path: Path, option: str) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ParameterError(f"The '{option}' parameter must end in .csv or .json (or .jsonl, .parquet). "
                             f"Got {str(path)!r} instead.")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as err:
            raise ParameterError(f"{path}: .parquet output needs pyarrow: pip install 'cultural-music[archive]'") from err
    return fmt


class RowFile:
    """An append-only row file (base class; :func:`open_rows` picks the format).

    After construction, :attr:`done` holds the keys (:func:`path_key`) of the files already in
    the file (with ``resume``); :meth:`write` appends one row, :meth:`close` finishes the file.
    """

    buffered = False  #: rows wait in memory before they are durable (parquet)

    def __init__(self, path: Path, table: Table) -> None:
        self.path = path
        self.table = table
        self.done: set[str] = set()
        #: called before a buffered file makes its open group durable (the segments' flush, so a
        #: file's segments are never lost while its result row is kept)
        self.before_flush: Callable[[], Any] | None = None

    def leftovers(self) -> list[Path]:
        """Sidecars of an unfinished run (they count as an existing output)."""
        return []

    def start(self, resume: bool) -> None:
        """Open for appending; with ``resume`` read back the keys already written."""
        raise NotImplementedError

    def keep_only(self, keys: set[str]) -> None:
        """Drop rows whose key is not in ``keys`` (segments of a file whose result row a kill lost)."""

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (made durable against a process kill before returning, except parquet)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file (idempotent)."""

    def _cannot(self, err: Exception | str) -> OutputError:
        return OutputError(f"{self.path}: cannot resume from it ({err}); pass --overwrite to start again")


class _LineFile(RowFile):
    """Shared by CSV and JSON lines: ``_records`` yields ``(key, start, end)`` byte offsets of each
    complete record; everything after the last one is a torn write and is cut off."""

    header = b""

    def start(self, resume: bool, target: Path | None = None) -> None:
        target = target or self.path
        end = 0
        if resume and target.is_file():
            for key, _, end in self._records(target):
                self.done.add(key)
            with open(target, "r+b") as fh:
                fh.truncate(end)
        self._fh = open(target, "ab")
        if end == 0:
            self._fh.truncate(0)
            self._fh.write(self._header())
            self._fh.flush()
        self._target = target

    def _header(self) -> bytes:
        return b""

    def _records(self, path: Path) -> Iterator[tuple[str, int, int]]:
        raise NotImplementedError

    def keep_only(self, keys: set[str]) -> None:
        cut = next((s for key, s, _ in self._records(self._target) if key not in keys), None)
        if cut is not None:
            self._fh.truncate(cut)
            self.done &= keys

    def _append(self, data: bytes) -> None:
        self._fh.write(data)
        self._fh.flush()

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None and not fh.closed:
            fh.close()


class CsvRows(_LineFile):
    """CSV: header once, then one line per row."""

    def _header(self) -> bytes:
        return self._line(dict(zip(self.table.csv_fields, self.table.csv_fields)))

    def _line(self, flat: dict[str, Any]) -> bytes:
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=self.table.csv_fields, lineterminator="\n", extrasaction="ignore").writerow(flat)
        return buf.getvalue().encode("utf-8")

    def _records(self, path: Path) -> Iterator[tuple[str, int, int]]:
        """Complete CSV records: a record ends at a newline outside quotes."""
        with open(path, "rb") as fh:
            pos, start, quotes, parts, index = 0, 0, 0, [], None
            for line in fh:
                parts.append(line)
                quotes += line.count(b'"')
                pos += len(line)
                if not line.endswith(b"\n") or quotes % 2:
                    continue
                try:
                    fields = next(csv.reader(io.StringIO(b"".join(parts).decode("utf-8"))))
                except (UnicodeDecodeError, csv.Error, StopIteration) as err:
                    raise self._cannot(err) from err
                if index is None:
                    if self.table.key not in fields:
                        raise self._cannot(f"no {self.table.key!r} column")
                    index = fields.index(self.table.key)
                elif len(fields) > index:
                    yield path_key(fields[index]), start, pos
                start, quotes, parts = pos, 0, []
            if index is None and pos:
                raise self._cannot("no complete header line")

    def write(self, row: dict[str, Any]) -> None:
        self._append(self._line(self.table.to_csv(row)))
        self.done.add(path_key(row[self.table.key]))


class JsonlRows(_LineFile):
    """JSON lines: one object per line."""

    def _records(self, path: Path) -> Iterator[tuple[str, int, int]]:
        with open(path, "rb") as fh:
            pos = 0
            for line in fh:
                start, pos = pos, pos + len(line)
                try:
                    obj = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    obj = None
                if not isinstance(obj, dict) or not obj.get(self.table.key):
                    if fh.read(1):  # not the last line: not a torn write but a broken file
                        raise self._cannot(f"line at byte {start} is not a JSON row object")
                    return
                yield path_key(obj[self.table.key]), start, pos

    def write(self, row: dict[str, Any]) -> None:
        self._append((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        self.done.add(path_key(row[self.table.key]))


class JsonRows(JsonlRows):
    """JSON: rows go to a JSON-lines sidecar, turned into one JSON array at close."""

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".partial.jsonl")

    def leftovers(self) -> list[Path]:
        return [self.sidecar] if self.sidecar.exists() else []

    def start(self, resume: bool, target: Path | None = None) -> None:
        if resume and self.path.is_file() and not self.sidecar.exists():
            self._to_sidecar()
        super().start(resume, self.sidecar)

    def _to_sidecar(self) -> None:
        """A finished ``.json`` being resumed: its rows become the sidecar (the array is read once)."""
        try:
            text = self.path.read_text(encoding="utf-8")
            rows = json.loads(text) if text.strip() else []
            if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get(self.table.key) for r in rows):
                raise ValueError("expected a JSON list of row objects")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise self._cannot(err) from err
        with atomic_path(self.sidecar) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is None or fh.closed:
            return
        fh.close()
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as out, open(self.sidecar, encoding="utf-8") as src:
            out.write("[")
            for i, line in enumerate(src):
                out.write(("\n" if i == 0 else ",\n") + line.rstrip("\n"))
            out.write("\n]\n")
        self.sidecar.unlink()


class ParquetRows(RowFile):
    """Parquet: complete part files of :data:`PARQUET_GROUP` rows, merged into one file at close."""

    group = PARQUET_GROUP
    buffered = True

    @property
    def parts(self) -> Path:
        return self.path.with_name(self.path.name + ".parts")

    def leftovers(self) -> list[Path]:
        return [self.parts] if self.parts.exists() else []

    def _keys(self, path: Path) -> Iterator[str]:
        import pyarrow.parquet as pq

        try:
            for batch in pq.ParquetFile(path).iter_batches(columns=[self.table.key], batch_size=4096):
                yield from (path_key(k) for k in batch.column(0).to_pylist())
        except (OSError, ValueError, KeyError) as err:  # pyarrow's errors derive from these
            raise self._cannot(err) from err

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def start(self, resume: bool) -> None:
        self._buf: list[dict[str, Any]] = []
        self._closed = False
        self._base = resume and self.path.is_file()
        if not resume:
            shutil.rmtree(self.parts, ignore_errors=True)
            return
        if self.path.is_file():
            self.done.update(self._keys(self.path))
        base = set(self.done)
        for part in self._part_files():
            keys = list(self._keys(part))
            if any(k in base for k in keys):  # a kill after the merge, before the parts were removed
                self._filter(part, base)
                keys = [k for k in keys if k not in base]
            self.done.update(keys)

    def _filter(self, part: Path, drop: set[str]) -> None:
        import pyarrow.parquet as pq

        table = pq.read_table(part)
        keep = [path_key(k) not in drop for k in table.column(self.table.key).to_pylist()]
        if not any(keep):
            part.unlink()
            return
        with atomic_path(part) as tmp:
            pq.write_table(table.filter(keep), tmp)

    def keep_only(self, keys: set[str]) -> None:
        for part in self._part_files():
            if any(k not in keys for k in self._keys(part)):
                self._filter(part, set(self._keys(part)) - keys)
        self.done &= keys

    def write(self, row: dict[str, Any]) -> None:
        self._buf.append(self.table.to_record(row))
        self.done.add(path_key(row[self.table.key]))
        if len(self._buf) >= self.group:
            self.flush()

    def flush(self) -> None:
        """Write the open group as the next part file (after :attr:`before_flush`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.before_flush is not None:
            self.before_flush()
        if not self._buf:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        files = self._part_files()
        n = int(files[-1].stem.split("-")[1]) + 1 if files else 0
        with atomic_path(self.parts / f"part-{n:06d}.parquet") as tmp:
            pq.write_table(pa.Table.from_pylist(self._buf, schema=self.table.schema()), tmp)
        self._buf = []

    def close(self) -> None:
        import pyarrow.parquet as pq

        if getattr(self, "_closed", True):
            return
        self.flush()
        self._closed = True
        parts = self._part_files()
        if not parts and self._base:
            return
        sources = ([self.path] if self._base else []) + parts
        schema = self.table.schema()
        with atomic_path(self.path) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for src in sources:
                    f = pq.ParquetFile(src)
                    for i in range(f.num_row_groups):
                        writer.write_table(f.read_row_group(i).cast(schema))
                if not sources:
                    writer.write_table(schema.empty_table())
        shutil.rmtree(self.parts, ignore_errors=True)


_CLASSES: dict[str, type[RowFile]] = {"csv": CsvRows, "jsonl": JsonlRows, "json": JsonRows, "parquet": ParquetRows}


def open_rows(path: str | Path, table: Table = RESULTS, *, resume: bool = False, overwrite: bool = False,
              option: str = "out") -> RowFile:
    """The row file at ``path`` (format by suffix), open for appending.

    Parameters
    ----------
    table
        :data:`RESULTS` (one row per file) or :data:`SEGMENTS` (one row per timeline segment).
    resume
        Keep what is there (its keys in :attr:`RowFile.done`), cutting off a torn last row.
    overwrite
        Without ``resume``, an existing file (or the sidecar of a killed run) is an error unless
        this is True.
    option
        The setting named in errors (``out`` or ``segments``).
    """
    p = Path(path)
    rows = _CLASSES[_format(p, option)](p, table)
    if not resume and not overwrite and (p.exists() or rows.leftovers()):
        raise OutputError(f"{p}: already exists (pass --resume to continue it, or --overwrite)")
    p.parent.mkdir(parents=True, exist_ok=True)
    rows.start(resume)
    return rows


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of a finished row file (any format), as dicts of its stored columns (CSV: strings)."""
    p = Path(path)
    fmt = _format(p, "path")
    if fmt == "csv":
        with open(p, newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
    elif fmt == "jsonl":
        with open(p, encoding="utf-8") as fh:
            yield from (json.loads(line) for line in fh if line.strip())
    elif fmt == "json":
        yield from json.loads(p.read_text(encoding="utf-8"))
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(p).iter_batches():
            yield from batch.to_pylist()
