"""Feature extraction: the reference serial pipeline vs ours (cold, and from the cache).

N synthetic 30 s files (half WAV, half MP3; 44.1 kHz stereo, like ripped music) are written to a
temporary folder, then each pipeline runs in a fresh Python process, so every figure includes
what a user waits for: interpreter start, imports, worker start-up and the work.

- reference: ``librosa.load(sr=22050)`` + ``melspectrogram`` + dB to 0..1, one file after another,
  every spectrogram kept in a list (as the reference script does)
- ours cold: ``extract_features`` into an empty cache, ``--workers`` processes
- ours cached: the same again (file index: nothing hashed, nothing decoded, no process started)
- ours cached, no index: the same with ``use_index=False`` (every file hashed again)

Also: ours cold with 1 worker and with ``spawn`` workers (start-up cost), the resamplers (speed,
and a tone must keep its frequency and level), and float16 storage (error, size).
Ratios are reference time / our time, measured in the same run.

Run: ``.venv/bin/python bench/features.py [--files 160] [--workers N]``
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

SR_FILE = 44100


def make_files(folder: Path, n: int, seconds: float) -> list[Path]:
    """``n`` files ``folder/<wav|mp3>/f<i>.<ext>``: chords + noise, 44.1 kHz stereo."""
    from _synth import write_chords  # here, not at the top: the timed child processes import this script

    return write_chords(folder, n, seconds, sr=SR_FILE, name=lambda i: "{0}/f{1:03d}.{0}".format("mp3" if i % 2 else "wav", i),
                        harmonics=(1, 2, 3, 5), random_phase=True, stereo=True)


def run_reference(paths: list[str]) -> dict:
    import librosa

    t0, c0 = time.perf_counter(), time.process_time()
    feats = []
    for p in paths:
        y, sr = librosa.load(p, sr=22050)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        feats.append(((librosa.power_to_db(mel, ref=np.max, top_db=80.0) + 80.0) / 80.0).astype(np.float32))
    return {"work_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "first": feats[0]}


def run_ours(paths: list[str], cache_dir: str, workers: int, use_index: bool, start: str, seconds: float) -> dict:
    from cultural_music.features import jobs
    from cultural_music.features.cache import FeatureCache
    from cultural_music.config import Config
    from cultural_music.data.dataset import Recording
    from cultural_music.features.extract import extract_features

    if start == "spawn":
        from multiprocessing import get_context

        jobs._mp_context = lambda *a: get_context("spawn")  # measure the old start method
    recs = [Recording(Path(p), f"{i}_{Path(p).name}", "x", str(i)) for i, p in enumerate(paths)]
    cfg = Config().replace(audio={"clip_seconds": seconds})  # one clip per file, as the reference
    t0, c0 = time.perf_counter(), time.process_time()
    res = extract_features(recs, cfg, FeatureCache(cache_dir), augment_splits=(), workers=workers,
                           progress=False, use_index=use_index)
    work, cpu = time.perf_counter() - t0, time.process_time() - c0
    first = np.load(res.entries[recs[0].rel_path].clean_path)[0]
    return {"work_s": work, "cpu_s": cpu, "decoded": res.n_decoded, "indexed": res.n_indexed, "skipped": len(res.skipped), "first": first}


def _warm_job(_: int) -> float:
    """What a worker does before its first file: load the feature code (librosa, scipy)."""
    from cultural_music.config import Config
    from cultural_music.features.compute import compute_features

    compute_features(np.zeros((1, 22050), np.float32), Config())
    return time.perf_counter()


def run_startup(method: str, workers: int) -> dict:
    """Seconds until ``workers`` fresh workers have each run the feature code once, for a first
    and a second pool in the same process (the pipeline starts one for clean features, one for
    augmented variants)."""
    from concurrent.futures import ProcessPoolExecutor

    from cultural_music.features import jobs

    ctx = jobs._mp_context() if method == "forkserver" else __import__("multiprocessing").get_context("spawn")
    out = {}
    for name in ("first_pool_s", "second_pool_s"):
        t0 = time.perf_counter()
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            list(pool.map(_warm_job, range(workers)))
        out[name] = time.perf_counter() - t0
    return out


def in_subprocess(args: list[str], first_npy: Path) -> dict:
    """Run this file with ``--child ...`` in a fresh interpreter; wall time includes start-up.
    The child writes the features of the first file to ``first_npy``."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", str(first_npy), *args], check=True, capture_output=True, text=True)
    total = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["total_s"] = total
    result["first"] = np.load(first_npy)
    return result


