"""A recording's timeline as a label file that Audacity, Raven Pro or Sonic Visualiser opens.

One writer per format, each a pure function of the segments (and, for Raven, the model's
sample rate) to text; :func:`write_label_file` writes one file atomically, next to the
recording or under an output folder; :class:`LabelWriter` does it for every file of a
``predict`` run.  The formats, checked against their published specifications
(docs/prediction.md, "Label files for Audacity, Raven and Sonic Visualiser"):

* ``audacity``: ``<stem>.audacity.txt``, the Audacity label track text: one region a line,
  ``start<TAB>end<TAB>label``, seconds with 6 decimals, no header.
* ``raven``: ``<stem>.Table.1.selections.txt``, a Raven Pro selection table: tab-separated,
  header ``Selection View Channel Begin Time (s) End Time (s) Low Freq (Hz) High Freq (Hz)``
  plus the annotation columns ``Class Confidence Label``; view ``Spectrogram 1``, channel 1,
  0 Hz to the Nyquist frequency of the model's sample rate.
* ``sonic-visualiser``: ``<stem>.sv.csv``, comma-separated ``start,end,label`` in seconds,
  no header: Sonic Visualiser imports it as a region layer (columns: start time, end time,
  label), ELAN's CSV import as begin time, end time, annotation.

Labels read ``<kind> (<confidence>%)``, or ``uncertain (<confidence>%)`` for a stretch whose
top probability is below the model's threshold (the confidence is then that of the top class).
Torch-free.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cultural_music.atomic import atomic_write_text
from cultural_music.errors import OutputError, ParameterError
from cultural_music.inference.batch import expand_inputs
from cultural_music.inference.timeline import Segment

__all__ = ["FORMATS", "SUFFIXES", "RAVEN_HEADER", "parse_formats", "check_label_options", "clean_text", "segment_label",
           "audacity_text", "raven_text",
           "sonic_visualiser_text", "render", "label_path", "write_label_file", "mirror_root", "LabelWriter"]

FORMATS = ("audacity", "raven", "sonic-visualiser")
SUFFIXES = {"audacity": ".audacity.txt", "raven": ".Table.1.selections.txt", "sonic-visualiser": ".sv.csv"}
_ALIASES = {"sonic-visualizer": "sonic-visualiser", "sv": "sonic-visualiser", "elan": "sonic-visualiser",
            "raven-pro": "raven"}
RAVEN_HEADER = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                "Class", "Confidence", "Label")
RAVEN_VIEW = "Spectrogram 1"
_DECIMALS = 6  # seconds: microseconds, as Audacity writes them


def parse_formats(values: Iterable[str]) -> tuple[str, ...]:
    """Format names from repeated and/or comma-separated values (``"audacity,raven"``), in the
    order given, without repeats.  Case-insensitive; ``sv`` and ``sonic-visualizer`` are aliases.

    Raises
    ------
    ParameterError
        An unknown name.
    """
    out: list[str] = []
    for value in values:
        for name in (part.strip().lower() for part in value.split(",")):
            if not name:
                continue
            fmt = _ALIASES.get(name, name)
            if fmt not in FORMATS:
                raise ParameterError(f"The 'labels' parameter of predict must be one of {', '.join(FORMATS)} "
                                     f"(or a comma list of them). Got {name!r} instead.")
            if fmt not in out:
                out.append(fmt)
    return tuple(out)


def check_label_options(labels: Sequence[str], labels_dir: str | Path | None) -> tuple[str, ...]:
    """The formats of ``predict --labels`` (:func:`parse_formats`), checked before any work.

    Raises
    ------
    ParameterError
        An unknown format, or ``--labels-dir`` without ``--labels``.
    """
    formats = parse_formats(labels)
    if labels_dir is not None and not formats:
        raise ParameterError(f"--labels-dir {labels_dir}: give --labels FORMAT too ({', '.join(FORMATS)})")
    return formats


def clean_text(text: str) -> str:
    """``text`` on one line for any label format: tabs, newlines and other control or separator
    characters become one space each, ``"`` becomes ``'`` and ``\\`` becomes ``/`` (Sonic
    Visualiser reads both as quoting), runs of spaces collapse, the ends are stripped."""
    chars = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch.isspace():
            chars.append(" ")
        else:
            chars.append({'"': "'", "\\": "/"}.get(ch, ch))
    return " ".join("".join(chars).split())


def segment_label(segment: Segment) -> str:
    """``Deuda (95.67%)``; ``uncertain (48.20%)`` for an uncertain stretch (confidence of its top
    class); the class name made safe by :func:`clean_text`."""
    return f"{clean_text(segment.label) or '?'} ({segment.confidence * 100:.2f}%)"


def _rows(segments: Sequence[Segment]) -> list[tuple[str, str, Segment]]:
    """``(start, end, segment)`` with times as text (seconds, 6 decimals), in time order; a
    segment that rounds to no time at all is left out (its neighbours already meet there)."""
    rows = []
    for seg in sorted(segments, key=lambda s: (s.start, s.end)):
        start, end = f"{seg.start:.{_DECIMALS}f}", f"{seg.end:.{_DECIMALS}f}"
        if float(end) > float(start):
            rows.append((start, end, seg))
    return rows


def audacity_text(segments: Sequence[Segment]) -> str:
    """Audacity label track text: ``start<TAB>end<TAB>label`` a line, seconds, no header."""
    return "".join(f"{start}\t{end}\t{segment_label(seg)}\n" for start, end, seg in _rows(segments))


def raven_text(segments: Sequence[Segment], *, sample_rate: float) -> str:
    """Raven Pro selection table: the :data:`RAVEN_HEADER` line, then one selection a line,
    numbered from 1, on ``Spectrogram 1`` of channel 1, from 0 Hz to ``sample_rate / 2`` Hz;
    ``Class`` is the kind or ``uncertain``, ``Confidence`` 0..1 (4 decimals)."""
    nyquist = f"{float(sample_rate) / 2:.1f}"
    lines = ["\t".join(RAVEN_HEADER)]
    for i, (start, end, seg) in enumerate(_rows(segments), start=1):
        lines.append("\t".join((str(i), RAVEN_VIEW, "1", start, end, "0.0", nyquist, clean_text(seg.label) or "?",
                                f"{seg.confidence:.4f}", segment_label(seg))))
    return "\n".join(lines) + "\n"


def sonic_visualiser_text(segments: Sequence[Segment]) -> str:
    """CSV ``start,end,label`` (seconds, no header) for Sonic Visualiser and ELAN; a label with a
    comma, or starting with ``'``, is double-quoted (it holds no ``"``, :func:`clean_text`)."""
    lines = []
    for start, end, seg in _rows(segments):
        label = segment_label(seg)
        if "," in label or label.startswith("'"):
            label = f'"{label}"'
        lines.append(f"{start},{end},{label}\n")
    return "".join(lines)


