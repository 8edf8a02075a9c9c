"""Extraction: cache hits and misses, the file index, invalidation, parallel == serial, backends."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cultural_music.features import cache as cache_mod
from cultural_music.features import jobs as jobs_mod
from cultural_music.features.cache import FeatureCache
from cultural_music.cli import main
from cultural_music.config import Config
from cultural_music.data.dataset import Recording, scan_folder
from cultural_music.features.extract import extract_features
from cultural_music.features.jobs import LocalRunner, chunk_size

from conftest import make_tone_dataset, tone, write

TINY = Config().replace(
    audio={"sample_rate": 8000, "clip_seconds": 1.0},
    features={"n_fft": 256, "hop_length": 64, "n_mels": 32},
    augment={"n_variants": 2},
    train={"seed": 0},
)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index files written a moment ago (normally a file must be 2 s old)."""
    monkeypatch.setattr(cache_mod, "RACY_SECONDS", 0.0)


def _recs(root: Path, split: str = "train") -> list[Recording]:
    return [Recording(r.path, r.rel_path, r.label, r.group, split) for r in scan_folder(root).recordings]


def _run(recs: list[Recording], cache: FeatureCache, cfg: Config = TINY, **kw):  # noqa: ANN202
    kw.setdefault("augment_splits", ())
    return extract_features(recs, cfg, cache, workers=1, progress=False, **kw)


