"""Build, save and load a search index folder: one embedding per recording (and per window).

Embedding of a recording: the mean of the backbone's patch embeddings over all its clips (the
``(rows, patches)`` features of every clip, cached by
:func:`~cultural_music.features.extract.extract_features`, averaged over clips and patches),
L2-normalised; of a window (``windows=True``): the same over one clip (``clip_seconds`` long,
the clips training cuts).  Distance: cosine (1 - cosine similarity).

Folder layout (``index.json`` is written last and names the generation folder, so an
interrupted ``embed`` leaves the previous index whole; features already computed stay in the
feature cache, so a rerun continues without decoding them again)::

    index.json                  model feature config + backbone, dim, metric, counts, library
    g<gen>/recordings/vectors.npy   float16 (n, dim), L2-normalised
    g<gen>/recordings/items.csv     path,start,end,sha (seconds; start 0, end = duration)
    g<gen>/recordings/ann.faiss     faiss index (only above EXACT_MAX_ROWS rows)
    g<gen>/windows/...              the same per window (with --windows)
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cultural_music import __version__
from cultural_music.atomic import atomic_write_json, atomic_write_text, ensure_dir
from cultural_music.config import LOGMEL, MUSICNN, Config
from cultural_music.data.dataset import AUDIO_EXTENSIONS, Recording, Skipped
from cultural_music.errors import CulturalMusicError, ModelLoadError
from cultural_music.features.cache import FeatureCache
from cultural_music.features.extract import extract_features
from cultural_music.search import ann
from cultural_music.training.artifact import read_meta

__all__ = ["INDEX_FILE", "TABLES", "Table", "SearchIndex", "EmbedReport", "embed_folder", "load_index",
           "embedding_config", "check_same_embedding"]

INDEX_FILE = "index.json"
FORMAT_VERSION = 1
TABLES = ("recordings", "windows")
_ITEM_FIELDS = ("path", "start", "end", "sha")


@dataclass
class Table:
    """One searchable set of rows: ``vectors`` float16 ``(n, dim)`` (memory-mapped), ``items``
    (path, start s, end s, sha per row), and the faiss index when there is one."""

    directory: Path
    vectors: np.ndarray
    items: list[dict[str, Any]]
    ann_params: dict[str, int] | None = None
    _ann: Any = None
    _dense: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def ann(self) -> Any:
        """The faiss index (read on first use), or ``None`` for an exact-search table."""
        if self.ann_params is None:
            return None
        if self._ann is None:
            self._ann = ann.load_ann(self.directory / "ann.faiss", self.ann_params["nprobe"])
        return self._ann

    def dense(self) -> np.ndarray:
        """The rows as float32 in memory (exact-search tables, read once), else the memmap."""
        if self.ann_params is not None:
            return self.vectors
        if self._dense is None:
            self._dense = np.asarray(self.vectors, np.float32)
        return self._dense


@dataclass
class SearchIndex:
    """A loaded index folder: its ``meta`` (index.json), model ``config`` and tables by name."""

    directory: Path
    meta: dict[str, Any]
    config: Config
    tables: dict[str, Table]


@dataclass
class EmbedReport:
    """What one ``embed`` run did: files added, replaced (content changed) and kept, bad files
    skipped with their reason, rows per table, and whether a faiss index was built per table."""

    directory: Path
    added: int = 0
    replaced: int = 0
    kept: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    ann: dict[str, bool] = field(default_factory=dict)


def embedding_config(model_dir: str | Path) -> tuple[Config, dict[str, Any]]:
    """The saved config of a model folder and a summary ``{"dir", "name", "backbone", "kind"}``.

    Raises :class:`ModelLoadError` for a model on log-mel features: search compares the
    embeddings of a pretrained backbone, which a log-mel model does not have.
    """
    meta = read_meta(model_dir)
    try:
        cfg = Config.from_saved(meta["config"])
    except (CulturalMusicError, TypeError, ValueError) as err:
        raise ModelLoadError(f"{Path(model_dir) / 'model.json'}: 'config' is invalid ({err})") from err
    if cfg.features.kind in (LOGMEL, MUSICNN):
        raise ModelLoadError(f"{model_dir}: model {meta['model']['name']!r} works on {cfg.features.kind!r} spectrograms; "
                             "search needs an embedding model (train one with 'cultural-music train DATA --model musicnn')")
    summary = {"dir": str(Path(model_dir).resolve()), "name": meta["model"]["name"], "kind": cfg.features.kind,
               "backbone": cfg.features.backbone}
    return cfg, summary


def _describe(cfg_dict: dict[str, Any]) -> str:
    f, a = cfg_dict["features"], cfg_dict["audio"]
    return f"{f['kind']}/{f.get('backbone')}, {a['sample_rate']} Hz, {a['clip_seconds']:g} s clips, pad {a.get('pad')}"


def check_same_embedding(index_meta: dict[str, Any], cfg: Config, where: Path, what: str) -> None:
    """Raise :class:`ModelLoadError` unless ``cfg`` embeds recordings exactly as the index's
    stored config does (same feature-cache key: backbone, feature and audio settings)."""
    if index_meta["feature_key"] != cfg.feature_key():
        raise ModelLoadError(f"{where / INDEX_FILE}: index embeddings are {_describe(index_meta['config'])}, {what} is "
                             f"{_describe(cfg.to_dict())}; use a model with the index's backbone, or a new --out folder")


def list_audio(folder: str | Path) -> list[Recording]:
    """Every audio file under ``folder`` (any depth, hidden entries left out), sorted; ``rel_path``
    relative to ``folder``, ``path`` absolute."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise CulturalMusicError(f"{root}: not a folder of recordings")
    root = root.resolve()
    found = []
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                p = Path(base) / name
                rel = p.relative_to(root).as_posix()
                found.append(Recording(p, rel, rel.split("/")[0] if "/" in rel else "", rel))
    return sorted(found, key=lambda r: r.rel_path)