def render(fmt: str, segments: Sequence[Segment], *, sample_rate: float) -> str:
    """The text of format ``fmt`` (one of :data:`FORMATS`) for ``segments``."""
    if fmt == "audacity":
        return audacity_text(segments)
    if fmt == "raven":
        return raven_text(segments, sample_rate=sample_rate)
    if fmt == "sonic-visualiser":
        return sonic_visualiser_text(segments)
    raise ParameterError(f"The 'fmt' parameter of render must be one of {', '.join(FORMATS)}. Got {fmt!r} instead.")


def label_path(audio_path: str | Path, fmt: str, out_dir: str | Path | None = None, *,
               root: str | Path | None = None, keep_extension: bool = False) -> Path:
    """Where the ``fmt`` label file of ``audio_path`` goes: ``<stem><suffix>`` (:data:`SUFFIXES`)
    next to the recording, or under ``out_dir`` at the recording's path relative to ``root``
    (mirroring the input tree; default root: the recording's folder).  ``keep_extension`` names
    it ``<name><suffix>`` (``song.mp3.audacity.txt``), for two inputs that share a stem."""
    audio = Path(audio_path)
    name = (audio.name if keep_extension else audio.stem) + SUFFIXES[fmt]
    if out_dir is None:
        return audio.with_name(name)
    folder = os.path.abspath(audio.parent)
    rel = Path(os.path.relpath(folder, os.path.abspath(root) if root is not None else folder))
    if rel.parts and rel.parts[0] == os.pardir:  # outside root: keep its absolute folders under out_dir
        rel = Path(*Path(folder).parts[1:])
    return Path(out_dir) / rel / name


