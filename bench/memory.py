"""Peak memory of a training epoch at 1k and 10k clips: streaming (ours) vs all in RAM (reference).

Synthetic cached features (one clip per file, plus 2 augmented variants, as for a training
split) are written straight into a cache folder; then, in a fresh process per size:

- ours: ``ClipDataset`` (reads one clip per item) + one ``train_model`` epoch of ``seed-cnn``
- reference style: every spectrogram and augmented copy loaded into a list (no training)

and the process's peak resident memory (``ru_maxrss``) is reported.  Targets: ours at 10k clips
<= 1.3 x ours at 1k, and under 4 GiB.  Clips default to 64 frames (1.5 s at hop 512) and one
torch thread so that a 10k-clip epoch takes a few minutes even on a busy 2-core machine; what
grows with the number of clips (item list, per-file header offsets) does not depend on either.
``--frames 1292 --sizes 100 400`` gives the absolute peak for 30 s clips.

Run: ``.venv/bin/python bench/memory.py [--sizes 1000 10000] [--frames 64] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, root: str, n: int, frames: int, threads: int) -> dict:
    import numpy as np
    import torch

    from _synth import make_cache
    from cultural_music.config import TrainConfig
    from cultural_music.training.clip_dataset import ClipDataset, build_items
    from cultural_music.models import build_model
    from cultural_music.training.loop import train_model

    recs, ex = make_cache(Path(root), n_clips=n, frames=frames, write=False)
    classes = sorted({r.label for r in recs})
    before = peak_mib()
    t0 = time.perf_counter()
    if mode == "eager":
        held = [np.load(e.clean_path) for e in ex.entries.values()] + [np.load(e.aug_path) for e in ex.entries.values()]
        return {"before": before, "peak": peak_mib(), "seconds": time.perf_counter() - t0, "held": len(held)}
    torch.set_num_threads(threads)
    items = build_items(recs, ex, classes, "train")
    train = ClipDataset(items, train=True, seed=0)
    val = ClipDataset(items[:32])
    model = build_model("seed-cnn", n_classes=len(classes), n_mels=128)
    res = train_model(model, train, val, TrainConfig(epochs=1, batch_size=16), log=lambda s: None)
    return {"before": before, "peak": peak_mib(), "seconds": time.perf_counter() - t0,
            "clips_per_s": res.history[0]["clips_per_s"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, root, n, frames, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        print(json.dumps(child(mode, root, n, frames, threads)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the training epoch")
    ap.add_argument("--no-eager", action="store_true", help="skip the reference-style all-in-RAM rows")
    args = ap.parse_args()
    from _synth import make_cache

    print(f"load average {os.getloadavg()[0]:.1f}, {len(os.sched_getaffinity(0))} cores", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            root = Path(tmp) / f"c{n}"
            t0 = time.perf_counter()
            make_cache(root, n_clips=n, frames=args.frames)
            mib = sum(p.stat().st_size for p in root.rglob("*.npy")) / 2**20
            print(f"{n} clips: wrote {mib:.0f} MiB of features in {time.perf_counter() - t0:.0f} s", flush=True)
            for mode in ("ours", "eager")[: 1 if args.no_eager else 2]:
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(n), str(args.frames), str(args.threads)],
                                     check=True, capture_output=True, text=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((mode, n, r))
                print(f"  {mode:<6} peak RSS {r['peak']:8.0f} MiB (before the epoch {r['before']:.0f} MiB), "
                      f"{r['seconds']:.0f} s" + (f", {r['clips_per_s']:.0f} clips/s" if "clips_per_s" in r else ""), flush=True)
    ours = {n: r["peak"] for mode, n, r in rows if mode == "ours"}
    lo, hi = min(ours), max(ours)
    print(f"\nours: peak at {hi} clips / peak at {lo} clips = {ours[hi] / ours[lo]:.2f} (target <= 1.3), "
          f"{ours[hi] / 1024:.2f} GiB (target < 4 GiB); clip = 128 x {args.frames}, 2 augmented variants")
    eager = {n: r["peak"] for mode, n, r in rows if mode == "eager"}
    if eager:
        print(f"reference style (all in RAM): {eager[hi] / eager[lo]:.2f}x from {lo} to {hi} clips, "
              f"{eager[hi] / 1024:.2f} GiB at {hi}")


if __name__ == "__main__":
    main()
