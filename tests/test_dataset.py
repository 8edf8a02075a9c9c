from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cultural_music.data.dataset import read_groups_csv, read_split_csv, scan_folder, split_recordings, write_split_csv
from cultural_music.errors import DatasetError

from conftest import make_tone_dataset, tone, write


def test_scan_finds_classes_nested_files_and_extensions(tmp_path: Path) -> None:
    write(tmp_path / "A" / "x.wav", tone(440, 0.2))
    write(tmp_path / "A" / "deep" / "er" / "y.FLAC", tone(440, 0.2), format="FLAC")
    write(tmp_path / "B" / "z.ogg", tone(880, 0.2), format="OGG")
    (tmp_path / "B" / "notes.doc").write_text("hello")
    scan = scan_folder(tmp_path)
    assert scan.classes == ["A", "B"]
    assert [r.rel_path for r in scan.recordings] == ["A/deep/er/y.FLAC", "A/x.wav", "B/z.ogg"]
    assert [r.label for r in scan.recordings] == ["A", "A", "B"]
    assert any("notes.doc" in s.path and "unsupported" in s.reason for s in scan.skipped)


def test_scan_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    write(tmp_path / "only" / "a.wav", tone(440, 0.2))
    with pytest.raises(DatasetError, match="at least 2"):
        scan_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="1 class folder"):
        scan_folder(tmp_path)


def test_empty_class_folder_is_reported(tmp_path: Path) -> None:
    make_tone_dataset(tmp_path, per_class=3)
    (tmp_path / "silentclass").mkdir()
    scan = scan_folder(tmp_path)
    assert "silentclass" not in scan.classes
    assert any("silentclass" in w for w in scan.warnings)


def test_symlink_loop_is_skipped_not_fatal(tmp_path: Path) -> None:
    make_tone_dataset(tmp_path, per_class=3)
    os.symlink(tmp_path / "low", tmp_path / "low" / "loop")
    scan = scan_folder(tmp_path)
    assert len([r for r in scan.recordings if r.label == "low"]) >= 3
    assert any("loop" in s.reason for s in scan.skipped)


def test_split_keeps_groups_together_and_is_stratified(tmp_path: Path) -> None:
    make_tone_dataset(tmp_path, per_class=10)
    scan = scan_folder(tmp_path)
    csv = tmp_path / "groups.csv"
    # pairs of files share a group
    csv.write_text("path,group\n" + "".join(f"{r.rel_path},{r.label}-{i // 2}\n" for i, r in enumerate(scan.recordings)))
    scan = read_groups_csv(csv, scan)
    recs = split_recordings(scan.recordings, seed=3)
    sides: dict[str, set[str]] = {}
    for r in recs:
        sides.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    for label in ("low", "mid", "high"):
        assert {r.split for r in recs if r.label == label} == {"train", "val", "test"}
    again = split_recordings(scan.recordings, seed=3)
    assert [r.split for r in again] == [r.split for r in recs]
    other = split_recordings(scan.recordings, seed=4)
    assert [r.split for r in other] != [r.split for r in recs]


def test_split_needs_three_groups_per_class(tmp_path: Path) -> None:
    make_tone_dataset(tmp_path, per_class=3)
    (tmp_path / "low" / "low_0.wav").unlink()
    with pytest.raises(DatasetError, match="'low' has 2 recording group"):
        split_recordings(scan_folder(tmp_path).recordings)


def test_split_csv_round_trip(tmp_path: Path) -> None:
    make_tone_dataset(tmp_path / "d", per_class=4)
    recs = split_recordings(scan_folder(tmp_path / "d").recordings)
    write_split_csv(tmp_path / "split.csv", recs)
    back = read_split_csv(tmp_path / "split.csv", tmp_path / "d")
    assert [(r.rel_path, r.label, r.group, r.split) for r in back] == [(r.rel_path, r.label, r.group, r.split) for r in recs]
    assert all(r.path.exists() for r in back)


def test_non_ascii_and_spaces(tmp_path: Path) -> None:
    write(tmp_path / "tamang selo" / "gīt 1.wav", tone(440, 0.2))
    write(tmp_path / "Ñewari" / "sóng two.wav", tone(880, 0.2))
    scan = scan_folder(tmp_path)
    assert scan.classes == ["tamang selo", "Ñewari"]
    assert np.all([r.path.exists() for r in scan.recordings])


def test_split_with_groups_spanning_classes_keeps_each_group_on_one_side(tmp_path: Path) -> None:
    """Speakers (groups) each say every class: whole speakers go to test / val / train."""
    from cultural_music.data.dataset import Recording

    recs = [Recording(path=tmp_path / f"{c}/{s}_{i}.wav", rel_path=f"{c}/{s}_{i}.wav", label=c, group=s)
            for c in ("zero", "one", "two") for s in ("ann", "bob", "cem", "dan", "eve", "fay") for i in range(3)]
    out = split_recordings(recs, val_fraction=0.15, test_fraction=0.15, seed=1)
    side_of: dict[str, set[str]] = {}
    for r in out:
        side_of.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in side_of.values())
    sides = sorted(next(iter(s)) for s in side_of.values())
    assert sides == ["test", "train", "train", "train", "train", "val"]
    assert {(r.label, r.split) for r in out} == {(c, s) for c in ("zero", "one", "two") for s in ("train", "val", "test")}
    assert [r.split for r in split_recordings(recs, seed=1)] == [r.split for r in out]


def test_split_with_too_few_shared_groups_names_the_problem(tmp_path: Path) -> None:
    from cultural_music.data.dataset import Recording

    recs = [Recording(path=tmp_path / f"{c}{s}.wav", rel_path=f"{c}{s}.wav", label=c, group=s)
            for c in ("a", "b") for s in ("p", "q")]
    with pytest.raises(DatasetError, match="only 2; at least 3 groups"):
        split_recordings(recs)
