"""Labelling an archive: real-time factor of ``predict --out`` and the driver's memory.

Sections (each a function; ``main`` runs those asked with ``--sections``):

* ``rtf``: hours of audio labelled per hour of wall time (the real-time factor) for one
  process, the local pool (``--workers 2``) and Ray (``--backend ray --workers 2``, a local
  instance) on the same synthetic folder (``--files`` files of ``--minutes`` minutes, 44.1 kHz,
  half WAV and half MP3), with the default model kind (frozen musicnn + head, trained in seconds
  on tones by ``bench_model.ensure_default_model``).  Each run is a fresh ``cultural-music
  predict`` process timed from outside (interpreter, model load, pool or Ray start included).
  "cold" is the first pass over the folder, "warm" the second (files in the page cache, numba
  compiled): ``predict`` keeps no feature cache, so warm is the best a rerun gets.
  Target: pool >= 1.8x one process (on a machine with 2 free cores).
* ``memory``: peak RSS of the driver (the only writer; the workers' own memory is not in it)
  labelling 100 and ``--sweep-max`` (10,000) short files with ``--workers 2`` into a CSV, with
  the tests' tiny model (the driver's memory does not depend on the model): flat means the
  ratio stays near 1.

* ``runtime`` (issue 18): the package's extraction path (``extract_features`` through
  ``LocalRunner``, fresh feature cache, decode + front end + network + cache write) of the same
  kind of folder (``--runtime-files`` x ``--runtime-minutes``, WAV + MP3) with the backbones on
  torch and on ONNX Runtime (``CULTURAL_MUSIC_BACKBONE_RUNTIME``), and the pool question on ONNX
  Runtime: one process with one thread, the local pool of 2 workers (one thread each), one
  process with 2 threads.  Each run is a fresh process timed from just before
  ``extract_features`` (pool start, model load, session and parity check included; the ONNX
  export is made once beforehand).  Also the ONNX Runtime patches/s by batch size (one thread).

Usage: ``python bench/archive.py [--files 200 --minutes 3] [--sections rtf memory runtime] [--work DIR]``
(small: ``--files 8 --minutes 1 --sweep-max 2000``; ``--sections runtime --runtime-files 12
--runtime-minutes 0.5``).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import ensure_default_model  # noqa: E402

SR = 44100
DRIVER = """
import resource, sys, time
from cultural_music.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
print("BENCH", code, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""


def make_folder(root: Path, files: int, seconds: float, *, sr: int = SR, seed: int = 0) -> float:
    """``files`` synthetic recordings (a tone with a slow glide + noise, stereo), even ones WAV
    and odd ones MP3, under ``root`` (kept when complete).  Returns the seconds of audio."""
    import soundfile as sf

    done = root / "done.json"
    if done.is_file() and json.loads(done.read_text()) == [files, seconds]:
        return files * seconds
    root.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    for i in range(files):
        t = np.arange(int(seconds * sr)) / sr
        f = g.uniform(200, 2000) * (1 + 0.1 * np.sin(2 * np.pi * t / 17))
        y = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr) + 0.02 * g.standard_normal(len(t))
        y = np.stack([y, y[::-1]], axis=1).astype(np.float32)
        if i % 2:
            sf.write(root / f"r{i:05d}.mp3", y, sr, format="MP3")
        else:
            sf.write(root / f"r{i:05d}.wav", y, sr, subtype="PCM_16")
    done.write_text(json.dumps([files, seconds]))
    return files * seconds


