"""Batch prediction: folders in, one row per file out, bad files recorded, resumable, crash-safe."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cultural_music.inference.batch import expand_inputs, run_batch
from cultural_music.cli import main
from cultural_music.errors import OutputError, ParameterError
from cultural_music.inference.classifier import Classifier

from conftest import CORRUPT, write_folder
from tiny_model import SOUNDS, SR, shared_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory.getbasetemp())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a.wav (beep), b.wav (corrupt), sub/c.WAV (Deuda), notes.txt (ignored)."""
    return write_folder(tmp_path / "in", {"a.wav": (SOUNDS["beep"], 1.5), "b.wav": CORRUPT,
                                          "sub/c.WAV": (SOUNDS["Deuda"], 2.0), "notes.txt": "not audio"}, sr=SR, seed=4)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_expand_inputs_recursive_case_insensitive(folder: Path) -> None:
    files = expand_inputs([folder, folder / "missing.mp3"])
    assert [f.relative_to(folder).as_posix() for f in files[:3]] == ["a.wav", "b.wav", "sub/c.WAV"]
    assert files[3] == folder / "missing.mp3" and len(files) == 4


def test_corrupt_file_in_the_middle_does_not_stop_the_run(model: Path, folder: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.csv"
    assert main(["predict", str(model), str(folder), "--out", str(out), "--quiet", "--threshold", "0"]) == 0
    rows = _csv(out)
    assert [Path(r["path"]).name for r in rows] == ["a.wav", "b.wav", "c.WAV"]
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert [r["label"] for r in rows] == ["beep", "", "Deuda"]
    assert "corrupt" in rows[1]["reason"] or "not a readable" in rows[1]["reason"]
    assert rows[0]["top1"] == "beep" and float(rows[0]["top1_p"]) >= float(rows[0]["top2_p"]) >= float(rows[0]["top3_p"])
    assert float(rows[2]["duration"]) == pytest.approx(2.0) and rows[0]["uncertain"] == "0"
    assert "2 ok (0 uncertain), 1 failed" in capsys.readouterr().out


def test_json_output_has_timeline(model: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run_batch(Classifier.load(model), [folder], out=out, progress=False)
    rows = json.loads(out.read_text())
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[2]["timeline"][-1]["end"] == pytest.approx(2.0) and rows[1]["reason"]


def test_resume_skips_files_already_done(model: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    clf = Classifier.load(model)
    run_batch(clf, [folder / "a.wav"], out=out, progress=False)
    first = _csv(out)
    seen: list[str] = []
    summary = run_batch(clf, [folder], out=out, resume=True, progress=False, on_row=lambda r: seen.append(Path(r["path"]).name))
    assert seen == ["b.wav", "c.WAV"] and summary.n_skipped == 1
    rows = _csv(out)
    assert rows[0] == first[0] and len(rows) == 3
    again = run_batch(clf, [folder], out=out, resume=True, progress=False)
    assert (again.n_ok, again.n_failed, again.n_skipped) == (0, 0, 3)


def test_existing_output_needs_resume_or_overwrite(model: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    out.write_text("precious\n")
    assert main(["predict", str(model), str(folder / "a.wav"), "--out", str(out), "--quiet"]) == 1
    assert out.read_text() == "precious\n"
    assert main(["predict", str(model), str(folder / "a.wav"), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert len(_csv(out)) == 1
    with pytest.raises(ParameterError, match=".csv or .json"):
        run_batch(Classifier.load(model), [folder], out=tmp_path / "r.txt", progress=False)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(OutputError, match="cannot resume"):
        run_batch(Classifier.load(model), [folder], out=tmp_path / "broken.json", resume=True, progress=False)


def test_interrupted_run_leaves_a_valid_file_and_resumes(model: Path, folder: Path, tmp_path: Path) -> None:
    class Interrupting(Classifier):
        calls = 0

        def predict(self, path, **kw):  # type: ignore[no-untyped-def, override]
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return super().predict(path, **kw)

    out = tmp_path / "results.json"
    clf = Interrupting(Classifier.load(model).artifact)
    with pytest.raises(KeyboardInterrupt):
        run_batch(clf, [folder], out=out, progress=False, flush_seconds=1e9)
    rows = json.loads(out.read_text())  # flushed on the way out, complete JSON
    assert [Path(r["path"]).name for r in rows] == ["a.wav", "b.wav"]
    summary = run_batch(Classifier.load(model), [folder], out=out, resume=True, progress=False)
    assert (summary.n_ok, summary.n_skipped) == (1, 2)
    assert [Path(r["path"]).name for r in json.loads(out.read_text())] == ["a.wav", "b.wav", "c.WAV"]


def test_all_files_failing_exits_1(model: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.csv"
    assert main(["predict", str(model), str(folder / "b.wav"), "--out", str(out), "--quiet"]) == 1
    assert "error: no file could be labelled" in capsys.readouterr().err
    assert _csv(out)[0]["status"] == "error"
    assert main(["predict", str(model), str(tmp_path / "empty_dir_does_not_exist")]) == 1


class _Crashing(Classifier):
    """A decoder crash (not an AudioLoadError) on files named c.*: a bad file, not a bad run."""

    def predict(self, path, **kw):  # type: ignore[no-untyped-def, override]
        if Path(path).stem == "c":
            raise RuntimeError("decoder blew up")
        return super().predict(path, **kw)


@pytest.mark.parametrize("as_json", [False, True])
def test_one_error_policy_with_and_without_out(model: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], as_json: bool) -> None:
    """Without --out a crashing file is skipped and reported exactly as a batch run records it,
    the other files are still labelled, and the exit code is 1 (docs/prediction.md)."""
    import cultural_music.inference.load as load

    clf = _Crashing(Classifier.load(model).artifact)
    monkeypatch.setattr(load, "load_classifier", lambda model_dir, onnx=False: clf)
    out = tmp_path / "r.json"
    assert main(["predict", str(model), str(folder), "--out", str(out), "--quiet"]) == 0
    batch = {Path(r["path"]).name: r for r in json.loads(out.read_text())}
    assert batch["c.WAV"]["reason"] == "unexpected RuntimeError: decoder blew up"
    capsys.readouterr()
    assert main(["predict", str(model), str(folder), "--threshold", "0", *(["--json"] if as_json else [])]) == 1
    std = capsys.readouterr()
    if as_json:
        rows = [json.loads(line) for line in std.out.splitlines()]
        assert [r["status"] for r in rows] == ["ok", "error", "error"]
        assert [r["reason"] for r in rows[1:]] == [batch["b.wav"]["reason"], batch["c.WAV"]["reason"]]
    else:
        assert std.out.startswith("🎵 a.wav: beep") and len(std.out.splitlines()) == 1
        assert f"error: {folder / 'sub' / 'c.WAV'}: unexpected RuntimeError: decoder blew up" in std.err.splitlines()
    assert "2 of 3 file(s) could not be labelled" in std.err
