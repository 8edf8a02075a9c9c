"""`similar` query latency, recall@10, build time and memory at 10^4, 10^5 and 10^6 stored vectors.

Synthetic vectors (``--dim`` 1506, the musicnn embedding size), shaped like embeddings rather than
uniform noise: ``--clusters`` cluster centres in a 128-dim latent space with a decaying spectrum,
mapped to ``dim`` dims by a fixed random matrix, plus isotropic noise (~30% of the signal's norm), L2-normalised, stored
float16 on disk (memory-mapped) as ``cultural-music embed`` stores them.  Queries are fresh
draws of the same generator (not stored rows).  Methods, each against the exact top 10:

- ``exact numpy``: what an index below ``EXACT_MAX_ROWS`` does: chunked float32 matmul over the
  float16 memmap (``search.ann.exact_search``)
- ``exact float32``: the same, rows already float32 in RAM (4 * dim bytes per vector)
- ``IVF-SQ8 + rerank``: what ``embed`` builds above the threshold (``search.ann.build_ann`` with
  ``ann_params``): PCA to 256, IVF, 8-bit codes, the 200 best candidates re-scored on the float16 rows
- ``IVF-PQ64 + rerank``: the same with 64-byte product-quantised codes (``--pq-max`` rows at most:
  its training is slow here)
- ``HNSW32,SQ8``: an HNSW graph over 8-bit scalar-quantised vectors (``--hnsw-max`` rows at most:
  its build is the slow one)

Latency: mean over ``--queries`` single-vector queries (one at a time, as ``similar`` does), warm
page cache; memory: bytes the method holds in RAM (the serialized faiss index, or the float32
matrix), the float16 rows on disk are shared by exact search and re-ranking.

Run: ``.venv/bin/python bench/search.py [--sizes 10000,100000,1000000] [--dim 1506] [--queries 50]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cultural_music.search import ann

LATENT = 128


def synth(path: Path, n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """``n`` synthetic normalised vectors float16 ``(n, dim)`` written to a ``.npy`` memmap at ``path``."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
    for lo, block in _blocks(n, dim, clusters, seed):
        out[lo:lo + len(block)] = block
    out.flush()
    return np.load(path, mmap_mode="r")


def _generator(dim: int, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(12345)
    scale = (1.0 + np.arange(LATENT)) ** -0.5
    centres = g.standard_normal((clusters, LATENT)) * scale
    mix = (g.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(np.float32)
    return centres, mix


def _draw(g: np.random.Generator, n: int, dim: int, centres: np.ndarray, mix: np.ndarray) -> np.ndarray:
    scale = (1.0 + np.arange(LATENT)) ** -0.5
    z = centres[g.integers(0, len(centres), n)] + 0.5 * g.standard_normal((n, LATENT)) * scale
    x = (z.astype(np.float32) @ mix) + np.float32(0.07) * g.standard_normal((n, dim), dtype=np.float32)  # noise ~30% of the signal
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _blocks(n: int, dim: int, clusters: int, seed: int):
    centres, mix = _generator(dim, clusters)
    g = np.random.default_rng(seed)
    for lo in range(0, n, 50_000):
        yield lo, _draw(g, min(50_000, n - lo), dim, centres, mix).astype(np.float16)


def queries(n: int, dim: int, clusters: int) -> np.ndarray:
    centres, mix = _generator(dim, clusters)
    return _draw(np.random.default_rng(999), n, dim, centres, mix)


def timed(fn, qs: np.ndarray) -> tuple[list[np.ndarray], float]:
    fn(qs[0])  # warm-up
    t = time.perf_counter()
    rows = [fn(q) for q in qs]
    return rows, (time.perf_counter() - t) / len(qs) * 1e3


def recall(found: list[np.ndarray], truth: list[np.ndarray], k: int = 10) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]))


def batch_truth(vecs: np.ndarray, qs: np.ndarray, k: int = 10) -> list[np.ndarray]:
    """Exact top ``k`` rows of every query in one pass over the rows (the recall reference)."""
    q32 = np.asarray(qs, np.float32)
    sims = np.concatenate([np.asarray(vecs[lo:lo + ann.CHUNK_ROWS], np.float32) @ q32.T
                           for lo in range(0, len(vecs), ann.CHUNK_ROWS)])
    return [np.argsort(-sims[:, j], kind="stable")[:k] for j in range(len(qs))]


