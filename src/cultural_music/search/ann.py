"""Exact and approximate nearest neighbours of L2-normalised vectors (cosine distance).

- Exact: chunked matrix products over the stored float16 vectors (memory-mapped), numpy only.
- Approximate (optional extra ``search``: faiss-cpu): ``PCAR<p>,IVF<nlist>,SQ8`` (a PCA
  rotation to ``p <= 256`` dimensions, an inverted file of ``nlist`` k-means cells, 8-bit scalar
  quantisation: ``p`` bytes per vector in memory), inner-product metric, then the ``rerank`` best
  candidates re-scored exactly on the stored float16 vectors.  Chosen by bench/search.py (see
  bench/README.md "Search by example"): exact search passes ~20 ms per query near 10^4
  vectors of 1506 dims on 2 shared cores; IVF-SQ8 + re-ranking keeps recall@10 near 1 at 10^6 vectors in
  milliseconds with 256 bytes of memory per vector; an HNSW graph queries as fast but builds
  many times slower, and product quantisation (PQ64) trained 20x slower than SQ8 here.

Saved with faiss's own binary writer (``faiss.write_index``), never pickle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cultural_music.errors import CulturalMusicError

__all__ = ["EXACT_MAX_ROWS", "CHUNK_ROWS", "exact_search", "have_faiss", "faiss_version", "build_ann", "save_ann",
           "load_ann", "ann_candidates", "rerank", "ann_params"]

#: At most this many rows an index is searched exactly (no ANN index is built).  Measured by
#: bench/search.py on 2 shared cores, 1506 dims: exact (float32 in RAM) 27 ms at 10^4 rows and
#: 119 ms at 10^5, IVF-SQ8 + re-rank 16-20 ms at both: the two cross near 10^4.
EXACT_MAX_ROWS = 20_000
CHUNK_ROWS = 32_768  #: rows converted to float32 per step of exact search / ANN building
_TRAIN_ROWS = 40  #: k-means training rows per IVF cell
_MAX_TRAIN = 60_000  #: training rows at most (memory: 60k x 1506 x 4 B = 360 MB)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:
        raise CulturalMusicError("faiss is not installed: pip install 'cultural-music[search]' "
                                 "(needed for indexes over the exact-search size)") from err
    return faiss


def have_faiss() -> bool:
    """Whether faiss-cpu can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_version() -> str:
    """faiss's version string."""
    return str(_faiss().__version__)


def exact_search(vectors: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` (``(n, dim)``, float16/float32, L2-normalised, may be a
    memmap) most similar to ``q`` (``(dim,)``, normalised): ``(rows int64 (k',), cosine distances
    float32 (k',))``, nearest first, ``k' = min(k, n)``; distance = 1 - cosine similarity."""
    n = len(vectors)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    q32 = np.asarray(q, np.float32)
    best_rows, best_sims = np.zeros(0, np.int64), np.zeros(0, np.float32)
    for lo in range(0, n, CHUNK_ROWS):
        sims = np.asarray(vectors[lo:lo + CHUNK_ROWS], np.float32) @ q32
        top = np.argpartition(-sims, min(k, len(sims)) - 1)[:k] if len(sims) > k else np.arange(len(sims))
        best_rows = np.concatenate([best_rows, top + lo])
        best_sims = np.concatenate([best_sims, sims[top]])
        if len(best_rows) > k:
            keep = np.argpartition(-best_sims, k - 1)[:k]
            best_rows, best_sims = best_rows[keep], best_sims[keep]
    order = np.lexsort((best_rows, -best_sims))
    return best_rows[order], (1.0 - best_sims[order]).astype(np.float32)


def ann_params(n: int, dim: int) -> dict[str, int]:
    """IVF-SQ8 settings for ``n`` rows of ``dim`` dims: ``pca`` (dims kept = bytes per vector),
    ``nlist`` (cells), ``nprobe`` (cells searched), ``rerank`` (candidates re-scored exactly)."""
    nlist = int(min(4096, max(16, round(math.sqrt(n)))))
    return {"pca": min(256, dim), "nlist": nlist, "nprobe": min(nlist, max(8, nlist // 32)), "rerank": 200}


def build_ann(vectors: np.ndarray, params: dict[str, int], *, seed: int = 0) -> Any:
    """Train and fill a faiss ``PCAR,IVF,SQ8`` inner-product index on ``vectors`` ((n, dim),
    normalised, may be a float16 memmap), reading ``CHUNK_ROWS`` rows at a time."""
    faiss = _faiss()
    n, dim = vectors.shape
    index = faiss.index_factory(dim, f"PCAR{params['pca']},IVF{params['nlist']},SQ8", faiss.METRIC_INNER_PRODUCT)
    n_train = min(n, max(_TRAIN_ROWS * params["nlist"], 10_000), _MAX_TRAIN)
    rows = np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))
    index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
    for lo in range(0, n, CHUNK_ROWS):
        index.add(np.ascontiguousarray(vectors[lo:lo + CHUNK_ROWS], dtype=np.float32))
    faiss.extract_index_ivf(index).nprobe = params["nprobe"]
    return index


def save_ann(index: Any, path: str | Path) -> None:
    """Write with faiss's own binary writer."""
    _faiss().write_index(index, str(path))


def load_ann(path: str | Path, nprobe: int) -> Any:
    """Read an index written by :func:`save_ann`; ``nprobe`` cells are searched per query."""
    faiss = _faiss()
    index = faiss.read_index(str(path))
    faiss.extract_index_ivf(index).nprobe = nprobe
    return index


def ann_candidates(index: Any, q: np.ndarray, n_candidates: int) -> np.ndarray:
    """Row numbers (int64, up to ``n_candidates``) the ANN index finds nearest to ``q`` ``(dim,)``."""
    _, rows = index.search(np.asarray(q, np.float32)[None], n_candidates)
    return rows[0][rows[0] >= 0].astype(np.int64)


def rerank(vectors: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine distances of candidate ``rows`` of ``vectors`` to ``q``; the best ``k``,
    nearest first: ``(rows (k',), distances float32 (k',))``."""
    rows = np.sort(np.unique(rows))
    if len(rows) == 0:
        return rows, np.zeros(0, np.float32)
    sims = np.asarray(vectors[rows], np.float32) @ np.asarray(q, np.float32)
    order = np.lexsort((rows, -sims))[:k]
    return rows[order], (1.0 - sims[order]).astype(np.float32)
