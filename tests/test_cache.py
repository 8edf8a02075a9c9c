"""Feature cache: entries, file index, info/clear and the ``cache`` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cultural_music.features.cache import INDEX_NAME, FeatureCache, FileIndex, FileSignature
from cultural_music.cli import main

SHA = "ab" + "0" * 62
KEY = "0123456789abcdef"


def test_store_load_round_trip_and_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    cache = FeatureCache(tmp_path)
    x = rng.random((3, 8, 5), dtype=np.float32)
    path = cache.path(KEY, SHA)
    assert path == tmp_path / KEY / "ab" / f"{SHA}.npy"
    assert cache.path(KEY, SHA, "fedcba9876543210") == tmp_path / KEY / "aug-fedcba9876543210" / "ab" / f"{SHA}.npy"
    assert cache.load(path) is None
    cache.store(path, x.astype(np.float64))  # stored as float32 whatever comes in
    y = cache.load(path, expect_mels=8)
    assert isinstance(y, np.memmap) and y.dtype == np.float32
    np.testing.assert_array_equal(y, x)
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp file left


def test_unreadable_or_wrong_shape_entry_is_a_miss_and_removed(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    path = cache.path(KEY, SHA)
    cache.store(path, np.ones((2, 8, 5), np.float32))
    assert cache.load(path, expect_mels=16) is None and not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x93NUMPY garbage")
    assert cache.load(path) is None and not path.exists()


def test_shape_reads_the_header_and_catches_truncation(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    path = cache.path(KEY, SHA)
    assert cache.shape(path) is None
    cache.store(path, np.ones((2, 3, 8, 5), np.float32))
    assert cache.shape(path, expect_mels=8) == (2, 3, 8, 5)
    path.write_bytes(path.read_bytes()[:-4])  # header intact, last value missing
    assert cache.shape(path) is None and not path.exists()
    cache.store(path, np.ones((2, 8, 5), np.float64).astype(np.float32))
    assert cache.shape(path, expect_mels=9) is None and not path.exists()
    np.save(path, np.ones((2, 8, 5)))  # float64: not ours
    assert cache.shape(path) is None and not path.exists()


def _sig(**kw: int) -> FileSignature:
    base = {"size": 10, "mtime_ns": 1, "ctime_ns": 2, "inode": 3} | kw
    return FileSignature(**base)


def test_file_index_hit_only_with_same_signature(tmp_path: Path) -> None:
    index = FileIndex.load(tmp_path / INDEX_NAME)
    index.put("/data/a.wav", _sig(), SHA, 1.5)
    assert index.get("/data/a.wav", _sig()) == (SHA, 1.5)
    for changed in ({"size": 11}, {"mtime_ns": 5}, {"ctime_ns": 5}, {"inode": 4}):
        assert index.get("/data/a.wav", _sig(**changed)) is None, changed
    assert index.get("/data/b.wav", _sig()) is None
    index.save()
    assert FileIndex.load(tmp_path / INDEX_NAME).get("/data/a.wav", _sig()) == (SHA, 1.5)


def test_file_index_save_merges_prunes_and_survives_corruption(tmp_path: Path) -> None:
    path = tmp_path / INDEX_NAME
    a, b, gone = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "gone.wav"
    for p in (a, b, gone):
        p.write_bytes(b"x")
    first, second = FileIndex.load(path), FileIndex.load(path)
    first.put(a, _sig(), SHA, 1.0)
    first.put(gone, _sig(), SHA, 1.0)
    first.save()
    gone.unlink()
    second.put(b, _sig(), SHA, 2.0)
    second.save()  # written after `first`: keeps its live entry, drops the deleted file's
    assert sorted(FileIndex.load(path).files) == [str(a), str(b)]
    path.write_text("{not json")
    assert len(FileIndex.load(path)) == 0
    path.write_text(json.dumps({"version": 999, "files": {"/a": []}}))
    assert len(FileIndex.load(path)) == 0


def test_recently_changed_file_is_not_settled(tmp_path: Path) -> None:
    p = tmp_path / "a.wav"
    p.write_bytes(b"x" * 10)
    sig = FileSignature.of(p)
    assert sig.size == 10
    changed = max(sig.mtime_ns, sig.ctime_ns)
    assert not sig.settled(now_ns=changed + 1_000_000_000)
    assert sig.settled(now_ns=changed + 3_000_000_000)


def _fill(cache: FeatureCache) -> None:
    cache.store(cache.path(KEY, SHA), np.ones((1, 4, 4), np.float32))
    cache.store(cache.path(KEY, SHA, "fedcba9876543210"), np.ones((2, 1, 4, 4), np.float32))
    cache.store(cache.path("fedcba9876543210", SHA), np.ones((1, 4, 4), np.float32))
    index = FileIndex.load(cache.index_path)
    index.put("/a", _sig(), SHA, 1.0)
    index.save()


def test_info_and_clear_touch_only_cache_files(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    _fill(cache)
    (cache.root / "notes.txt").write_text("mine")
    info = cache.info()
    assert info["entries"] == 3 and info["indexed_files"] == 1
    assert info["feature_keys"][KEY]["entries"] == 2
    assert info["bytes"] == sum(p.stat().st_size for p in cache.root.rglob("*.npy"))
    assert cache.clear() == 3
    assert sorted(p.name for p in cache.root.iterdir()) == ["notes.txt"]
    (cache.root / "notes.txt").unlink()
    _fill(cache)
    cache.clear()
    assert not cache.root.exists()  # emptied: the folder goes too
    assert FeatureCache(tmp_path / "never").clear() == 0


def test_cache_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = FeatureCache(tmp_path / "c")
    _fill(cache)
    assert main(["cache", "info", "--cache-dir", str(cache.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 3
    assert main(["cache", "info", "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert "entries: 3" in out and f"settings {KEY}: 2 entries" in out
    assert main(["cache", "clear", "--cache-dir", str(cache.root), "--yes"]) == 0
    assert "removed 3 cached feature file(s)" in capsys.readouterr().out
    assert not cache.root.exists()


def test_cache_clear_asks_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FeatureCache(tmp_path / "c")
    _fill(cache)
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # no answer: the default is "no"
    assert main(["cache", "clear", "--cache-dir", str(cache.root)]) == 130
    assert cache.info()["entries"] == 3