def test_miss_then_hit_without_hashing(tmp_path: Path, settled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    recs = _recs(make_tone_dataset(tmp_path / "d", per_class=2, seconds=2.5))
    cache = FeatureCache(tmp_path / "c")
    first = _run(recs, cache)
    assert (first.n_decoded, first.n_indexed, len(first.entries)) == (6, 0, 6)
    assert all(e.n_clips == 3 for e in first.entries.values())  # 2.5 s: 2 clips + a kept 0.5 s piece
    assert list(first.entries) == [r.rel_path for r in recs]

    def no_hash(path: object) -> str:
        raise AssertionError("an indexed file was hashed again")

    monkeypatch.setattr(jobs_mod, "file_sha256", no_hash)
    second = _run(recs, cache)
    assert (second.n_decoded, second.n_indexed) == (0, 6)
    assert second.entries == first.entries


def test_without_index_content_hash_still_hits(tmp_path: Path) -> None:
    recs = _recs(make_tone_dataset(tmp_path / "d", per_class=1))
    cache = FeatureCache(tmp_path / "c")
    _run(recs, cache)
    again = _run(recs, cache, use_index=False)
    assert (again.n_decoded, again.n_indexed, len(again.entries)) == (0, 0, 3)


def test_fresh_files_are_not_indexed(tmp_path: Path) -> None:
    recs = _recs(make_tone_dataset(tmp_path / "d", per_class=1))
    cache = FeatureCache(tmp_path / "c")
    _run(recs, cache)
    assert len(cache_mod.FileIndex.load(cache.index_path)) == 0  # written < 2 s ago: an edit might keep the mtime
    assert _run(recs, cache).n_indexed == 0


def test_changed_settings_recompute(tmp_path: Path, settled: None) -> None:
    recs = _recs(make_tone_dataset(tmp_path / "d", per_class=1))
    cache = FeatureCache(tmp_path / "c")
    base = _run(recs, cache)
    more_mels = _run(recs, cache, TINY.replace(features={"n_mels": 16}))
    longer = _run(recs, cache, TINY.replace(audio={"clip_seconds": 0.5}))
    assert more_mels.n_decoded == 3 and longer.n_decoded == 3
    shapes = {np.load(e.clean_path).shape for r in (base, more_mels, longer) for e in r.entries.values()}
    assert shapes == {(1, 32, 126), (1, 16, 126), (2, 32, 63)}
    assert len(cache.info()["feature_keys"]) == 3
    assert _run(recs, cache, TINY.replace(train={"epochs": 3})).n_decoded == 0  # training settings: same features


def test_edited_renamed_and_corrupt_files(tmp_path: Path, settled: None) -> None:
    data = make_tone_dataset(tmp_path / "d", per_class=2)
    cache = FeatureCache(tmp_path / "c")
    first = _run(_recs(data), cache)
    edited = data / "low" / "low_0.wav"
    stat = edited.stat()
    write(edited, tone(500, 1.0, 8000))  # same size, new content, mtime set back
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.rename(data / "mid" / "mid_0.wav", data / "mid" / "renamed.wav")
    corrupt = first.entries["high/high_0.wav"].clean_path
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    again = _run(_recs(data), cache)
    assert again.n_decoded == 2  # the edited file and the corrupt entry; the renamed file hits by content
    assert again.n_indexed == 3
    assert again.entries["low/low_0.wav"].sha != first.entries["low/low_0.wav"].sha
    assert again.entries["mid/renamed.wav"].sha == first.entries["mid/mid_0.wav"].sha
    assert np.load(corrupt).shape == (1, 32, 126)


def test_augmented_variants_cached_and_seeded(tmp_path: Path, settled: None) -> None:
    recs = _recs(make_tone_dataset(tmp_path / "d", per_class=1, seconds=2.0))
    cache = FeatureCache(tmp_path / "c")
    first = _run(recs, cache, augment_splits=("train",))
    e = first.entries[recs[0].rel_path]
    aug = np.load(e.aug_path)
    assert e.n_variants == 2 and aug.shape == (2, 2, 32, 126)
    assert not np.array_equal(aug[0], aug[1])
    again = _run(recs, cache, augment_splits=("train",))
    assert again.n_decoded == 0 and again.n_indexed == 3 and again.entries == first.entries
    other_seed = _run(recs, cache, TINY.replace(train={"seed": 1}), augment_splits=("train",))
    assert other_seed.n_decoded == 3  # clean features hit, augmented variants recomputed
    assert not np.array_equal(np.load(other_seed.entries[recs[0].rel_path].aug_path), aug)


def test_bad_file_skipped_with_reason(tmp_path: Path, settled: None) -> None:
    data = make_tone_dataset(tmp_path / "d", per_class=1)
    (data / "low" / "broken.wav").write_bytes(b"not audio" * 20)
    res = _run(_recs(data), FeatureCache(tmp_path / "c"))
    assert len(res.entries) == 3
    assert [(Path(s.path).name, "not a readable audio file" in s.reason) for s in res.skipped] == [("broken.wav", True)]
    assert len(cache_mod.FileIndex.load(tmp_path / "c" / cache_mod.INDEX_NAME)) == 3


def test_parallel_equals_serial(tmp_path: Path) -> None:
    recs = _recs(make_tone_dataset(tmp_path / "d", per_class=2, seconds=1.5))
    serial = _run(recs, FeatureCache(tmp_path / "s"), augment_splits=("train",))
    parallel = extract_features(recs, TINY, FeatureCache(tmp_path / "p"), augment_splits=("train",), workers=2, progress=False)
    assert parallel.n_decoded == serial.n_decoded == 6
    for rel, e in serial.entries.items():
        p = parallel.entries[rel]
        assert (p.sha, p.n_clips, p.n_variants) == (e.sha, e.n_clips, e.n_variants)
        np.testing.assert_array_equal(np.load(p.clean_path), np.load(e.clean_path))
        np.testing.assert_array_equal(np.load(p.aug_path), np.load(e.aug_path))


def test_chunk_size() -> None:
    assert chunk_size(40, 2) == 2
    assert chunk_size(3000, 2) == 16
    assert chunk_size(5, 8) == 1


def test_runner_seam(tmp_path: Path, settled: None) -> None:
    """extract_features hands the files it could not find in the index to the runner it is given."""
    recs = _recs(make_tone_dataset(tmp_path / "d", per_class=1))
    seen: list[str] = []

    class RecordingRunner(LocalRunner):
        def run_jobs(self, jobs, cfg, cache_root):  # noqa: ANN001, ANN202
            seen.extend(j.rel_path for j in jobs)
            return super().run_jobs(jobs, cfg, cache_root)

    cache = FeatureCache(tmp_path / "c")
    res = _run(recs, cache, runner=RecordingRunner(1))
    assert sorted(seen) == sorted(r.rel_path for r in recs) and res.n_decoded == 3
    seen.clear()
    again = _run(recs, cache, runner=RecordingRunner(1))  # all indexed: the runner gets nothing to do
    assert seen == [] and again.n_indexed == 3 and list(again.entries) == list(res.entries)


def test_local_runner_workers() -> None:
    assert LocalRunner(3).workers == 3 and LocalRunner(0).workers == 1
    assert LocalRunner().workers == jobs_mod.default_workers()


def test_features_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_tone_dataset(tmp_path / "d", per_class=1)
    (data / "mid" / "empty.wav").write_bytes(b"")
    args = ["features", str(data), "--cache-dir", str(tmp_path / "c"), "--duration", "1", "--sample-rate", "8000",
            "--n-mels", "32", "--workers", "1", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 file(s) with features: 3 decoded, 0 from the cache" in out
    assert "skipped 1 file(s)" in out and "empty.wav: empty file (0 bytes)" in out
    assert main(args) == 0
    assert "0 decoded, 3 from the cache" in capsys.readouterr().out
    assert FeatureCache(tmp_path / "c").info()["entries"] == 3