def _read_items(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{"path": r["path"], "start": float(r["start"]), "end": float(r["end"]), "sha": r["sha"]}
                for r in csv.DictReader(fh)]


def _write_items(path: Path, items: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_ITEM_FIELDS, lineterminator="\n")
    w.writeheader()
    for it in items:
        w.writerow({"path": it["path"], "start": f"{it['start']:.3f}", "end": f"{it['end']:.3f}", "sha": it["sha"]})
    atomic_write_text(path, buf.getvalue())


def load_index(directory: str | Path) -> SearchIndex:
    """Open an index folder written by :func:`embed_folder` (vectors memory-mapped; faiss read
    on the first query).  Raises :class:`ModelLoadError` naming the file on any inconsistency."""
    d = Path(directory)
    meta_path = d / INDEX_FILE
    if not meta_path.is_file():
        raise ModelLoadError(f"{meta_path}: missing; build an index with 'cultural-music embed FOLDER --model MODEL --out {d}'")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        cfg = Config.from_saved(meta["config"])
        gen_dir = d / meta["generation"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, CulturalMusicError) as err:
        raise ModelLoadError(f"{meta_path}: not a valid search index ({err}); rebuild it with 'cultural-music embed'") from err
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelLoadError(f"{meta_path}: written by a newer cultural-music; upgrade cultural-music")
    tables = {name: _load_table(gen_dir / name, info, meta_path) for name, info in meta["tables"].items()}
    return SearchIndex(d, meta, cfg, tables)


def _load_table(tdir: Path, info: dict[str, Any], meta_path: Path) -> Table:
    try:
        vectors = np.load(tdir / "vectors.npy", mmap_mode="r", allow_pickle=False)
        items = _read_items(tdir / "items.csv")
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"{tdir}: cannot read the index table ({err}); rebuild it with 'cultural-music embed'") from err
    if vectors.ndim != 2 or len(vectors) != len(items) or len(items) != info["rows"]:
        raise ModelLoadError(f"{tdir}: vectors {vectors.shape} / items {len(items)} / {meta_path.name} rows {info['rows']} "
                             "disagree; rebuild it with 'cultural-music embed'")
    if info.get("ann") is not None and not (tdir / "ann.faiss").is_file():
        raise ModelLoadError(f"{tdir / 'ann.faiss'}: missing; rebuild it with 'cultural-music embed'")
    return Table(tdir, vectors, items, info.get("ann"))


def _normalise(v: np.ndarray) -> np.ndarray:
    """Rows of ``v`` ``(n, dim)`` scaled to unit L2 norm (a zero row stays zero), float32."""
    v = np.asarray(v, np.float32)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)


def clip_embeddings(features: np.ndarray) -> np.ndarray:
    """Per-clip embeddings float32 ``(n_clips, rows)`` of features ``(n_clips, rows, patches)``:
    the mean over patches (not normalised)."""
    return np.asarray(features, np.float32).mean(axis=2)


def recording_embedding(features: np.ndarray) -> np.ndarray:
    """A recording's embedding float32 ``(rows,)``: the mean over all clips and patches of its
    features ``(n_clips, rows, patches)``, L2-normalised."""
    return _normalise(np.asarray(features, np.float32).mean(axis=(0, 2)))


def embed_folder(folder: str | Path, model_dir: str | Path, out: str | Path, *, windows: bool = False,
                 cache: FeatureCache, runner: Any = None, workers: int = 1, progress: bool = True) -> EmbedReport:
    """Embed every audio file under ``folder`` with ``model_dir``'s backbone into the index at
    ``out`` (created, or extended: files already there with the same content are kept, changed
    ones replaced, new ones added).  Extraction runs on ``runner`` (local processes or Ray);
    unreadable files are skipped and listed in the report, never the end of the run."""
    cfg, model = embedding_config(model_dir)
    out = Path(out)
    old = load_index(out) if (out / INDEX_FILE).is_file() else None
    if old is not None:
        check_same_embedding(old.meta, cfg, out, f"model {model_dir}")
        windows = windows or "windows" in old.tables
    recordings = list_audio(folder)
    result = extract_features(recordings, cfg, cache, augment_splits=(), runner=runner, workers=workers,
                              progress=progress, desc="embed")
    report = EmbedReport(out, skipped=list(result.skipped))
    new = {str(r.path): result.entries[r.rel_path] for r in recordings if r.rel_path in result.entries}
    known = {it["path"]: it["sha"] for it in old.tables["recordings"].items} if old is not None else {}
    fresh = {p: e for p, e in new.items() if known.get(p) != e.sha}
    report.replaced = sum(p in known for p in fresh)
    report.added = len(fresh) - report.replaced
    report.kept = len(known) - report.replaced
    _write_generation(out, old, cfg, model, fresh, windows, cache, report)
    return report


