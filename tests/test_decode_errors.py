"""Decoding and scanning say what is true: quiet MP3 decoding, true reasons for non-audio,
special files and out-of-range samples, and escaped names in the text output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cultural_music.features.audio import audio_info, load_audio, load_clips
from cultural_music.inference.batch import expand_inputs
from cultural_music.features.cache import FeatureCache
from cultural_music.config import AudioConfig, Config
from cultural_music.data.dataset import scan_folder
from cultural_music.errors import AudioLoadError
from cultural_music.features.extract import fill_cache

from conftest import tone, write

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _noisy_mp3(path: Path) -> Path:
    """2 s of noise at 16 kHz, average bit rate: libmpg123 complains about some of its frames
    (``part2_3_length ... too large``) while decoding every sample."""
    y = (0.5 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    sf.write(str(path), y, 16000, format="MP3", bitrate_mode="AVERAGE", compression_level=0.5)
    return path


_DECODE = """
import sys
from cultural_music.features.audio import iter_blocks, load_audio
n = sum(len(b) for b in iter_blocks(sys.argv[1], sample_rate=16000, block_seconds=0.1))
n2 = len(load_audio(sys.argv[1], sample_rate=16000))
print(n, n2)
print("python stderr works", file=sys.stderr)
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_mp3_decoding_prints_nothing_on_stderr(tmp_path: Path) -> None:
    p = _noisy_mp3(tmp_path / "noise.mp3")
    out = _run(_DECODE, str(p))
    assert out.returncode == 0, out.stderr
    n, n2 = (int(v) for v in out.stdout.split())
    assert n == n2 and abs(n - 32000) < 2000  # the file still decodes, whole
    assert out.stderr == "python stderr works\n"  # no libmpg123 lines; Python's stderr still works


def test_quiet_decoder_passes_on_other_writes_and_restores_fd2(tmp_path: Path) -> None:
    code = """
import os, sys
from cultural_music.features.quiet import quiet_decoder
with quiet_decoder():
    os.write(2, b"[src/libmpg123/layer3.c:f():1] error: dropped\\n")
    print("from python, inside", file=sys.stderr)
    with quiet_decoder():
        os.write(2, b"other library line\\n")
os.write(2, b"[src/libmpg123/x.c:f():1] error: outside, kept\\n")
"""
    out = _run(code)
    assert out.returncode == 0
    assert out.stderr.splitlines() == ["from python, inside", "other library line",
                                       "[src/libmpg123/x.c:f():1] error: outside, kept"]


# --- reasons that are true ----------------------------------------------------------------------

AUDIO = AudioConfig(sample_rate=8000, clip_seconds=1.0)
_POSIX_SPECIAL = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                    reason="needs mkfifo and /dev/zero (POSIX)")


def _reason(path: Path) -> str:
    with pytest.raises(AudioLoadError) as info:
        load_clips(path, AUDIO)
    return info.value.reason


def test_text_renamed_mp3_is_called_not_audio(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "notes.mp3"
    p.write_text("shopping list: milk, eggs\n" * 3)
    reason = _reason(p)
    assert "not a regular file" not in reason and "pipe" not in reason and "does not exist" not in reason
    assert "no decodable MP3 data: not audio, or damaged" in reason
    assert capfd.readouterr().err == ""  # libmpg123's "Note: Illegal Audio-MPEG-Header" lines too


@_POSIX_SPECIAL
def test_fifo_and_device_are_named_and_never_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # opening it for reading would block this test forever
    (tmp_path / "zero.wav").symlink_to("/dev/zero")
    assert _reason(fifo) == "not a regular file (FIFO)"
    with pytest.raises(AudioLoadError, match=r"not a regular file \(device\)"):
        audio_info(tmp_path / "zero.wav")
    assert _reason(Path("/dev/zero")) == "not a regular file (device)"


@_POSIX_SPECIAL
def test_scan_reports_special_files_as_skipped(tmp_path: Path) -> None:
    for c, f in (("a", 300), ("b", 900)):
        write(tmp_path / c / "ok.wav", tone(f, 1.0), 8000)
    os.mkfifo(tmp_path / "a" / "pipe.wav")
    (tmp_path / "b" / "zero.mp3").symlink_to("/dev/zero")
    scan = scan_folder(tmp_path)
    assert [r.rel_path for r in scan.recordings] == ["a/ok.wav", "b/ok.wav"]
    assert {(Path(s.path).name, s.reason) for s in scan.skipped} == {
        ("pipe.wav", "not a regular file (FIFO)"), ("zero.mp3", "not a regular file (device)")}
    assert tmp_path / "a" / "pipe.wav" in expand_inputs([tmp_path])  # predict on a folder says why, not silent


def _float_wav(path: Path, big: float, channels: int = 1) -> Path:
    y = np.full((8000, channels), 0.1, dtype=np.float32)
    y[100], y[200] = big, -big
    return write(path, y, 8000, subtype="FLOAT")


@pytest.mark.parametrize("channels", [1, 2])
def test_huge_float_samples_give_a_reason_and_no_warnings(tmp_path: Path, channels: int) -> None:
    p = _float_wav(tmp_path / "huge.wav", 3e38, channels)  # finite, but mixing or squaring overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy overflow warning fails the test
        reason = _reason(p)
    assert reason.startswith("samples out of range (peak 3e+38")
    q = _float_wav(tmp_path / "loud.wav", 1000.0, channels)  # loud but computable: still decodes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.abs(load_audio(q, sample_rate=8000)).max() == pytest.approx(1000.0)


def test_huge_float_file_is_skipped_by_features(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a" / "ok.wav", tone(300, 1.0), 8000)
    _float_wav(tmp_path / "a" / "huge.wav", 1e30)
    cfg = Config().replace(audio={"sample_rate": 8000, "clip_seconds": 1.0}, features={"n_fft": 256, "hop_length": 64,
                                                                                         "n_mels": 32})
    scan, result = fill_cache(tmp_path, cfg, FeatureCache(tmp_path / "cache"), workers=1, progress=False)
    assert list(result.entries) == ["a/ok.wav"]
    assert [(Path(s.path).name, s.reason.split(" (")[0]) for s in scan.skipped] == [("huge.wav", "samples out of range")]
    assert "Warning" not in capfd.readouterr().err


# --- names in the text output --------------------------------------------------------------------


def test_predict_text_output_escapes_control_characters_in_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cultural_music.cli import main

    from tiny_model import sine, train_tiny_model

    model = train_tiny_model(tmp_path / "model", {"low": sine(300), "high": sine(2400)}, per_class=4, steps=10)
    odd = write(tmp_path / "a\nb\x1b[2J.wav", tone(300, 1.0))
    broken = tmp_path / "bad\nname.wav"
    broken.write_bytes(b"RIFF junk")
    assert main(["predict", str(model), str(odd), str(broken)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("🎵 a\\nb\\x1b[2J.wav: "), out
    assert [ln for ln in err.splitlines() if "bad" in ln] == [ln for ln in err.splitlines() if "bad\\nname.wav" in ln]
    assert "bad\\nname.wav" in err
    assert main(["predict", str(model), str(odd), "--json"]) == 0  # JSON keeps the true name
    assert json.loads(capsys.readouterr().out)["path"] == str(odd)
