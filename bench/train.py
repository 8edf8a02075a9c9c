"""Training speed of the reference model (``seed-cnn``) on 30 s log-mel clips (128 x 1292).

(The default model, ``musicnn``, fits a linear head on cached embeddings in seconds: its
per-epoch figures are in each model folder's ``history.json``.)

1. One training step (forward, loss, backward, Adam) on random batches: torch threads, batch
   size and ``channels_last`` varied one at a time from the baseline (threads = cores, batch 16,
   contiguous), then the best combination; clips/s and the ratio to the baseline, same run.
2. Data loading alone (``ClipDataset`` over synthetic cached features, with masking and variant
   draws) with ``DataLoader`` ``num_workers`` 0 and 2, as a share of an epoch's time.
3. One ``train_model`` epoch on those features: the clips/s a user sees in ``history.json``.

Run: ``.venv/bin/python bench/train.py [--frames 1292] [--clips 64]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

CORES = len(os.sched_getaffinity(0))


def step_rate(model: torch.nn.Module, *, batch: int, threads: int, channels_last: bool, frames: int, clips: int) -> float:
    """Training clips/s over about ``clips`` clips, after one warm-up step."""
    torch.set_num_threads(threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, 128, frames).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    steps = max(1, clips // batch)
    for k in range(steps + 1):
        if k == 1:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def model_matrix(frames: int, clips: int) -> dict[str, float]:
    from cultural_music.models import build_model

    torch.manual_seed(0)
    model = build_model("seed-cnn", n_classes=10, n_mels=128)
    base = {"batch": 16, "threads": CORES, "channels_last": False}
    variants = {
        f"baseline: {CORES} threads, batch 16, contiguous": base,
        "1 thread": base | {"threads": 1},
        "channels_last": base | {"channels_last": True},
        "batch 32": base | {"batch": 32},
        "batch 64": base | {"batch": 64},
        "1 thread, channels_last": base | {"threads": 1, "channels_last": True},
        "1 thread, batch 32": base | {"threads": 1, "batch": 32},
    }
    rates: dict[str, float] = {}
    for name, kw in variants.items():
        rates[name] = step_rate(model, frames=frames, clips=clips, **kw)
        print(f"  {name:<44}{rates[name]:8.2f} clips/s", flush=True)
    return rates


def data_rate(ds: torch.utils.data.Dataset, workers: int) -> float:
    """Clips/s of iterating the dataset in batches of 16 without a model."""
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    n = sum(len(y) for _, y in loader)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1292, help="frames per clip (1292 = 30 s at 22,050 Hz, hop 512)")
    ap.add_argument("--clips", type=int, default=64, help="clips per measurement")
    args = ap.parse_args()
    from _synth import make_cache
    from cultural_music.config import TrainConfig
    from cultural_music.training.clip_dataset import ClipDataset, build_items
    from cultural_music.models import build_model
    from cultural_music.training.loop import train_model

    print(f"seed-cnn, clips 128 x {args.frames}, {CORES} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("1. training step on random batches")
    rates = model_matrix(args.frames, args.clips)
    base = next(iter(rates.values()))
    for name, r in rates.items():
        print(f"  {name:<44}x{r / base:5.2f} vs baseline")
    with tempfile.TemporaryDirectory() as tmp:
        recs, ex = make_cache(Path(tmp), n_clips=max(args.clips, 64), frames=args.frames)
        classes = sorted({r.label for r in recs})
        items = build_items(recs, ex, classes, "train")
        train = ClipDataset(items, train=True, seed=0)
        print("2. data loading alone (ClipDataset + masks, batches of 16)")
        for w in (0, 2):
            r = data_rate(train, w)
            print(f"  num_workers={w}: {r:8.0f} clips/s = {100 * base / r:.1f} % of a baseline epoch's time")
        print("3. one train_model epoch (threads = cores, batch 16)")
        torch.set_num_threads(CORES)
        torch.manual_seed(0)
        model = build_model("seed-cnn", n_classes=len(classes), n_mels=128)
        res = train_model(model, train, ClipDataset(items[:16]), TrainConfig(epochs=1, batch_size=16), log=lambda s: None)
        h = res.history[0]
        print(f"  {h['clips_per_s']:.2f} clips/s ({len(train)} clips in {h['seconds']:.1f} s)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