def run_predict(model: Path, folder: Path, out: Path, extra: list[str]) -> tuple[float, float, int]:
    """One fresh ``predict --out`` process: (wall s from outside, peak driver RSS in MiB, exit code)."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", DRIVER, "predict", str(model), str(folder), "--out", str(out), "--quiet", *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"predict {' '.join(extra)} failed: {proc.stderr.strip()[-400:]}")
    return wall, int(line.split()[3]) / 1024, int(line.split()[1])


MODES = {"1 process": [], "pool, 2 workers": ["--workers", "2"], "Ray, 2 workers": ["--backend", "ray", "--workers", "2"]}


def section_rtf(work: Path, files: int, minutes: float) -> dict[str, dict[str, float]]:
    """Real-time factor per mode, cold then warm; prints a table and the pool / one-process ratio."""
    model = ensure_default_model(work / "default-model")
    folder = work / f"archive-{files}x{minutes:g}min"
    audio_s = make_folder(folder, files, minutes * 60)
    print(f"\n## real-time factor: {files} files x {minutes:g} min = {audio_s / 3600:.2f} h of audio (WAV + MP3)")
    print("| mode | cold wall s | cold x real time | warm wall s | warm x real time |\n|---|---:|---:|---:|---:|")
    got: dict[str, dict[str, float]] = {}
    for name, extra in MODES.items():
        try:
            cold, _, _ = run_predict(model, folder, work / "rtf.csv", extra)
            warm, _, _ = run_predict(model, folder, work / "rtf.csv", extra)
        except SystemExit as err:
            print(f"| {name} | skipped: {err} | | | |")
            continue
        got[name] = {"cold": audio_s / cold, "warm": audio_s / warm}
        print(f"| {name} | {cold:.1f} | {audio_s / cold:.0f} | {warm:.1f} | {audio_s / warm:.0f} |")
    one = got.get("1 process")
    for name in ("pool, 2 workers", "Ray, 2 workers"):
        if one and name in got:
            print(f"{name} / 1 process: cold {got[name]['cold'] / one['cold']:.2f}x, warm "
                  f"{got[name]['warm'] / one['warm']:.2f}x (target for the pool: >= 1.8x)")
    return got


def tiny_model(work: Path) -> Path:
    """The tests' tiny model (seed-cnn, 8 kHz, 1 s clips; ``tests/tiny_model.py``): the driver's
    memory does not depend on the model, and it labels 10,000 short files in minutes."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_model import shared_model

    return shared_model(work)


def section_memory(work: Path, sizes: list[int]) -> dict[int, float]:
    """Peak driver RSS labelling ``sizes`` short (1 s, 16 kHz mono WAV) files with 2 workers."""
    import soundfile as sf

    model = tiny_model(work)
    print("\n## driver memory (peak RSS, --workers 2, CSV out, 1 s files, tiny model)\n"
          "| files | wall s | peak RSS MiB |\n|---:|---:|---:|")
    g = np.random.default_rng(1)
    got: dict[int, float] = {}
    for n in sizes:
        folder = work / f"short-{n}"
        if not (folder / "done").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                sf.write(folder / f"s{i:05d}.wav", (0.3 * g.standard_normal(16000)).astype(np.float32), 16000)
            (folder / "done").write_text("")
        wall, rss, _ = run_predict(model, folder, work / "mem.csv", ["--workers", "2"])
        got[n] = rss
        print(f"| {n} | {wall:.1f} | {rss:.0f} |")
    if len(got) > 1:
        print(f"peak RSS {sizes[-1]} / {sizes[0]} files: {got[sizes[-1]] / got[sizes[0]]:.2f}x (flat: about 1)")
    return got


EXTRACT_DRIVER = """
import json, sys, time
from dataclasses import asdict
from pathlib import Path
import numpy as np
import torch
kind, folder, cache, workers, threads = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
from cultural_music.config import Config, FeatureConfig
from cultural_music.data.dataset import Recording
from cultural_music.features.cache import FeatureCache
from cultural_music.features.extract import extract_features
from cultural_music.features.jobs import LocalRunner
cfg = Config().replace(audio={"sample_rate": 16000, "clip_seconds": 30.0}, features=asdict(FeatureConfig.for_kind(kind, "MSD_musicnn" if kind.startswith("musicnn") else None)))
recs = [Recording(p, p.name, "x", p.name) for p in sorted(folder.glob("r*.*"))]
t = time.perf_counter()
res = extract_features(recs, cfg, FeatureCache(cache), runner=LocalRunner(workers), progress=False)
wall = time.perf_counter() - t
patches = sum(int(e.n_clips) * int(np.load(e.clean_path, mmap_mode="r").shape[-1]) for e in res.entries.values())
print("BENCH", json.dumps({"wall": wall, "patches": patches, "files": len(res.entries)}), flush=True)
"""

#: (kind, label, runtime, workers, threads per process)
RUNTIME_RUNS = (
    ("musicnn-embedding", "torch, 1 process x 1 thread", "torch", 1, 1),
    ("musicnn-embedding", "onnxruntime, 1 process x 1 thread", "onnxruntime", 1, 1),
    ("musicnn-embedding", "onnxruntime, pool 2 workers x 1 thread", "onnxruntime", 2, 1),
    ("musicnn-embedding", "onnxruntime, 1 process x 2 threads", "onnxruntime", 1, 2),
    ("yamnet-embedding", "torch, 1 process x 1 thread", "torch", 1, 1),
    ("yamnet-embedding", "onnxruntime, 1 process x 1 thread", "onnxruntime", 1, 1),
    ("yamnet-embedding", "onnxruntime, pool 2 workers x 1 thread", "onnxruntime", 2, 1),
    ("yamnet-embedding", "onnxruntime, 1 process x 2 threads", "onnxruntime", 1, 2),
)


