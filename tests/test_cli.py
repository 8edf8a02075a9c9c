"""The command line, run through its entry point (exit codes, output formats)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cultural_music.cli import main

from conftest import make_tone_dataset, tone, write

TRAIN = ["--model", "seed-cnn", "--duration", "1", "--sample-rate", "8000", "--n-mels", "32", "--epochs", "3", "--batch-size", "8",
         "--augment-variants", "0", "--workers", "1", "-q"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    data = make_tone_dataset(root / "data", per_class=5)
    rc = main(["train", str(data), "--out", str(root / "model"), "--cache-dir", str(root / "cache"), *TRAIN])
    assert rc == 0
    return root / "model"


def test_train_writes_model_folder(model_dir: Path) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["config"]["audio"]["clip_seconds"] == 1.0 and meta["config"]["features"]["n_mels"] == 32
    # the deployed model was refitted on every file for the epochs the measured run kept (<= 3)
    assert 1 <= meta["config"]["train"]["epochs"] <= 3 and meta["refit"]["files"] == 15


def test_evaluate_json_is_one_object(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(model_dir), "--json", "--no-plots", "--cache-dir", str(model_dir.parent / "cache")]) == 0
    out = capsys.readouterr().out
    obj = json.loads(out)
    assert {"accuracy", "macro_f1", "n"} <= set(obj) and obj["n"] == 3


def test_predict_line_format(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = write(tmp_path / "my song.wav", tone(900, 1.0))
    assert main(["predict", str(model_dir), str(q)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"🎵 my song\.wav: (high|low|mid|uncertain)( \(\d{1,3}\.\d\d% confidence\)| \(top: .*\))", line), line


def test_errors_are_one_line_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tone_dataset(tmp_path / "one", classes={"only": 440.0}, per_class=3)
    assert main(["train", str(tmp_path / "one"), "--out", str(tmp_path / "m"), *TRAIN]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "at least 2" in err and "Traceback" not in err
    assert main(["predict", str(tmp_path / "missing_model"), "x.wav"]) == 1
    assert "model folder does not exist" in capsys.readouterr().err


def test_verbose_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--verbose", "evaluate", str(tmp_path / "nope")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_bad_usage_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train"]) == 2


def test_console_script_runs() -> None:
    exe = Path(sys.executable).parent / "cultural-music"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "predict" in out.stdout


def test_mini_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--per-class", "4", "--seconds", "2", "--clip-seconds", "1",
               "--epochs", "2", "--workers", "1", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "macro-F1" in out
    lines = [x for x in out.splitlines() if x.startswith("🎵 query_")]
    assert len(lines) == 5
    for name in ("accuracy", "loss", "confusion_matrix", "roc", "pr"):
        assert (tmp_path / "demo" / "model" / "plots" / f"{name}.png").is_file()


def test_help_lists_exactly_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """The explicit command list: the same ten names as before it replaced module discovery, and
    every click command defined in a cli module is on it (none defined and forgotten)."""
    import importlib
    import pkgutil

    import click

    import cultural_music.cli as cli_pkg

    assert main(["--help"]) == 0
    listed = re.findall(r"^  (\S+)\s", capsys.readouterr().out.split("Commands:")[1], flags=re.M)
    assert listed == ["cache", "cv", "demo", "embed", "evaluate", "export", "features", "models", "predict", "serve", "similar", "train"]
    defined = {obj for info in pkgutil.iter_modules(cli_pkg.__path__)
               for obj in vars(importlib.import_module(f"cultural_music.cli.{info.name}")).values()
               if isinstance(obj, click.Command)}
    sub = {c for g in defined if isinstance(g, click.Group) for c in g.commands.values()}  # e.g. cache info
    assert {c.name for c in defined - sub} == set(listed) == {c.name for c in cli_pkg.COMMANDS}


def _all_options() -> list[tuple[str, "click.Option"]]:
    import click

    from cultural_music.cli import cli

    out, todo = [], [("", cli)]
    while todo:
        prefix, cmd = todo.pop()
        out += [(f"{prefix}{cmd.name} {p.opts[0]}", p) for p in cmd.params if isinstance(p, click.Option)]
        if isinstance(cmd, click.Group):
            todo += [(f"{prefix}{cmd.name} ", sub) for sub in cmd.commands.values()]
    return out


def test_help_does_not_repeat_what_click_prints() -> None:
    """An option whose default click shows (show_default) says no 'default' in its help, and a
    click.Choice option does not list its choices again (click prints [a|b|c])."""
    import click

    options = _all_options()
    assert len(options) > 40
    for name, opt in options:
        text = opt.help or ""
        if opt.show_default:
            assert "default" not in text.lower(), f"{name}: {text!r} repeats the [default: ...] click prints"
        if isinstance(opt.type, click.Choice):
            named = [c for c in opt.type.choices if re.search(rf"\b{re.escape(c)}\b", text)]
            assert len(named) < 2 and "one of" not in text.lower(), f"{name}: {text!r} repeats the choices"
