"""Feature extraction on Ray vs the local process pool, on the same synthetic files.

N synthetic mono WAV files are written once (and synced to disk); each pipeline extracts them
into its own empty cache (cold: every file hashed, decoded and its features written), best of
``--rounds`` runs:

- local, 1 process: ``extract_features(workers=1)`` (no pool) with one BLAS thread, as in a
  pool worker or a Ray worker, after a warm-up that loads the audio libraries: the work alone
- local pool, W processes: ``extract_features(workers=W)``, first with the forkserver start-up
  (paid once per process: what a ``features`` command waits for), then again with it started
- Ray, 1 and W workers: ``extract_features(backend="ray")`` on a local Ray instance started with
  that many CPUs; starting Ray and its workers' first imports are timed apart (``ray start``
  is paid once per cluster, not per run)

Ray overhead per file = (Ray 1 worker - local 1 process) / N: scheduling, argument and result
transfer, and the task round trips.  Ratios are files/s over the local pool's, measured in the
same run; the machine may be shared, so absolute times move more than ratios.

Run: ``.venv/bin/python bench/scale.py [--files 64] [--seconds 30] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

SR = 22050


def make_files(folder: Path, n: int, seconds: float) -> list[Path]:
    """``n`` files ``folder/c<k>/f<i>.wav``: a chord plus noise, 22.05 kHz mono."""
    from _synth import write_chords

    return write_chords(folder, n, seconds, sr=SR, name=lambda i: f"c{i % 4}/f{i:03d}.wav")


def extract(paths: list[Path], cache_dir: Path, *, workers: int, backend: str) -> float:
    """Seconds to extract every file into an empty cache."""
    from cultural_music.features.cache import FeatureCache
    from cultural_music.config import Config
    from cultural_music.data.dataset import Recording
    from cultural_music.features.extract import extract_features

    recs = [Recording(p, f"{p.parent.name}/{p.name}", p.parent.name, str(i)) for i, p in enumerate(paths)]
    t0 = time.perf_counter()
    out = extract_features(recs, Config(), FeatureCache(cache_dir), augment_splits=(), workers=workers, progress=False,
                           backend=backend, use_index=False)
    seconds = time.perf_counter() - t0
    assert len(out.entries) == len(paths) and not out.skipped
    return seconds


def best(paths: list[Path], cache_dir: Path, rounds: int, **kw: object) -> float:
    """Fastest of ``rounds`` cold extractions (a fresh cache each)."""
    return min(extract(paths, cache_dir / str(r), **kw) for r in range(rounds))  # type: ignore[arg-type]


def ray_run(paths: list[Path], cache_dir: Path, cpus: int, rounds: int) -> tuple[float, float]:
    """(seconds to start Ray and warm its workers, seconds to extract) with ``cpus`` workers."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    @ray.remote(num_cpus=1)
    def warm() -> int:
        import cultural_music.features.jobs  # noqa: F401 - the imports every task needs
        import time as t

        t.sleep(0.5)  # hold the CPU so the next warm-up lands on another worker
        return 0

    ray.get([warm.remote() for _ in range(cpus)])
    start = time.perf_counter() - t0
    try:
        return start, best(paths, cache_dir, rounds, workers=cpus, backend="ray")
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    n, w, k = args.files, args.workers, args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_files(root / "data", n, args.seconds)
        os.sync()  # no write-back of the new files during the first timings
        rows: dict[str, float] = {}
        with threadpool_limits(1):  # one thread per worker, as the pool's and Ray's workers
            extract(paths[:2], root / "c_warm", workers=1, backend="local")  # imports, first-call costs
            rows["local, 1 process"] = best(paths, root / "c_serial", k, workers=1, backend="local")
        rows[f"local pool, {w} processes"] = extract(paths, root / "c_pool", workers=w, backend="local")
        rows["  same, forkserver up"] = best(paths, root / "c_pool2", k, workers=w, backend="local")
        starts = {}
        for cpus in sorted({1, w}):
            starts[cpus], rows[f"Ray, {cpus} worker(s)"] = ray_run(paths, root / f"c_ray{cpus}", cpus, k)
    pool = rows[f"local pool, {w} processes"]
    print(f"{n} files x {args.seconds:g} s (22.05 kHz mono WAV), cold cache, best of {k} (first pool: 1 run)")
    print(f"{'pipeline':<26} {'s':>7} {'files/s':>8} {'x pool':>7}")
    for name, s in rows.items():
        print(f"{name:<26} {s:7.2f} {n / s:8.2f} {pool / s:7.2f}")
    one = rows["Ray, 1 worker(s)"]
    print(f"Ray {w} vs 1 worker(s): x{one / rows[f'Ray, {w} worker(s)']:.2f}")
    print(f"Ray overhead per file: {1000 * (one - rows['local, 1 process']) / n:.1f} ms "
          f"(1 worker vs 1 local process; per-file work {1000 * rows['local, 1 process'] / n:.1f} ms)")
    print("Ray start + worker warm-up (once per cluster): " + ", ".join(f"{c} CPU(s) {s:.1f} s" for c, s in starts.items()))


if __name__ == "__main__":
    main()
