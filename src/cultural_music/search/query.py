"""Embed a query file with an index's stored feature config and list its nearest rows.

The query's embedding is computed exactly as the index's rows were (see
:mod:`cultural_music.search.index`): the same clips (``iter_clips`` with the stored audio
settings), the same backbone, the mean over clips and patches, L2-normalised.  Tables up to
:data:`~cultural_music.search.ann.EXACT_MAX_ROWS` rows are searched exactly; larger ones through
their faiss index, whose best candidates are then re-scored exactly, so every distance shown is
exact (1 - cosine similarity, 0 = same direction, 2 = opposite).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cultural_music.config import Config
from cultural_music.features.compute import feature_batches
from cultural_music.search import ann
from cultural_music.search.index import INDEX_FILE, SearchIndex, Table, check_same_embedding, embedding_config, load_index

__all__ = ["Match", "embed_file", "search_table", "similar"]

_BATCH = 4  # clips per backbone pass


@dataclass(frozen=True)
class Match:
    """One result: the recording's ``path``, the span ``start``..``end`` in seconds (the whole
    file for a recording row), cosine ``distance`` (0..2) and ``rank`` (1 = nearest)."""

    rank: int
    path: str
    start: float
    end: float
    distance: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "start": self.start, "end": self.end, "distance": self.distance}


def embed_file(path: str | Path, cfg: Config, *, windows: bool = False) -> np.ndarray:
    """A file's embedding float32 ``(dim,)`` (the mean over all its clips and patches), or with
    ``windows=True`` one per clip ``(n_clips, dim)``; L2-normalised.  Raises
    :class:`~cultural_music.errors.AudioLoadError` for an unreadable file."""
    sums, n_patches, per_clip = None, 0, []
    for _, feats in feature_batches(path, cfg, batch_size=_BATCH):  # feats: (n, dim, patches)
        per_clip.append(feats.mean(axis=2))
        total = feats.sum(axis=(0, 2), dtype=np.float64)
        sums = total if sums is None else sums + total
        n_patches += feats.shape[0] * feats.shape[2]
    vec = np.concatenate(per_clip) if windows else (sums / n_patches)[None]
    vec = vec.astype(np.float32)
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    return vec if windows else vec[0]


def search_table(table: Table, q: np.ndarray, k: int) -> list[Match]:
    """The ``k`` rows of ``table`` nearest to ``q`` ``(dim,)`` (normalised), exact distances."""
    index = table.ann()
    if index is None:
        rows, dist = ann.exact_search(table.dense(), q, k)
    else:
        n_cand = max(table.ann_params["rerank"] if table.ann_params else 0, 10 * k)
        rows, dist = ann.rerank(table.vectors, ann.ann_candidates(index, q, n_cand), q, k)
    out = []
    for rank, (r, d) in enumerate(zip(rows.tolist(), dist.tolist()), start=1):
        it = table.items[r]
        out.append(Match(rank, it["path"], it["start"], it["end"], max(0.0, float(d))))
    return out


def similar(index: SearchIndex | str | Path, query: str | Path, *, k: int = 10, windows: bool = False,
            model_dir: str | Path | None = None) -> list[Match]:
    """The ``k`` recordings (``windows``: windows) of ``index`` most similar to the file ``query``.

    ``model_dir``, when given, must embed as the index does (same backbone and feature/audio
    settings), else :class:`~cultural_music.errors.ModelLoadError`; the query itself is always
    embedded with the index's stored config.
    """
    idx = index if isinstance(index, SearchIndex) else load_index(index)
    if model_dir is not None:
        check_same_embedding(idx.meta, embedding_config(model_dir)[0], idx.directory, f"model {model_dir}")
    name = "windows" if windows else "recordings"
    if name not in idx.tables:
        from cultural_music.errors import ParameterError

        raise ParameterError(f"{idx.directory / INDEX_FILE}: the index has no windows; rebuild it with 'cultural-music embed --windows'")
    return search_table(idx.tables[name], embed_file(query, idx.config), k)