def _faiss_rows(n: int, name: str, index, vecs: np.ndarray, qs: np.ndarray, truth, build: float, n_cand: int) -> tuple:
    import faiss

    found, ms = timed(lambda q: ann.rerank(vecs, ann.ann_candidates(index, q, n_cand), q, 10)[0], qs)
    return (n, name, build, ms, recall(found, truth), len(faiss.serialize_index(index)))


def _build(spec: str, vecs: np.ndarray, n_train: int):
    import faiss

    t = time.perf_counter()
    index = faiss.index_factory(vecs.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(vecs[:n_train], dtype=np.float32))
    for lo in range(0, len(vecs), ann.CHUNK_ROWS):
        index.add(np.ascontiguousarray(vecs[lo:lo + ann.CHUNK_ROWS], dtype=np.float32))
    return index, time.perf_counter() - t


def run_size(vecs: np.ndarray, qs: np.ndarray, args: argparse.Namespace) -> list[tuple]:
    import faiss

    n, dim = vecs.shape
    truth = batch_truth(vecs, qs)
    few = qs[: max(2, min(len(qs), int(args.exact_budget_rows // n)))]  # exact queries are slow at 10^6
    found, ms = timed(lambda q: ann.exact_search(vecs, q, 10)[0], few)
    rows = [(n, f"exact numpy, float16 memmap ({len(few)} q)", 0.0, ms, recall(found, truth[: len(few)]), 0)]
    if n * dim * 4 <= args.flat_max_bytes:
        t = time.perf_counter()
        mat = np.asarray(vecs, np.float32)
        build = time.perf_counter() - t
        found, ms = timed(lambda q: ann.exact_search(mat, q, 10)[0], few)
        rows.append((n, f"exact numpy, float32 in RAM ({len(few)} q)", build, ms, recall(found, truth[: len(few)]), mat.nbytes))
        del mat
    params = ann.ann_params(n, dim)
    t = time.perf_counter()
    index = ann.build_ann(vecs, params)
    build = time.perf_counter() - t
    for probe in sorted({params["nprobe"], 2 * params["nprobe"]}):
        faiss.extract_index_ivf(index).nprobe = min(probe, params["nlist"])
        rows.append(_faiss_rows(n, f"PCA256,IVF{params['nlist']},SQ8 nprobe {probe} + rerank {params['rerank']}",
                                index, vecs, qs, truth, build, params["rerank"]))
    del index
    if n <= args.pq_max:
        index, build = _build(f"PCAR256,IVF{params['nlist']},PQ64", vecs, min(n, 20_000))
        faiss.extract_index_ivf(index).nprobe = params["nprobe"]
        rows.append(_faiss_rows(n, f"PCA256,IVF{params['nlist']},PQ64 nprobe {params['nprobe']} + rerank 200",
                                index, vecs, qs, truth, build, 200))
    if n <= args.hnsw_max:
        index, build = _build("HNSW32,SQ8", vecs, min(n, 20_000))
        index.hnsw.efSearch = 64
        rows.append(_faiss_rows(n, "HNSW32,SQ8 ef 64 + rerank 100", index, vecs, qs, truth, build, 100))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dim", type=int, default=1506)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--hnsw-max", type=int, default=100_000, help="largest size HNSW is built for")
    p.add_argument("--pq-max", type=int, default=0, help="largest size IVF-PQ64 is built for (slow training)")
    p.add_argument("--exact-budget-rows", type=float, default=2e6, help="rows x queries timed for exact search")
    p.add_argument("--flat-max-bytes", type=float, default=2e9, help="largest float32 matrix exact search may hold in RAM")
    p.add_argument("--dir", default=None, help="folder for the synthetic .npy (default: a temp folder)")
    args = p.parse_args()
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, dim {args.dim}, EXACT_MAX_ROWS {ann.EXACT_MAX_ROWS}")
    qs = queries(args.queries, args.dim, args.clusters)
    print(f"| vectors | method | build s | query ms | recall@10 | RAM MB |\n|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            t = time.perf_counter()
            vecs = synth(Path(tmp) / f"v{n}.npy", n, args.dim, args.clusters)
            gen = time.perf_counter() - t
            for row in run_size(vecs, qs, args):
                print(f"| {row[0]:,} | {row[1]} | {row[2]:.1f} | {row[3]:.2f} | {row[4]:.3f} | {row[5] / 1e6:.0f} |", flush=True)
            print(f"|  | (synthesis {gen:.0f} s, float16 on disk {vecs.nbytes / 1e6:.0f} MB) | | | | |", flush=True)
            del vecs


if __name__ == "__main__":
    main()
