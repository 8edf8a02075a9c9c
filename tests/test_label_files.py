"""Label files for Audacity, Raven Pro and Sonic Visualiser / ELAN (docs/prediction.md): each
writer parsed back against its format, names that never collide, and ``predict --labels``."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cultural_music.cli import main
from cultural_music.errors import ParameterError
from cultural_music.inference.label_files import (RAVEN_HEADER, LabelWriter, audacity_text, label_path, parse_formats,
                                                  raven_text, sonic_visualiser_text)
from cultural_music.inference.timeline import Segment

from conftest import CORRUPT, write, write_folder
from tiny_model import SOUNDS, SR, shared_model

SECONDS = re.compile(r"^\d+\.\d{6}$")
SEGMENTS = [Segment("Deuda", 0.0, 12.5, 0.931), Segment("uncertain", 12.5, 17.125, 0.482),
            Segment("Tharu, west\tbank\n\"live\"", 17.125, 60.0, 0.8875)]


def _check_times(starts: list[str], ends: list[str], duration: float) -> None:
    """Seconds with 6 decimals; each region non-empty; they tile 0..duration in order."""
    assert all(SECONDS.match(t) for t in starts + ends)
    s, e = [float(t) for t in starts], [float(t) for t in ends]
    assert s[0] == 0.0 and e[-1] == duration
    assert all(a < b for a, b in zip(s, e)) and s[1:] == e[:-1]


def test_audacity_label_track() -> None:
    """Audacity manual, "Importing and Exporting Labels": start TAB end TAB label, no header."""
    text = audacity_text(SEGMENTS)
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 4  # one region a line, each ended by a newline
    fields = [line.split("\t") for line in lines[:-1]]
    assert all(len(f) == 3 for f in fields)
    _check_times([f[0] for f in fields], [f[1] for f in fields], 60.0)
    assert [f[2] for f in fields] == ["Deuda (93.10%)", "uncertain (48.20%)", "Tharu, west bank 'live' (88.75%)"]


def test_raven_selection_table() -> None:
    text = raven_text(SEGMENTS, sample_rate=16000)
    lines = text.split("\n")
    assert lines[0] == ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)"
                        "\tClass\tConfidence\tLabel")
    rows = [dict(zip(RAVEN_HEADER, line.split("\t"))) for line in lines[1:-1]]
    assert lines[-1] == "" and all(line.count("\t") == len(RAVEN_HEADER) - 1 for line in lines[1:-1])
    assert [r["Selection"] for r in rows] == ["1", "2", "3"]
    assert {r["View"] for r in rows} == {"Spectrogram 1"} and {r["Channel"] for r in rows} == {"1"}
    assert {(float(r["Low Freq (Hz)"]), float(r["High Freq (Hz)"])) for r in rows} == {(0.0, 8000.0)}
    _check_times([r["Begin Time (s)"] for r in rows], [r["End Time (s)"] for r in rows], 60.0)
    assert [r["Class"] for r in rows] == ["Deuda", "uncertain", "Tharu, west bank 'live'"]
    assert [float(r["Confidence"]) for r in rows] == [0.931, 0.482, 0.8875]
    assert rows[1]["Label"] == "uncertain (48.20%)"


def test_sonic_visualiser_csv_is_a_region_layer() -> None:
    """Sonic Visualiser guesses column purposes from the data (svcore CSVFormat::guessPurposes):
    increasing numbers with a decimal point are start and end times in seconds, text is a label,
    two time columns make a region layer.  ELAN maps the same three columns by hand."""
    text = sonic_visualiser_text(SEGMENTS)
    assert not text.startswith("start")  # no header: SV would read it as data
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(r) == 3 for r in rows) and len(rows) == 3
    _check_times([r[0] for r in rows], [r[1] for r in rows], 60.0)
    assert [r[2] for r in rows] == ["Deuda (93.10%)", "uncertain (48.20%)", "Tharu, west bank 'live' (88.75%)"]
    assert text.splitlines()[2].endswith(',"Tharu, west bank \'live\' (88.75%)"')  # a comma inside: quoted
    for r in rows:
        with pytest.raises(ValueError):
            float(r[2])


def test_a_segment_that_rounds_to_nothing_is_left_out() -> None:
    segs = [Segment("a", 0.0, 1.0000001, 0.9), Segment("b", 1.0000001, 1.0000002, 0.8),
            Segment("a", 1.0000002, 2.0, 0.9)]
    lines = audacity_text(segs).splitlines()
    assert [line.split("\t")[:2] for line in lines] == [["0.000000", "1.000000"], ["1.000000", "2.000000"]]


def test_parse_formats() -> None:
    assert parse_formats(["audacity,raven", "SV", "audacity"]) == ("audacity", "raven", "sonic-visualiser")
    with pytest.raises(ParameterError, match="'labels'.*praat"):
        parse_formats(["praat"])


def test_names_mirror_the_tree_and_never_collide(tmp_path: Path) -> None:
    a, b = tmp_path / "in" / "a" / "x.wav", tmp_path / "in" / "b" / "x.wav"
    assert label_path(a, "raven") == a.with_name("x.Table.1.selections.txt")
    out = tmp_path / "labels"
    paths = {label_path(p, "audacity", out, root=tmp_path / "in") for p in (a, b)}
    assert paths == {out / "a" / "x.audacity.txt", out / "b" / "x.audacity.txt"}
    assert label_path(a, "sonic-visualiser", keep_extension=True).name == "x.wav.sv.csv"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory.getbasetemp())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a/x.wav (beep), b/x.wav (Deuda), b/x.flac (beep), b/bad.wav (corrupt)."""
    return write_folder(tmp_path / "in", {"a/x.wav": (SOUNDS["beep"], 2.5), "b/x.wav": (SOUNDS["Deuda"], 1.5),
                                          "b/x.flac": (SOUNDS["beep"], 1.0), "b/bad.wav": CORRUPT}, sr=SR, seed=7)


