"""Cold ``cultural-music predict`` on one 30 s file, against the floor measured in the same run.

Floor = a fresh Python process that only loads the model folder and runs one forward pass on
one clip's worth of zeros (PyTorch: ``import torch`` + ``load_artifact`` + forward; ONNX:
``import onnxruntime`` + session + run).  Total = a fresh ``cultural-music predict MODEL FILE``
process (decode, resample 44.1 -> 22.05 kHz, features, two overlapping windows, output).
Both are timed from outside (wall clock, interpreter start included); medians of ``--repeat``
interleaved runs after one untimed warm-up of each (disk cache and numba's on-disk cache).

``--model musicnn`` (the default model kind: frozen musicnn backbone + head, exported to ONNX as
one whole network) times ``cli predict`` against ``cli predict --onnx`` on the same file and
prints their ratio (no floor: the floor scripts above are for the log-mel models).

Usage: ``python bench/predict_cold.py [--model seed-cnn|musicnn] [--work DIR] [--repeat 5]``.
Target: total <= 2x floor; for musicnn, ONNX faster than PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import ensure_bench_model, ensure_default_model  # noqa: E402

CLI = str(Path(sys.executable).with_name("cultural-music"))

FLOOR_TORCH = """
import sys, torch
from cultural_music.training.artifact import load_artifact
art = load_artifact(sys.argv[1])
f = art.config.features
with torch.inference_mode():
    art.model(torch.zeros(1, 1, f.n_mels, f.n_frames(art.config.audio.clip_samples)))
"""
FLOOR_ONNX = """
import sys, numpy as np, onnxruntime as ort
from cultural_music.training.artifact import read_meta
from cultural_music.config import Config
cfg = Config.from_dict(read_meta(sys.argv[1])["config"])
s = ort.InferenceSession(sys.argv[1] + "/model.onnx", providers=["CPUExecutionProvider"])
s.run(None, {"features": np.zeros((1, 1, cfg.features.n_rows, cfg.features.n_frames(cfg.audio.clip_samples)), np.float32)})
"""


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys, from ``os.wait4``) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cm-bench")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", choices=["seed-cnn", "musicnn"], default="seed-cnn")
    args = ap.parse_args()
    default_kind = args.model == "musicnn"
    model = ensure_default_model(args.work / "musicnn-model") if default_kind else ensure_bench_model(args.work / "model")
    query = args.work / "query30.wav"
    if not query.is_file():
        from cultural_music.data.demo_data import synthesize_recording

        sf.write(query, synthesize_recording("Tharu", seconds=30.0, sample_rate=44100, rng=np.random.default_rng(1)), 44100)
    runs = {
        "floor (torch)": [sys.executable, "-c", FLOOR_TORCH, str(model)],
        "cli predict": [CLI, "predict", str(model), str(query)],
        "floor (onnx)": [sys.executable, "-c", FLOOR_ONNX, str(model)],
        "cli predict --onnx": [CLI, "predict", str(model), str(query), "--onnx"],
    }
    if default_kind:
        runs = {k: v for k, v in runs.items() if k.startswith("cli")}
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    for cmd in runs.values():
        _run(cmd)  # warm-up
    for _ in range(args.repeat):
        for name, cmd in runs.items():
            wall, cpu = _run(cmd)
            times[name].append(wall)
            cpus[name].append(cpu)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    for k in runs:
        print(f"{k:<20} wall {med[k]:6.2f} s  cpu {cpu[k]:6.2f} s   (wall runs: {', '.join(f'{x:.2f}' for x in times[k])})")
    if default_kind:
        print(f"cold CLI, musicnn: onnx / torch wall {med['cli predict --onnx'] / med['cli predict']:.2f}x, "
              f"cpu {cpu['cli predict --onnx'] / cpu['cli predict']:.2f}x (target < 1)")
        return
    for what, num, den in (("torch", "cli predict", "floor (torch)"), ("onnx", "cli predict --onnx", "floor (onnx)"),
                           ("onnx CLI vs torch floor", "cli predict --onnx", "floor (torch)")):
        print(f"cold CLI / floor, {what}: wall {med[num] / med[den]:.2f}x, cpu {cpu[num] / cpu[den]:.2f}x")
    print("target: torch wall ratio <= 2x")


if __name__ == "__main__":
    main()