def _write_generation(out: Path, old: SearchIndex | None, cfg: Config, model: dict[str, Any], fresh: dict[str, Any],
                      windows: bool, cache: FeatureCache, report: EmbedReport) -> None:
    """Write generation ``g<n+1>`` (old rows of unchanged files + rows of ``fresh`` entries),
    then ``index.json`` pointing to it, then remove the old generation."""
    gen = f"g{int(old.meta['generation'][1:]) + 1 if old is not None else 1}"
    gen_dir = out / gen
    if gen_dir.exists():  # left by an interrupted run
        shutil.rmtree(gen_dir)
    tables: dict[str, Any] = {}
    for name in TABLES[: 2 if windows else 1]:
        kept = old.tables.get(name) if old is not None else None
        tables[name] = _write_table(gen_dir / name, name, kept, fresh, cache, cfg)
        report.rows[name] = tables[name]["rows"]
        report.ann[name] = tables[name]["ann"] is not None
    _write_meta(out, old, cfg, model, gen, tables)
    if old is not None and (out / old.meta["generation"]).is_dir():
        shutil.rmtree(out / old.meta["generation"], ignore_errors=True)


def _rows_of(entry: Any, name: str, cache: FeatureCache, clip_seconds: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Normalised rows ``(n, dim)`` and ``(start, end)`` seconds of one cached entry for table ``name``."""
    feats = cache.load(entry.clean_path)
    if feats is None:
        raise CulturalMusicError(f"{entry.clean_path}: cached features vanished during embed; rerun embed")
    if name == "recordings":
        return recording_embedding(feats)[None], [(0.0, entry.duration)]
    spans = [(i * clip_seconds, min((i + 1) * clip_seconds, entry.duration)) for i in range(len(feats))]
    return _normalise(clip_embeddings(feats)), spans


def _write_table(tdir: Path, name: str, kept: Table | None, fresh: dict[str, Any], cache: FeatureCache,
                 cfg: Config) -> dict[str, Any]:
    """Write one table's vectors (streamed into a float16 memmap), items and faiss index."""
    ensure_dir(tdir)
    keep = [i for i, it in enumerate(kept.items) if it["path"] not in fresh] if kept is not None else []
    n_new = sum(e.n_clips if name == "windows" else 1 for e in fresh.values())
    dim = cfg.features.n_rows
    vecs = np.lib.format.open_memmap(tdir / "vectors.npy", mode="w+", dtype=np.float16, shape=(len(keep) + n_new, dim))
    items = [kept.items[i] for i in keep] if kept is not None else []
    for lo in range(0, len(keep), ann.CHUNK_ROWS):
        part = keep[lo:lo + ann.CHUNK_ROWS]
        vecs[lo:lo + len(part)] = kept.vectors[part]
    row = len(keep)
    for path, entry in fresh.items():
        rows, spans = _rows_of(entry, name, cache, cfg.audio.clip_seconds)
        vecs[row:row + len(rows)] = rows
        row += len(rows)
        items += [{"path": path, "start": s, "end": e, "sha": entry.sha} for s, e in spans]
    vecs.flush()
    _write_items(tdir / "items.csv", items)
    params = None
    if len(items) > ann.EXACT_MAX_ROWS and ann.have_faiss():
        params = ann.ann_params(len(items), dim)
        ann.save_ann(ann.build_ann(vecs, params), tdir / "ann.faiss")
    del vecs
    return {"rows": len(items), "ann": params}


def _write_meta(out: Path, old: SearchIndex | None, cfg: Config, model: dict[str, Any], gen: str,
                tables: dict[str, Any]) -> None:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    uses_ann = any(t["ann"] is not None for t in tables.values())
    meta = {
        "format_version": FORMAT_VERSION, "package_version": __version__,
        "created": old.meta["created"] if old is not None else now, "updated": now,
        "model": model, "backbone": cfg.features.backbone, "feature_kind": cfg.features.kind,
        "config": {"audio": cfg.to_dict()["audio"], "features": cfg.to_dict()["features"]},
        "feature_key": cfg.feature_key(), "dim": cfg.features.n_rows, "metric": "cosine", "vectors_dtype": "float16",
        "embedding": "mean of the backbone's patch embeddings over all clips (windows: over one clip), L2-normalised",
        "generation": gen, "tables": tables,
        "counts": {name: t["rows"] for name, t in tables.items()},
        "library": {"name": "faiss", "version": ann.faiss_version()} if uses_ann else {"name": "numpy", "version": np.__version__},
        "exact_max_rows": ann.EXACT_MAX_ROWS,
    }
    atomic_write_json(out / INDEX_FILE, meta)
