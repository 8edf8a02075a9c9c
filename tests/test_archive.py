"""Labelling an archive: append-only writers that survive a kill, --segments, the --workers pool."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cultural_music.cli import main
from cultural_music.errors import OutputError, ParameterError
from cultural_music.inference.batch import error_row, run_batch
from cultural_music.inference.classifier import Classifier
from cultural_music.inference.writers import RESULTS, SEGMENTS, ParquetRows, open_rows, path_key, read_rows

from conftest import CORRUPT, write_folder
from tiny_model import SOUNDS, SR, shared_model

SRC = Path(__file__).resolve().parents[1] / "src"


def _row(i: int) -> dict:
    """A result row without a model (an error row; a path with a comma, quote and newline)."""
    return error_row(f"/archive/take {i}, \"live\"\nside.wav", f"reason {i}")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory.getbasetemp())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    files = {f"f{i}.wav": (SOUNDS[["beep", "Deuda", "Newari"][i % 3]], 1.5 + i % 3) for i in range(9)}
    return write_folder(tmp_path / "in", {**files, "bad.wav": CORRUPT}, sr=SR, seed=7)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_torn_last_row_is_dropped_and_rewritten_on_resume(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"r.{suffix}"
    rows = open_rows(out, RESULTS)
    for i in range(3):
        rows.write(_row(i))
    rows.close()
    whole = out.read_bytes()
    with open(out, "ab") as fh:  # a kill in the middle of writing row 3 (inside its quoted path)
        fh.write(whole[len(whole) // 2 + 40:][:30] if suffix == "jsonl" else b'"/archive/take 3, ""live""\n')
    again = open_rows(out, RESULTS, resume=True)
    assert again.done == {path_key(_row(i)["path"]) for i in range(3)}
    again.write(_row(3))
    again.close()
    got = list(read_rows(out))
    assert [r["path"] for r in got] == [_row(i)["path"] for i in range(4)]
    assert [r["reason"] for r in got] == [f"reason {i}" for i in range(4)]


def test_csv_append_keeps_header_once_and_refuses_a_foreign_file(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    for i in range(2):
        f = open_rows(out, RESULTS, resume=True)
        f.write(_row(i))
        f.close()
    assert out.read_text().count("path,status,label") == 1 and len(list(read_rows(out))) == 2
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(OutputError, match="cannot resume.*'path'"):
        open_rows(tmp_path / "x.csv", RESULTS, resume=True)
    with pytest.raises(OutputError, match="already exists"):
        open_rows(out, RESULTS)


def test_json_after_a_kill_resumes_from_its_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    rows = open_rows(out, RESULTS)
    rows.write(_row(0))
    rows.write(_row(1))  # killed: never closed
    assert not out.exists()
    with pytest.raises(OutputError, match="already exists"):  # the sidecar counts
        open_rows(out, RESULTS)
    again = open_rows(out, RESULTS, resume=True)
    assert len(again.done) == 2
    again.write(_row(2))
    again.close()
    assert [r["reason"] for r in json.loads(out.read_text())] == ["reason 0", "reason 1", "reason 2"]
    assert not rows.sidecar.exists()
    third = open_rows(out, RESULTS, resume=True)  # a finished .json resumed
    third.write(_row(3))
    third.close()
    assert len(json.loads(out.read_text())) == 4


def test_parquet_kill_loses_at_most_the_open_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow (the 'archive' extra) is not installed")
    monkeypatch.setattr(ParquetRows, "group", 2)
    out = tmp_path / "r.parquet"
    rows = open_rows(out, RESULTS)
    for i in range(5):
        rows.write(_row(i))  # killed after 5: two complete groups, row 4 in the open one
    again = open_rows(out, RESULTS, resume=True)
    assert again.done == {path_key(_row(i)["path"]) for i in range(4)}
    again.write(_row(4))
    saved = tmp_path / "parts_copy"
    shutil.copytree(again.parts, saved)
    again.close()
    assert not again.parts.exists()
    assert [r["reason"] for r in read_rows(out)] == [f"reason {i}" for i in range(5)]
    shutil.copytree(saved, again.parts)  # a kill after the merge, before the parts were removed
    third = open_rows(out, RESULTS, resume=True)
    third.write(_row(5))
    third.close()
    got = [r["path"] for r in read_rows(out)]
    assert sorted(got) == sorted(_row(i)["path"] for i in range(6)) and len(got) == 6


def test_segments_of_a_lost_result_row_are_written_again(tmp_path: Path) -> None:
    seg = {"start": 0.0, "end": 1.0, "label": "beep", "confidence": 0.9, "uncertain": False}
    segs = open_rows(tmp_path / "s.csv", SEGMENTS)
    segs.write({"file": "/a.wav", **seg})
    segs.write({"file": "/b.wav", **seg})  # killed before b's result row
    segs.close()
    again = open_rows(tmp_path / "s.csv", SEGMENTS, resume=True)
    again.keep_only({path_key("/a.wav")})
    again.write({"file": "/b.wav", **seg})
    again.close()
    assert [r["file"] for r in read_rows(tmp_path / "s.csv")] == ["/a.wav", "/b.wav"]


def test_pool_rows_equal_one_process_and_segments_follow(model: Path, folder: Path, tmp_path: Path) -> None:
    from cultural_music.inference.pool import PoolLabeller

    run_batch(Classifier.load(model), [folder], out=tmp_path / "one.jsonl", segments=tmp_path / "s1.csv", progress=False)
    summary = run_batch(None, [folder], out=tmp_path / "two.jsonl", segments=tmp_path / "s2.csv", progress=False,
                        labeller=PoolLabeller(model, workers=2, chunk=2))
    assert (summary.n_ok, summary.n_failed) == (9, 1)
    one = {r["path"]: r for r in read_rows(tmp_path / "one.jsonl")}
    two = {r["path"]: r for r in read_rows(tmp_path / "two.jsonl")}
    assert one.keys() == two.keys() and len(one) == 10
    for path, a in one.items():
        b = two[path]
        assert (a["status"], a["label"], a["reason"], a["duration"]) == (b["status"], b["label"], b["reason"], b["duration"])
        if a["status"] == "ok":
            pa, pb = np.array(list(a["probabilities"].values())), np.array(list(b["probabilities"].values()))
            np.testing.assert_allclose(pa, pb, atol=1e-6)
    s1 = sorted((r["file"], r["start"], r["label"]) for r in read_rows(tmp_path / "s1.csv"))
    assert s1 == sorted((r["file"], r["start"], r["label"]) for r in read_rows(tmp_path / "s2.csv")) and len(s1) >= 9


def test_cli_parquet_with_segments(model: Path, folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow (the 'archive' extra) is not installed")
    out, seg = tmp_path / "r.parquet", tmp_path / "s.parquet"
    assert main(["predict", str(model), str(folder), "--out", str(out), "--segments", str(seg), "--quiet",
                 "--threshold", "0"]) == 0
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert rows["bad.wav"]["status"] == "error" and rows["bad.wav"]["reason"]
    assert rows["f0.wav"]["label"] == "beep" and rows["f0.wav"]["top"][0]["label"] == "beep"
    assert rows["f2.wav"]["duration"] == pytest.approx(3.5)
    segs = [s for s in read_rows(seg) if Path(s["file"]).name == "f2.wav"]
    assert segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(3.5)
    with pytest.raises(ParameterError, match="parquet segments table needs a .parquet --out"):
        run_batch(Classifier.load(model), [folder], out=tmp_path / "r.csv", segments=tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "r.csv").exists()
    assert main(["predict", str(model), str(folder), "--workers", "2"]) == 2  # a usage error: needs --out


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_writes_each_row_exactly_once(model: Path, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "many", {f"f{i:02d}.wav": (SOUNDS["beep"], 6.0) for i in range(48)}, sr=SR, seed=1)
    out, seg = tmp_path / "r.csv", tmp_path / "s.jsonl"
    cmd = [sys.executable, "-c", "import sys; from cultural_music.cli import main; sys.exit(main(sys.argv[1:]))", "predict", str(model), str(root), "--out", str(out),
           "--segments", str(seg), "--workers", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    first = len(list(read_rows(out)))
    assert 0 < first < 48
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    paths = [r["path"] for r in read_rows(out)]
    assert len(paths) == 48 and len(set(paths)) == 48
    segs = [r["file"] for r in read_rows(seg)]
    assert sorted(segs) == sorted(paths)  # one segment per 6 s beep file, none twice
