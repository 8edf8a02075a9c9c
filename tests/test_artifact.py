"""Model folders that cannot lie: a retrain swaps in a complete folder, the split belongs to the
model, model.json is validated field by field (issue 14, section 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cultural_music.training.artifact import load_artifact
from cultural_music.errors import ModelLoadError, OutputError
from cultural_music.training.pipeline import run_training

from conftest import make_tone_dataset
from test_reliability import CFG, QUIET


class _Interrupt(Exception):
    pass


def _stop_at(prefix: str):
    def log(line: str) -> None:
        if line.startswith(prefix):
            raise _Interrupt

    return log


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_killed_retrain_leaves_the_old_model_folder_intact_and_resume_works(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    cfg = CFG.replace(train={"epochs": 2})
    out = tmp_path / "m"
    run_training(data, out, cfg, cache_dir=tmp_path / "c", **QUIET)
    before = _files(out)
    retrain = cfg.replace(train={"seed": 7, "val_fraction": 0.3})  # a different split
    with pytest.raises(_Interrupt):
        run_training(data, out, retrain, cache_dir=tmp_path / "c", workers=1, progress=False, log=_stop_at("epoch   2/"))
    after = _files(out)
    assert set(after) == set(before) | {"checkpoint.pt"}
    assert all(after[k] == before[k] for k in before)  # split.csv, model.json, weights: the old model's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "data", "m"]  # temp folder cleaned up
    load_artifact(out)
    # --resume finds the checkpoint in the old folder and ends where an uninterrupted run does
    logs: list[str] = []
    run_training(data, out, retrain, cache_dir=tmp_path / "c", workers=1, progress=False, log=logs.append, resume=True)
    assert any("resuming" in x and "epoch 2" in x for x in logs)
    assert not (out / "checkpoint.pt").exists()
    run_training(data, tmp_path / "ref", retrain, cache_dir=tmp_path / "c", **QUIET)
    a, b = load_artifact(out).model.state_dict(), load_artifact(tmp_path / "ref").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "split.csv").read_bytes() == (tmp_path / "ref" / "split.csv").read_bytes() != before["split.csv"]


def test_evaluate_refuses_a_split_that_is_not_the_models(tmp_path: Path) -> None:
    from cultural_music.evaluation.evaluate import run_evaluation

    data = make_tone_dataset(tmp_path / "data", per_class=4)
    out = tmp_path / "m"
    run_training(data, out, CFG.replace(train={"epochs": 1}), cache_dir=tmp_path / "c", **QUIET)
    split = out / "split.csv"
    lines = split.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    swapped = [r.replace(",train", ",TMP").replace(",test", ",train").replace(",TMP", ",test") for r in rows]
    split.write_text("\n".join([header, *swapped]) + "\n")
    with pytest.raises(ModelLoadError, match="split.csv.*split_sha256"):
        run_evaluation(out, cache_dir=tmp_path / "c", workers=1, progress=False, plots=False, report=False, log=lambda s: None).metrics
    assert not (out / "metrics.json").exists()


def test_training_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.txt").write_text("precious")
    with pytest.raises(OutputError, match="not a model folder"):
        run_training(data, tmp_path / "docs", CFG.replace(train={"epochs": 1}), cache_dir=tmp_path / "c", **QUIET)
    assert (tmp_path / "docs" / "thesis.txt").read_text() == "precious"


# --- model.json validation (issue 14 s4.3, s4.4) -------------------------------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import sine, train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny") / "m", {"low": sine(300), "high": sine(2400)})


def _edited(src: Path, dst: Path, edit) -> Path:
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    edit(meta)
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("field,edit", [
    ("format_version", lambda m: m.update(format_version="1")),
    ("format_version", lambda m: m.update(format_version=None)),
    ("classes", lambda m: m.update(classes="abc")),
    ("classes", lambda m: m.update(classes=[m["classes"][0]] * len(m["classes"]))),
    ("config.audio", lambda m: m["config"].pop("audio")),
    ("config.features", lambda m: m["config"]["features"].pop("n_mels")),
    ("weights_file", lambda m: m.update(weights_file="/etc/passwd")),
    ("weights_file", lambda m: m.update(weights_file="../m/model.safetensors")),
    ("model", lambda m: m.update(model="seed-cnn")),
    ("config", lambda m: m["config"]["audio"].update(sample_rate="fast")),
])
def test_bad_model_json_fields_fail_to_load_naming_the_field(tiny_dir: Path, tmp_path: Path, field: str, edit) -> None:
    bad = _edited(tiny_dir, tmp_path / "bad", edit)
    with pytest.raises(ModelLoadError, match=rf"model\.json: '{field}'") as info:
        load_artifact(bad)
    assert "\n" not in str(info.value)


def test_cli_bad_model_json_and_impossible_res_cnn_settings_are_one_line_errors(
        tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cultural_music.cli import main

    from conftest import tone, write

    bad = _edited(tiny_dir, tmp_path / "bad", lambda m: m.update(format_version="1"))
    write(tmp_path / "a.wav", tone(300, 1.0))
    assert main(["predict", str(bad), str(tmp_path / "a.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "format_version" in err and "Traceback" not in err
    data = make_tone_dataset(tmp_path / "data", per_class=3)
    args = ["train", str(data), "--out", str(tmp_path / "m"), "--model", "res-cnn", "--duration", "0.1", "--n-mels", "8",
            "--batch-size", "1", "--epochs", "1", "--workers", "1", "-q", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "batch_size" in err and "at least 2" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
    args[args.index("--batch-size") + 1] = "2"
    assert main(args) == 0