def test_predict_writes_label_files_next_to_recordings(model: Path, folder: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Without --out: every format for each good file; the bad file is reported and skipped."""
    code = main(["predict", str(model), str(folder), "--threshold", "0", "--labels", "audacity,raven",
                 "--labels", "sonic-visualiser"])
    err = capsys.readouterr().err
    assert code == 1 and f"error: {folder / 'b' / 'bad.wav'}:" in err
    made = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.suffix != ".wav"
                  and p.suffix != ".flac")
    assert made == ["a/x.Table.1.selections.txt", "a/x.audacity.txt", "a/x.sv.csv",
                    "b/x.flac.Table.1.selections.txt", "b/x.flac.audacity.txt", "b/x.flac.sv.csv",
                    "b/x.wav.Table.1.selections.txt", "b/x.wav.audacity.txt", "b/x.wav.sv.csv"]
    audacity = (folder / "a" / "x.audacity.txt").read_text(encoding="utf-8").splitlines()
    assert audacity[-1].split("\t")[1] == "2.500000" and audacity[0].split("\t")[2].startswith("beep (")
    assert (folder / "b" / "x.wav.sv.csv").read_text(encoding="utf-8").split(",")[2].startswith("Deuda (")
    raven = (folder / "b" / "x.flac.Table.1.selections.txt").read_text(encoding="utf-8").splitlines()
    assert raven[1].split("\t")[6] == f"{SR / 2:.1f}"


def test_predict_out_and_labels_dir(model: Path, folder: Path, tmp_path: Path) -> None:
    """With --out and --labels-dir: one file per good recording under the folder, the input tree
    mirrored (a/x and b/x do not collide), the same segments as the results file."""
    out, labels = tmp_path / "r.json", tmp_path / "labels"
    assert main(["predict", str(model), str(folder / "a"), str(folder / "b"), "--out", str(out), "--quiet",
                 "--labels", "audacity", "--labels-dir", str(labels)]) == 0
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*") if p.is_file()) == [
        "a/x.audacity.txt", "b/x.flac.audacity.txt", "b/x.wav.audacity.txt"]
    rows = {Path(r["path"]).relative_to(folder).as_posix(): r for r in json.loads(out.read_text())}
    lines = (labels / "b" / "x.wav.audacity.txt").read_text(encoding="utf-8").splitlines()
    assert [float(t) for line in lines for t in line.split("\t")[:2]] == pytest.approx(
        [t for seg in rows["b/x.wav"]["timeline"] for t in (seg["start"], seg["end"])], abs=1e-6)
    assert not any(folder.rglob("*.txt"))  # nothing next to the recordings


def test_uncertain_segments_are_marked_in_the_files(model: Path, folder: Path) -> None:
    assert main(["predict", str(model), str(folder / "a"), "--threshold", "1", "--labels", "raven"]) == 0
    rows = (folder / "a" / "x.Table.1.selections.txt").read_text(encoding="utf-8").splitlines()[1:]
    assert rows and all(r.split("\t")[7] == "uncertain" and r.split("\t")[9].startswith("uncertain (") for r in rows)


def test_bad_label_options_and_unwritable_folder(model: Path, folder: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(model), str(folder / "a"), "--labels", "praat"]) == 1
    assert "'labels'" in capsys.readouterr().err
    assert main(["predict", str(model), str(folder / "a"), "--labels-dir", str(tmp_path / "l")]) == 1
    assert "--labels-dir" in capsys.readouterr().err
    (tmp_path / "l" / "x.audacity.txt").mkdir(parents=True)  # a folder where the label file should go
    assert main(["predict", str(model), str(folder / "a"), "--labels", "audacity",
                 "--labels-dir", str(tmp_path / "l")]) == 1
    std = capsys.readouterr()
    assert std.out.startswith("🎵 x.wav: ") and "1 label file(s) could not be written" in std.err


def test_writer_mirror_root_for_single_file(tmp_path: Path) -> None:
    song = write(tmp_path / "deep" / "song.wav", np.zeros(800, dtype=np.float32), SR)
    w = LabelWriter([song], ["audacity"], sample_rate=SR, out_dir=tmp_path / "out")
    assert w.write(song, SEGMENTS[:1]) == [tmp_path / "out" / "song.audacity.txt"]
