"""Backbone arithmetic: how close the embedding networks come to this CPU's float32 peak.

The physical limit of labelling an archive is the arithmetic of the backbone.  This script
measures, in one run and with the same threads:

1. the FLOP rate of a large float32 matrix multiply (``torch.mm``, n x n, ``2 n^3`` FLOP): the
   practical peak of these cores;
2. the FLOPs of one patch of each backbone, counted by ``torch.utils.flop_counter`` (the issue
   states 2.8 GFLOP per 3 s musicnn patch, 0.14 GFLOP per 0.96 s YAMNet patch);
3. each backbone's embedding throughput (patches/s, and so GFLOP/s and the fraction of the
   matmul rate) for several execution variants: torch default, ``channels_last``, oneDNN
   (``torch.backends.mkldnn``) off, ``torch.jit`` trace + freeze, ``torch.compile`` and ONNX
   Runtime (the backbone alone, exported with ``torch.onnx.export``), with each variant's max
   difference from the default embeddings;
4. (``--pipeline``) the whole extraction of a folder of synthetic long WAVs with the musicnn
   embedding config (decode + log-mel + network + cache write, ``extract_features`` with a
   ``LocalRunner(1)``) against the network alone on the same patches.

Each section is a function, so ``bench/archive.py`` can call them; ``main`` prints the tables.

    .venv/bin/python bench/archive_flops.py                 # --threads N --seconds 3 --n 2048
    .venv/bin/python bench/archive_flops.py --pipeline --files 20 --minutes 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ISSUE_GFLOP = {"musicnn": 2.8, "yamnet": 0.14}  # per patch, as the issue states them


def matmul_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of ``torch.mm`` on float32 ``(n, n)`` matrices (``2 n^3`` FLOP a product), best
    of repeated products for about ``seconds``, with the current torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def backbone(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The pretrained network whose ``embedding`` a patch goes through, as a module, and one
    batch of 8 random patches: musicnn ``(8, 187, 96)``, YAMNet ``(8, 96, 64)``."""
    g = torch.Generator().manual_seed(0)
    if name == "musicnn":
        from cultural_music.backbones.musicnn import N_MELS, PATCH_FRAMES, pretrained

        return _Embedding(pretrained("MSD_musicnn")), torch.randn(8, PATCH_FRAMES, N_MELS, generator=g)
    from cultural_music.backbones.yamnet import N_MELS, PATCH_FRAMES, pretrained_yamnet

    return _Embedding(pretrained_yamnet()), torch.randn(8, PATCH_FRAMES, N_MELS, generator=g) - 3.0


class _Embedding(torch.nn.Module):
    """``net.embedding`` as ``forward`` (what tracing and export need)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.eval()  # the wrapper too: torch.onnx.export restores the top module's mode, recursively

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embedding(x)


def count_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOP per patch counted by ``torch.utils.flop_counter`` (a multiply-add is 2 FLOP)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / len(x) / 1e9


def _rate(fn: Callable[[torch.Tensor], object], x: torch.Tensor, seconds: float) -> float:
    """Patches/s of ``fn`` on batch ``x``: best of 3 timed blocks of about ``seconds / 3`` each."""
    with torch.inference_mode():
        fn(x)
        fn(x)  # warm-up (oneDNN primitive caches, JIT profiling)
        best = 0.0
        for _ in range(3):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 3:
                fn(x)
                n += len(x)
            best = max(best, n / (time.perf_counter() - t0))
    return best


def _onnx(model: torch.nn.Module, x: torch.Tensor, threads: int) -> Callable[[torch.Tensor], np.ndarray]:
    """The backbone exported alone to ONNX and run by ONNX Runtime (intra-op threads = ``threads``)."""
    import onnxruntime as ort

    path = Path(tempfile.mkdtemp()) / "backbone.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["emb"],
                      dynamic_axes={"x": {0: "batch"}, "emb": {0: "batch"}}, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return lambda t: sess.run(None, {"x": t.numpy()})[0]


def variants(model: torch.nn.Module, x: torch.Tensor, threads: int, *, compile_: bool = True) -> dict[str, Callable]:
    """The execution variants measured, by name: each maps a patch batch to embeddings."""
    out: dict[str, Callable] = {"torch default": model}
    cl = _ChannelsLast(model)
    out["channels_last"] = cl

    def no_mkldnn(t: torch.Tensor) -> torch.Tensor:
        with torch.backends.mkldnn.flags(enabled=False):
            return model(t)

    out["mkldnn off"] = no_mkldnn
    with torch.inference_mode():
        out["jit trace + freeze"] = torch.jit.optimize_for_inference(torch.jit.trace(model, x))
    if compile_:
        out["torch.compile"] = torch.compile(model, dynamic=False)
    try:
        out["onnxruntime"] = _onnx(model, x, threads)
    except Exception as err:  # noqa: BLE001 - a bench reports what it could not run
        print(f"onnxruntime: not measured ({type(err).__name__}: {err})", file=sys.stderr)
    return out


class _ChannelsLast(torch.nn.Module):
    """The model with ``channels_last`` weights (a copy; 4-D convs only)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        import copy

        self.model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def backbone_table(name: str, peak: float, threads: int, seconds: float, *, compile_: bool = True) -> list[dict]:
    """One row per variant: patches/s, GFLOP/s (counted FLOPs), fraction of ``peak`` GFLOP/s,
    speed relative to the default and the max abs difference of its embeddings."""
    model, x = backbone(name)
    gflop = count_gflop(model, x)
    with torch.inference_mode():
        ref = model(x).numpy()
    rows = []
    for label, fn in variants(model, x, threads, compile_=compile_).items():
        try:
            t0 = time.perf_counter()
            with torch.inference_mode():
                got = np.asarray(fn(x))
            first = time.perf_counter() - t0
            rate = _rate(fn, x, seconds)
        except Exception as err:  # noqa: BLE001
            print(f"{name} {label}: failed ({type(err).__name__}: {str(err)[:200]})", file=sys.stderr)
            continue
        rows.append({"backbone": name, "variant": label, "patches_s": rate, "gflop_patch": gflop,
                     "gflops": rate * gflop, "of_peak": rate * gflop / peak, "first_s": first,
                     "max_diff": float(np.abs(got - ref).max()), "rel_diff": float(np.abs(got - ref).max() / np.abs(ref).max())})
    base = rows[0]["patches_s"]
    for r in rows:
        r["x_default"] = r["patches_s"] / base
    return rows


