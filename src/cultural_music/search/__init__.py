"""Search by example: one embedding per recording (and per window) of a folder, stored with the
model's feature config, and the recordings nearest to a query file (cosine distance).

:mod:`.index` builds, saves and loads an index folder; :mod:`.query` embeds a query file and
searches (exact below :data:`~cultural_music.search.ann.EXACT_MAX_ROWS` rows, a faiss IVF-PQ
index with exact re-ranking above); :mod:`.ann` holds everything faiss (docs/search.md).
"""

from __future__ import annotations

__all__ = ["embed_folder", "load_index", "similar", "Match"]


def __getattr__(name: str):  # light import: numpy and faiss only when used
    if name in ("embed_folder", "load_index"):
        from cultural_music.search import index

        return getattr(index, name)
    if name in ("similar", "Match"):
        from cultural_music.search import query

        return getattr(query, name)
    raise AttributeError(f"module 'cultural_music.search' has no attribute {name!r}")
