"""Decoding and scanning say what is true: quiet MP3 decoding, true reasons for non-audio,
special files and out-of-range samples, and escaped names in the text output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _noisy_mp3(path: Path) -> Path:
    """2 s of noise at 16 kHz, average bit rate: libmpg123 complains about some of its frames
    (``part2_3_length ... too large``) while decoding every sample."""
    y = (0.5 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    sf.write(str(path), y, 16000, format="MP3", bitrate_mode="AVERAGE", compression_level=0.5)
    return path


_DECODE = """
import sys
from cultural_music.audio import iter_blocks, load_audio
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
from cultural_music.quiet import quiet_decoder
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
