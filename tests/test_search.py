"""Search by example (docs/search.md): embed a folder, find a file's nearest recordings, grow the
index, refuse another backbone, and exact vs faiss search agreeing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cultural_music.errors import ModelLoadError
from cultural_music.search import ann
from cultural_music.search.index import embed_folder, load_index, recording_embedding
from cultural_music.search.query import similar

from conftest import tone, write

SR = 16000
PITCHES = {"low": 220.0, "mid": 880.0, "high": 3000.0}


def _embedding_model(out: Path, backbone: str = "MSD_musicnn") -> Path:
    """An (untrained) musicnn head saved as a model folder: embedding uses only its config."""
    from cultural_music.models import build_model, default_config
    from cultural_music.training.artifact import save_artifact

    cfg = default_config("musicnn").replace(audio={"clip_seconds": 1.0}, features={"backbone": backbone})
    model = build_model("musicnn", n_classes=2, n_rows=cfg.features.n_rows)
    return save_artifact(out, model, classes=["a", "b"], config=cfg, model_name="musicnn")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("search")
    g = np.random.default_rng(0)
    for name, f in PITCHES.items():
        for i in range(3):
            write(root / "data" / name / f"{name}_{i}.wav", tone(f * g.uniform(0.99, 1.01), 2.0, SR, rng=g), SR)
    (root / "data" / "low" / "broken.wav").write_bytes(b"RIFF not really audio")
    from cultural_music.features.cache import FeatureCache

    model = _embedding_model(root / "model")
    cache = FeatureCache(root / "cache")
    rep = embed_folder(root / "data", model, root / "index", windows=True, cache=cache, progress=False)
    return root, model, cache, rep


def test_query_finds_itself_then_same_pitch(built) -> None:
    root, _, _, rep = built
    assert (rep.added, rep.kept, rep.rows) == (9, 0, {"recordings": 9, "windows": 18})
    assert [Path(s.path).name for s in rep.skipped] == ["broken.wav"]
    q = root / "data" / "mid" / "mid_1.wav"
    hits = similar(root / "index", q, k=4)
    assert hits[0].path == str(q.resolve()) and hits[0].distance < 1e-3
    assert {Path(h.path).parent.name for h in hits[:3]} == {"mid"}
    assert hits[3].distance > hits[2].distance and Path(hits[3].path).parent.name != "mid"
    wins = similar(root / "index", q, k=2, windows=True)
    assert all(w.path == str(q.resolve()) for w in wins) and {(w.start, w.end) for w in wins} == {(0.0, 1.0), (1.0, 2.0)}


def test_reload_round_trip_and_index_json(built) -> None:
    root, _, cache, _ = built
    idx = load_index(root / "index")
    meta = json.loads((root / "index" / "index.json").read_text())
    assert meta["backbone"] == "MSD_musicnn" and meta["dim"] == 1506 and meta["metric"] == "cosine"
    assert meta["counts"] == {"recordings": 9, "windows": 18} and meta["library"]["name"] == "numpy"
    table = idx.tables["recordings"]
    assert table.vectors.dtype == np.float16 and table.vectors.shape == (9, 1506)
    from cultural_music.features.cache import FeatureCache  # noqa: F401  (cache entries are the source)

    feats = [np.load(p) for p in sorted((root / "cache").rglob("*.npy"))]
    want = {tuple(np.round(recording_embedding(f), 2)) for f in feats}
    got = {tuple(np.round(v.astype(np.float32), 2)) for v in table.vectors}
    assert len(want & got) >= 8  # float16 rounding may move a value across a 0.01 boundary
    assert np.allclose(np.linalg.norm(table.vectors.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_rerun_adds_only_new_files(built, tmp_path: Path) -> None:
    root, model, cache, _ = built
    out = tmp_path / "index"
    shutil.copytree(root / "index", out)
    write(root / "data" / "high" / "high_new.wav", tone(3010.0, 2.0, SR, rng=np.random.default_rng(5)), SR)
    try:
        rep = embed_folder(root / "data", model, out, cache=cache, progress=False)
    finally:
        (root / "data" / "high" / "high_new.wav").unlink()
    assert (rep.added, rep.replaced, rep.kept, rep.rows["recordings"]) == (1, 0, 9, 10)
    assert rep.rows["windows"] == 20  # an index with windows keeps them
    meta = json.loads((out / "index.json").read_text())
    assert meta["generation"] == "g2" and not (out / "g1").exists()
    assert Path(similar(out, root / "data" / "high" / "high_0.wav", k=1)[0].path).parent.name == "high"


@pytest.mark.slow  # ~15 s: a second model folder and a tiny seed-cnn
def test_other_backbone_and_logmel_model_refused(built, tmp_path: Path) -> None:
    root, _, cache, _ = built
    other = _embedding_model(tmp_path / "mtt", backbone="MTT_musicnn")
    with pytest.raises(ModelLoadError, match="MSD_musicnn.*MTT_musicnn"):
        embed_folder(root / "data", other, root / "index", cache=cache, progress=False)
    with pytest.raises(ModelLoadError, match="index embeddings"):
        similar(root / "index", root / "data" / "low" / "low_0.wav", model_dir=other)
    from tiny_model import SOUNDS, train_tiny_model

    logmel = train_tiny_model(tmp_path / "seed", SOUNDS, per_class=2, steps=1)
    with pytest.raises(ModelLoadError, match="needs an embedding model"):
        embed_folder(root / "data", logmel, tmp_path / "x", cache=cache, progress=False)


def test_cli_embed_and_similar(built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cultural_music.cli import main

    root, model, _, _ = built
    args = ["embed", str(root / "data" / "low"), "--model", str(model), "--out", str(tmp_path / "i"),
            "--cache-dir", str(root / "cache"), "--workers", "1", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 added" in out and "broken.wav" in out
    assert main(["similar", str(tmp_path / "i"), str(root / "data" / "low" / "low_2.wav"), "--k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["path"].endswith("low_2.wav") and rows[0]["distance"] < 1e-3


def test_exact_search_matches_brute_force() -> None:
    g = np.random.default_rng(1)
    v = g.standard_normal((5000, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = v[17] + 0.1 * g.standard_normal(32).astype(np.float32)
    q /= np.linalg.norm(q)
    rows, dist = ann.exact_search(v, q, 5)
    want = np.argsort(-(v @ q))[:5]
    assert rows.tolist() == want.tolist() and np.allclose(dist, 1 - (v @ q)[want], atol=1e-6)


def test_faiss_ann_agrees_with_exact() -> None:
    pytest.importorskip("faiss", reason="faiss-cpu not installed (pip install 'cultural-music[search]')")
    g = np.random.default_rng(2)
    centres = g.standard_normal((40, 64))
    v = (centres[g.integers(0, 40, 4000)] + 0.3 * g.standard_normal((4000, 64))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    vecs = v.astype(np.float16)
    params = ann.ann_params(len(vecs), 64)
    index = ann.build_ann(vecs, params)
    hits = []
    for i in range(20):
        q = v[i * 7] + 0.2 * g.standard_normal(64).astype(np.float32)
        q /= np.linalg.norm(q)
        exact_rows, exact_d = ann.exact_search(vecs, q, 10)
        rows, d = ann.rerank(vecs, ann.ann_candidates(index, q, params["rerank"]), q, 10)
        hits.append(len(set(rows.tolist()) & set(exact_rows.tolist())) / 10)
        assert np.allclose(np.sort(d)[:1], exact_d[:1], atol=1e-3) or rows[0] != exact_rows[0]
    assert np.mean(hits) >= 0.9


def test_large_index_goes_through_faiss(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above EXACT_MAX_ROWS ``embed`` writes ann.faiss and ``similar`` finds the same nearest rows."""
    pytest.importorskip("faiss", reason="faiss-cpu not installed (pip install 'cultural-music[search]')")
    root, model, cache, _ = built
    monkeypatch.setattr(ann, "EXACT_MAX_ROWS", 4)
    monkeypatch.setattr(ann, "ann_params", lambda n, dim: {"pca": 8, "nlist": 1, "nprobe": 1, "rerank": 200})
    rep = embed_folder(root / "data", model, tmp_path / "big", cache=cache, progress=False)
    assert rep.ann == {"recordings": True}
    meta = json.loads((tmp_path / "big" / "index.json").read_text())
    assert meta["library"]["name"] == "faiss" and (tmp_path / "big" / meta["generation"] / "recordings" / "ann.faiss").is_file()
    q = root / "data" / "low" / "low_1.wav"
    got = similar(tmp_path / "big", q, k=3)
    want = similar(root / "index", q, k=3)
    assert [m.path for m in got] == [m.path for m in want]
    assert np.allclose([m.distance for m in got], [m.distance for m in want], atol=1e-4)