def write_label_file(segments: Sequence[Segment], audio_path: str | Path, fmt: str, out_dir: str | Path | None = None,
                     *, sample_rate: float, root: str | Path | None = None, keep_extension: bool = False) -> Path:
    """Write the ``fmt`` label file of one recording atomically (UTF-8, ``\\n`` line ends) at
    :func:`label_path` and return its path.

    Raises
    ------
    OutputError
        The file or its folder cannot be written.
    """
    path = label_path(audio_path, fmt, out_dir, root=root, keep_extension=keep_extension)
    atomic_write_text(path, render(fmt, segments, sample_rate=sample_rate))
    return path


def mirror_root(inputs: Iterable[str | Path]) -> Path:
    """The folder an output tree mirrors: the deepest folder holding every input (a folder
    input counts as itself, a file as its folder), so distinct inputs keep distinct paths."""
    dirs = [os.path.abspath(p if Path(p).is_dir() else Path(p).parent) for p in inputs]
    if not dirs:
        return Path.cwd()
    try:
        return Path(os.path.commonpath(dirs))
    except ValueError:  # different drives (Windows): nothing in common
        return Path(Path(dirs[0]).anchor)


class LabelWriter:
    """Writes the label files of every recording a ``predict`` run labels.

    Parameters
    ----------
    inputs
        The run's files and folders (as given to ``predict``).
    formats
        Format names (:func:`parse_formats`).
    sample_rate
        The model's sample rate in Hz (Raven's frequency range is 0 to half of it).
    out_dir
        Write under this folder, mirroring the inputs' tree below :func:`mirror_root`;
        ``None``: next to each recording.
    report
        Called with ``"PATH: reason"`` for a label file that cannot be written (the run goes on).

    Attributes
    ----------
    written
        Paths written so far.
    failed
        ``"PATH: reason"`` for each failure so far.
    """

    def __init__(self, inputs: Sequence[str | Path], formats: Iterable[str], *, sample_rate: float,
                 out_dir: str | Path | None = None, report: Callable[[str], Any] | None = None) -> None:
        self.formats = parse_formats(formats)
        self.sample_rate = float(sample_rate)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.root = mirror_root(inputs)
        self.report = report
        self.written: list[Path] = []
        self.failed: list[str] = []
        files = {Path(os.path.abspath(p)) for p in expand_inputs(inputs)}  # a file given twice is one file
        stems = Counter(self._stem_key(p) for p in files)
        self._shared = {key for key, n in stems.items() if n > 1}

    @staticmethod
    def _stem_key(path: Path) -> tuple[str, str]:
        return (os.path.normcase(os.path.abspath(path.parent)), path.stem.casefold())

    def write(self, audio_path: str | Path, segments: Sequence[Segment]) -> list[Path]:
        """Write every format for one recording; a failure is reported and recorded, not raised."""
        audio = Path(audio_path)
        keep = self._stem_key(audio) in self._shared
        done = []
        for fmt in self.formats:
            try:
                done.append(write_label_file(segments, audio, fmt, self.out_dir, sample_rate=self.sample_rate,
                                             root=self.root, keep_extension=keep))
            except OutputError as err:
                self.failed.append(f"{audio}: label file not written ({err})")
                if self.report is not None:
                    self.report(self.failed[-1])
        self.written += done
        return done

    def write_prediction(self, prediction: Any) -> list[Path]:
        """:meth:`write` for a :class:`~cultural_music.inference.classifier.Prediction`."""
        return self.write(prediction.path, prediction.timeline)

    def write_row(self, row: dict[str, Any]) -> list[Path]:
        """:meth:`write` for a batch JSON row (``run_batch(on_row=...)``); error rows are skipped."""
        if row.get("status") != "ok":
            return []
        segments = [Segment(str(s["label"]), float(s["start"]), float(s["end"]), float(s["confidence"]))
                    for s in row.get("timeline") or []]
        return self.write(row["path"], segments)

    def summary(self) -> str:
        """One line: how many label files failed and where to look (empty when none did)."""
        if not self.failed:
            return ""
        where = "--labels-dir" if self.out_dir is not None else "the recordings' folders (or pass --labels-dir DIR)"
        return (f"{len(self.failed)} label file(s) could not be written (each reported above); "
                f"check that {where} can be written")