def run_extract(kind: str, folder: Path, cache: Path, runtime: str, workers: int, threads: int) -> dict[str, float]:
    """One fresh process extracting ``kind`` features of ``folder`` into an empty ``cache``."""
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "CULTURAL_MUSIC_BACKBONE_RUNTIME": runtime}
    cmd = [sys.executable, "-c", EXTRACT_DRIVER, kind, str(folder), str(cache), str(workers), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"extract {kind} {runtime} failed: {proc.stderr.strip()[-400:]}")
    return json.loads(line.split(" ", 1)[1])


def batch_sweep(seconds: float = 2.0) -> dict[str, dict[int | str, float]]:
    """ONNX Runtime patches/s of each backbone by batch size, and torch's (batch 8), one thread,
    in this process (which also makes the export, stored for the runs)."""
    import torch

    from cultural_music.backbones import musicnn, runtime, yamnet

    torch.set_num_threads(1)
    got: dict[str, dict[int | str, float]] = {}
    for name, net in (("MSD_musicnn", musicnn.pretrained("MSD_musicnn")), ("yamnet", yamnet.pretrained_yamnet())):
        session = runtime.embedding_session(name, net)
        got[name] = {}
        for size in (1, 2, 4, 8, 16, 64):
            x = np.random.default_rng(0).standard_normal((size, *runtime.PATCH_SHAPES[name])).astype(np.float32)
            session.run(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                session.run(x)
                n += size
            got[name][size] = n / (time.perf_counter() - t0)
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((8, *runtime.PATCH_SHAPES[name])).astype(np.float32))
        with torch.inference_mode():
            net.embedding(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                net.embedding(x)
                n += 8
        got[name]["torch, batch 8"] = n / (time.perf_counter() - t0)
    return got


def section_runtime(work: Path, files: int, minutes: float) -> dict[tuple[str, str], dict[str, float]]:
    """Extraction speed per (kind, runtime/processes/threads); prints the tables and ratios."""
    os.environ.setdefault("CULTURAL_MUSIC_BACKBONE_DIR", str(work / "backbones"))
    folder = work / f"archive-{files}x{minutes:g}min"
    audio_s = make_folder(folder, files, minutes * 60)
    sweep = batch_sweep()
    print(f"\n## backbone runtime: patches/s of the network alone by batch size (1 thread, load average {os.getloadavg()[0]:.1f})")
    print("| backbone | " + " | ".join(f"ORT batch {b}" if isinstance(b, int) else b for b in sweep["yamnet"])
          + " |\n|---|" + "---:|" * len(sweep["yamnet"]))
    for name, row in sweep.items():
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in row.values()) + " |")
    print(f"\n## backbone runtime: extraction, {files} files x {minutes:g} min = {audio_s / 60:.0f} min of audio (WAV + MP3)")
    print("| features | runtime, processes x threads | wall s | patches/s | x real time | ratio |\n|---|---|---:|---:|---:|---|")
    got: dict[tuple[str, str], dict[str, float]] = {}
    for kind, label, runtime, workers, threads in RUNTIME_RUNS:
        r = run_extract(kind, folder, work / "runtime-cache", runtime, workers, threads)
        r["rtf"] = audio_s / r["wall"]
        got[kind, label] = r
        ratios = [f"{r['rtf'] / b['rtf']:.2f}x {what}" for what, b in
                  (("torch 1x1", got.get((kind, RUNTIME_RUNS[0][1]))), ("ORT 1x1", got.get((kind, RUNTIME_RUNS[1][1]))))
                  if b is not None and b is not r and not (what == "ORT 1x1" and runtime == "torch")]
        ratio = ", ".join(ratios)
        print(f"| {kind} | {label} | {r['wall']:.1f} | {r['patches'] / r['wall']:.1f} | {r['rtf']:.1f} | {ratio} |")
    print(f"(load average {os.getloadavg()[0]:.1f} after the runs)")
    return got


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cm-bench-archive")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--sweep-max", type=int, default=10000)
    ap.add_argument("--sections", nargs="+", default=["rtf", "memory"], choices=["rtf", "memory", "runtime"])
    ap.add_argument("--runtime-files", type=int, default=12)
    ap.add_argument("--runtime-minutes", type=float, default=0.5)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"# bench/archive.py  (cpus: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")
    if "rtf" in args.sections:
        section_rtf(args.work, args.files, args.minutes)
    if "memory" in args.sections:
        section_memory(args.work, [100, args.sweep_max])
    if "runtime" in args.sections:
        section_runtime(args.work, args.runtime_files, args.runtime_minutes)


if __name__ == "__main__":
    main()