def resamplers(seconds: float = 30.0) -> list[tuple[str, float, float, float]]:
    """(name, seconds per 30 s file 44.1 -> 22.05 kHz, frequency error Hz, level error dB)."""
    import librosa
    import soxr
    from scipy.signal import resample_poly

    t = np.arange(int(seconds * SR_FILE)) / SR_FILE
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)

    def stream(quality: str) -> np.ndarray:
        rs = soxr.ResampleStream(SR_FILE, 22050, 1, dtype="float32", quality=quality)
        block = 10 * SR_FILE
        parts = [rs.resample_chunk(x[i:i + block], last=i + block >= len(x)) for i in range(0, len(x), block)]
        return np.concatenate(parts)

    cands = {
        "soxr HQ, streamed 10 s blocks (ours)": lambda: stream("HQ"),
        "soxr VHQ, streamed": lambda: stream("VHQ"),
        "librosa.resample soxr_hq, whole file (reference)": lambda: librosa.resample(x, orig_sr=SR_FILE, target_sr=22050, res_type="soxr_hq"),
        "scipy resample_poly 1/2": lambda: resample_poly(x, 1, 2).astype(np.float32),
    }
    rows = []
    for name, fn in cands.items():
        fn()
        ts = []
        for _ in range(5):
            t1 = time.perf_counter()
            y = fn()
            ts.append(time.perf_counter() - t1)
        mid = y[len(y) // 4: len(y) // 4 + 22050]
        spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
        k = int(np.argmax(spec))
        a, b, c = np.log(spec[k - 1:k + 2])
        freq = (k + 0.5 * (a - c) / (a - 2 * b + c)) * 22050 / len(mid)  # parabolic peak
        level = 20 * np.log10(np.sqrt(np.mean(mid**2)) / (0.5 / np.sqrt(2)))
        rows.append((name, min(ts), abs(freq - 1000.0), abs(level)))
    return rows


def float16_check(first: np.ndarray) -> tuple[float, float]:
    """(max abs error of float16 storage on real features, size ratio)."""
    half = first.astype(np.float16).astype(np.float32)
    return float(np.abs(half - first).max()), 0.5


def child(argv: list[str]) -> None:
    first_npy, kind, listing = argv[0], argv[1], argv[2]
    argv = argv[1:]
    paths = Path(listing).read_text().split("\n") if listing != "-" else []
    if kind == "reference":
        out = run_reference(paths)
    elif kind == "startup":
        print(json.dumps(run_startup(argv[2], int(argv[3]))))
        return
    else:
        cache_dir, workers, use_index, start, seconds = argv[2], int(argv[3]), argv[4] == "1", argv[5], float(argv[6])
        out = run_ours(paths, cache_dir, workers, use_index, start, seconds)
    np.save(first_npy, out.pop("first"), allow_pickle=False)
    print(json.dumps(out))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=160)  # enough that start-up costs do not dominate
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best of each is kept")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        paths = make_files(tmp_path / "data", args.files, args.seconds)
        listing = tmp_path / "files.txt"
        listing.write_text("\n".join(map(str, paths)))
        w = str(args.workers)
        print(f"{args.files} files x {args.seconds:.0f} s (WAV + MP3, 44.1 kHz stereo), {args.workers} workers, "
              f"{os.cpu_count()} CPUs, best of {args.rounds} interleaved rounds")
        first = tmp_path / "first.npy"
        plan = {
            "reference (serial librosa)": lambda r: ["reference", str(listing)],
            f"ours cold, {w} workers": lambda r: ["ours", str(listing), str(tmp_path / f"a{r}"), w, "1", "forkserver", str(args.seconds)],
            "ours cached (file index)": lambda r: ["ours", str(listing), str(tmp_path / f"a{r}"), w, "1", "forkserver", str(args.seconds)],
            "ours cached, no index (re-hash)": lambda r: ["ours", str(listing), str(tmp_path / f"a{r}"), w, "0", "forkserver", str(args.seconds)],
            f"ours cold, {w} spawn workers": lambda r: ["ours", str(listing), str(tmp_path / f"b{r}"), w, "0", "spawn", str(args.seconds)],
            "ours cold, 1 worker": lambda r: ["ours", str(listing), str(tmp_path / f"c{r}"), "1", "0", "forkserver", str(args.seconds)],
        }
        runs: dict[str, dict] = {}
        for r in range(args.rounds):
            print(f"round {r + 1}: load average {os.getloadavg()[0]:.1f}", flush=True)
            for name, make in plan.items():
                out = in_subprocess(make(r), first)
                best = runs.get(name)
                runs[name] = out if best is None or out["total_s"] < best["total_s"] else best
                if best is not None:
                    for key in ("work_s", "cpu_s"):
                        runs[name][key] = min(best[key], out[key])
        ref = runs["reference (serial librosa)"]
        print(f"\n{'pipeline':<34}{'total s':>9}{'work s':>9}{'x ref total':>13}{'x ref work':>12}  decoded")
        for name, r in runs.items():
            print(f"{name:<34}{r['total_s']:>9.2f}{r['work_s']:>9.3f}{ref['total_s'] / r['total_s']:>13.1f}"
                  f"{ref['work_s'] / r['work_s']:>12.1f}  {r.get('decoded', '-')}")
        serial = runs["ours cold, 1 worker"]
        per_ref, per_ours = ref["work_s"] / args.files, serial["work_s"] / args.files
        print(f"\nWork per file in one process: reference {per_ref * 1000:.0f} ms, ours {per_ours * 1000:.0f} ms "
              f"(x{per_ref / per_ours:.2f}); CPU time per file (includes idle-spinning BLAS threads): reference "
              f"{ref['cpu_s'] / args.files * 1000:.0f} ms, ours {serial['cpu_s'] / args.files * 1000:.0f} ms")
        a, b = ref["first"], runs[f"ours cold, {w} workers"]["first"]
        print(f"\nfeatures ours vs reference (first file): shape {b.shape} vs {a.shape}, max |diff| {np.abs(a - b).max():.2e}, "
              f"mean |diff| {np.abs(a - b).mean():.2e}")
        err, size = float16_check(b)
        print(f"float16 storage: max |error| {err:.2e} (values 0..1), size x{size}")
    print(f"\n{'worker start-up (' + str(args.workers) + ' workers)':<34}{'1st pool s':>11}{'2nd pool s':>11}")
    for method in ("spawn", "forkserver"):
        out = subprocess.run([sys.executable, __file__, "--child", "-", "startup", "-", method, str(args.workers)],
                             check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{method:<34}{r['first_pool_s']:>11.2f}{r['second_pool_s']:>11.2f}")
    print(f"\n{f'resampler ({args.seconds:.0f} s, 44.1 -> 22.05 kHz)':<52}{'ms':>8}{'freq err Hz':>13}{'level err dB':>14}")
    for name, sec, ferr, lerr in resamplers(args.seconds):
        print(f"{name:<52}{sec * 1000:>8.1f}{ferr:>13.3f}{lerr:>14.4f}")


if __name__ == "__main__":
    main()
