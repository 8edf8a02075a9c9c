"""Label a synthesised 1-hour recording: wall seconds and peak RSS of a fresh CLI process.

The file (44.1 kHz mono FLAC, a different SYNTHETIC demo class every 5 minutes) is written
block by block, so making it needs little memory either; it is kept in ``--work`` for reruns.
Each measurement runs ``cultural-music predict MODEL FILE --json`` (default hop: 15 s windows
of 30 s, 239 windows for an hour) in a child process and reads its peak RSS from
``os.wait4`` (the ``resource.getrusage`` struct of that one child).  A short file is measured too: equal peaks show that
memory does not grow with file length.

Usage: ``python bench/long_file.py [--work DIR] [--minutes 60] [--onnx]``.
Targets: 1 hour in under 60 s, peak RSS under 1 GiB, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import ensure_bench_model  # noqa: E402

CLI = str(Path(sys.executable).with_name("cultural-music"))
SR = 44100
PART_MINUTES = 5


def synthesise(path: Path, minutes: float, *, seed: int = 0) -> Path:
    """Write ``minutes`` of demo-class audio, one class per 5-minute part, a minute at a time."""
    if path.is_file() and abs(sf.info(str(path)).duration - minutes * 60) < 1:
        return path
    from cultural_music.data.demo_data import DEMO_CLASSES, synthesize_recording

    g = np.random.default_rng(seed)
    tmp = path.with_suffix(".part.flac")
    with sf.SoundFile(str(tmp), "w", samplerate=SR, channels=1, format="FLAC", subtype="PCM_16") as f:
        for m in range(int(np.ceil(minutes))):
            kind = DEMO_CLASSES[(m // PART_MINUTES) % len(DEMO_CLASSES)]
            seconds = min(60.0, minutes * 60 - m * 60)
            f.write(synthesize_recording(kind, seconds=seconds, sample_rate=SR, rng=g))
    tmp.replace(path)
    return path


def measure(cmd: list[str]) -> tuple[float, float, float, dict]:
    """Wall seconds, CPU seconds (user + sys), peak RSS (MiB) of one child (``os.wait4``'s
    rusage) and its JSON output."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, json.loads(out.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cm-bench")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--onnx", action="store_true", help="Also measure the ONNX predictor.")
    args = ap.parse_args()
    model = ensure_bench_model(args.work / "model")
    t = time.perf_counter()
    short = synthesise(args.work / "short_5min.flac", 5.0)
    long = synthesise(args.work / f"long_{args.minutes:g}min.flac", args.minutes)
    print(f"files ready in {time.perf_counter() - t:.1f} s: {long} ({long.stat().st_size / 2**20:.0f} MiB)")
    variants = [("torch", [])] + ([("onnx", ["--onnx"])] if args.onnx else [])
    for name, extra in variants:
        for label, path in (("5 min", short), (f"{args.minutes:g} min", long)):
            wall, cpu, peak, row = measure([CLI, "predict", str(model), str(path), "--json", *extra])
            print(f"{name:<6} {label:>8}: wall {wall:6.1f} s, cpu {cpu:6.1f} s, peak RSS {peak:6.0f} MiB, {row['n_clips']} windows, "
                  f"{len(row['timeline'])} segments, label {row['label']}")


if __name__ == "__main__":
    main()