def pipeline_fraction(files: int, minutes: float, workdir: Path) -> dict:
    """Whole extraction (decode + log-mel + musicnn embeddings + cache write) of ``files``
    synthetic WAVs of ``minutes`` each at 16 kHz, by ``extract_features`` with a
    ``LocalRunner(1)``, against the network alone on the same number of patches."""
    import soundfile as sf

    from cultural_music.backbones.musicnn import PATCH_FRAMES, N_MELS, embed_logmels, pretrained
    from cultural_music.config import Config, FeatureConfig
    from cultural_music.data.dataset import scan_folder
    from cultural_music.features.cache import FeatureCache
    from cultural_music.features.extract import extract_features
    from cultural_music.features.jobs import LocalRunner

    cfg = Config().replace(audio={"sample_rate": 16000, "clip_seconds": 30.0},
                           features=asdict(FeatureConfig.for_kind("musicnn-embedding", "MSD_musicnn")))
    sr = 16000
    g = np.random.default_rng(0)
    for i in range(files):
        t = np.arange(int(minutes * 60 * sr)) / sr
        y = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * g.standard_normal(t.size)
        path = workdir / "music" / f"c{i % 2}" / f"f{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), y.astype(np.float32), sr)
    recs = scan_folder(workdir / "music").recordings
    t0 = time.perf_counter()
    res = extract_features(recs, cfg, FeatureCache(workdir / "cache"), runner=LocalRunner(1), progress=False)
    whole = time.perf_counter() - t0
    patches = sum(int(e.n_clips) * int(np.load(e.clean_path, mmap_mode="r").shape[-1]) for e in res.entries.values())
    model = pretrained("MSD_musicnn")
    x = np.random.default_rng(1).standard_normal((1, N_MELS, PATCH_FRAMES * 10)).astype(np.float32)
    rate = _rate(lambda t: embed_logmels(model, t.numpy()), torch.from_numpy(x), 6.0) * 10  # patches/s
    network = patches / rate
    return {"files": files, "minutes": minutes, "patches": patches, "whole_s": whole, "network_s": network,
            "fraction": network / whole, "audio_h_per_h": files * minutes * 60 / whole}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--n", type=int, default=2048, help="matmul size")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per variant")
    ap.add_argument("--backbones", default="musicnn,yamnet")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=3.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    peak = matmul_gflops(args.n)
    print(f"float32 matmul {args.n}^2: {peak:.1f} GFLOP/s")
    print("| backbone | variant | patches/s | GFLOP/patch (counted / issue) | GFLOP/s | of matmul | x default | first call s | max diff (abs / of max) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in filter(None, args.backbones.split(",")):  # --backbones "": the pipeline only
        for r in backbone_table(name, peak, args.threads, args.seconds, compile_=not args.no_compile):
            print(f"| {name} | {r['variant']} | {r['patches_s']:.1f} | {r['gflop_patch']:.3f} / {ISSUE_GFLOP[name]} | "
                  f"{r['gflops']:.1f} | {100 * r['of_peak']:.0f} % | {r['x_default']:.2f} | {r['first_s']:.2f} | "
                  f"{r['max_diff']:.1e} / {r['rel_diff']:.1e} |")
    peak_after = matmul_gflops(args.n)
    print(f"float32 matmul again after the backbones: {peak_after:.1f} GFLOP/s (load average {os.getloadavg()[0]:.1f})")
    if args.pipeline:
        with tempfile.TemporaryDirectory() as tmp:
            p = pipeline_fraction(args.files, args.minutes, Path(tmp))
        print(f"pipeline: {p['files']} x {p['minutes']} min, {p['patches']} patches: whole extraction "
              f"{p['whole_s']:.1f} s, network alone {p['network_s']:.1f} s -> network-only fraction "
              f"{100 * p['fraction']:.0f} % ({p['audio_h_per_h']:.0f} h of audio per hour)")


if __name__ == "__main__":
    main()
