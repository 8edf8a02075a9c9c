"""Cold embedding of a data set with each pretrained backbone (issue 17): wall time and the
real-time factor (seconds of audio embedded per second of wall time), decode included.

Each backbone gets a fresh, empty feature cache, so every file is decoded and embedded; the
fusion run afterwards shares the two backbones' cache and should embed nothing (it joins the
cached entries).  Example (esc10: 400 files x 5 s)::

    python bench/embed_cold.py --data ../shared/data/esc10 --duration 5 --workers 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from cultural_music.config import Config
from cultural_music.data.dataset import scan_folder
from cultural_music.features.cache import FeatureCache
from cultural_music.features.extract import extract_features
from cultural_music.features.jobs import LocalRunner
from cultural_music.models import default_config


def embed(recordings: list, name: str, duration: float, cache: FeatureCache, workers: int) -> dict[str, float]:
    """Extract ``name``'s features of every recording into ``cache``; wall time and counts."""
    cfg = default_config(name, Config()).replace(audio={"clip_seconds": duration}, augment={"n_variants": 0})
    t0 = time.perf_counter()
    result = extract_features(recordings, cfg, cache, augment_splits=(), runner=LocalRunner(workers), progress=False)
    wall = time.perf_counter() - t0
    audio = sum(e.duration for e in result.entries.values())
    return {"files": len(result.entries), "decoded": result.n_decoded, "skipped": len(result.skipped),
            "audio_s": audio, "wall_s": wall, "rtf": audio / wall if wall > 0 else float("inf")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=5.0, help="clip seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-cache", type=Path, default=None, help="copy the filled cache here afterwards")
    args = parser.parse_args()
    recordings = scan_folder(args.data).recordings
    root = Path(tempfile.mkdtemp(prefix="cm_cold_"))
    try:
        cache = FeatureCache(root)
        print(f"{len(recordings)} files, {args.workers} worker(s)\n")
        print("| backbone | files | decoded | audio (s) | wall (s) | real-time factor |\n|---|---|---|---|---|---|")
        for name in ("musicnn", "yamnet", "fusion"):
            r = embed(recordings, name, args.duration, cache, args.workers)
            print(f"| {name} | {r['files']} | {r['decoded']} | {r['audio_s']:.0f} | {r['wall_s']:.1f} | {r['rtf']:.1f}x |", flush=True)
        if args.keep_cache is not None:
            shutil.copytree(root, args.keep_cache, dirs_exist_ok=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
