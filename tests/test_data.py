"""The lazy dataset reads exactly what an eager, all-in-RAM one would hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cultural_music.augment.spec_mask import SpecMask
from cultural_music.features.cache import FeatureCache
from cultural_music.config import Config
from cultural_music.training.clip_dataset import ClipDataset, build_items
from cultural_music.data.dataset import Recording, scan_folder
from cultural_music.errors import CulturalMusicError
from cultural_music.features.extract import ExtractResult, extract_features

from conftest import make_tone_dataset

TINY = Config().replace(
    audio={"sample_rate": 8000, "clip_seconds": 1.0},
    features={"n_fft": 256, "hop_length": 64, "n_mels": 32},
    augment={"n_variants": 2, "spec_mask_p": 1.0},
    train={"seed": 3},
)
CLASSES = ["high", "low", "mid"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Recording], ExtractResult]:
    root = tmp_path_factory.mktemp("data")
    scan = scan_folder(make_tone_dataset(root / "d", per_class=2, seconds=2.6))
    recs = [Recording(r.path, r.rel_path, r.label, r.group, "val" if r.rel_path.endswith("_1.wav") else "train")
            for r in scan.recordings]
    return recs, extract_features(recs, TINY, FeatureCache(root / "c"), workers=1, progress=False)


def test_build_items_lists_every_clip_of_the_split(extracted: tuple[list[Recording], ExtractResult]) -> None:
    recs, ex = extracted
    items = build_items(recs, ex, CLASSES, "train")
    assert len(items) == 3 * 3  # 3 files, 2.6 s -> 3 clips each
    assert [(it.rel_path, it.clip) for it in items[:3]] == [("high/high_0.wav", 0), ("high/high_0.wav", 1), ("high/high_0.wav", 2)]
    assert [it.label for it in items[::3]] == [0, 1, 2]
    assert all(it.n_variants == 2 and it.aug_path is not None for it in items)
    val = build_items(recs, ex, CLASSES, "val")
    assert len(val) == 9 and all(it.aug_path is None and it.n_variants == 0 for it in val)


def test_lazy_items_equal_eager_items(extracted: tuple[list[Recording], ExtractResult]) -> None:
    recs, ex = extracted
    items = build_items(recs, ex, CLASSES, "train")
    eager = {p: np.load(p) for it in items for p in (it.clean_path, it.aug_path)}  # everything in RAM
    plain = ClipDataset(items)
    for i, it in enumerate(items):
        x, label = plain[i]
        assert x.shape == (1, 32, 126) and x.dtype == torch.float32 and label == it.label
        np.testing.assert_array_equal(x[0].numpy(), eager[it.clean_path][it.clip])

    train = ClipDataset(items, train=True, seed=3, augment=TINY.augment)
    mask = SpecMask.from_config(TINY.augment)
    variants_seen = set()
    for epoch in (1, 2):
        train.set_epoch(epoch)
        for i, it in enumerate(items):
            rng = np.random.default_rng([3, epoch, i])
            v = int(rng.integers(0, it.n_variants + 1))
            variants_seen.add(v)
            want = eager[it.clean_path][it.clip] if v == 0 else eager[it.aug_path][v - 1, it.clip]
            np.testing.assert_array_equal(train[i][0][0].numpy(), mask(want.copy(), rng))
    assert variants_seen == {0, 1, 2}


def test_batches_through_a_dataloader(extracted: tuple[list[Recording], ExtractResult]) -> None:
    recs, ex = extracted
    ds = ClipDataset(build_items(recs, ex, CLASSES, "val"))
    batches = list(DataLoader(ds, batch_size=4))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 1, 32, 126), (4, 1, 32, 126), (1, 1, 32, 126)]
    assert torch.cat([y for _, y in batches]).tolist() == ds.labels.tolist()


def test_truncated_or_missing_cache_file_fails_clearly(extracted: tuple[list[Recording], ExtractResult], tmp_path: Path) -> None:
    recs, ex = extracted
    items = build_items(recs, ex, CLASSES, "val")[:3]
    copy = tmp_path / "x.npy"
    copy.write_bytes(items[0].clean_path.read_bytes())
    moved = [type(it)(copy, it.clip, it.label, it.rel_path) for it in items]
    ds = ClipDataset(moved)
    ds.features(0)
    copy.write_bytes(copy.read_bytes()[:-100])
    with pytest.raises(CulturalMusicError, match="x.npy: cached features are truncated"):
        ds.features(2)
    copy.unlink()
    with pytest.raises(CulturalMusicError, match="x.npy: cannot read cached features"):
        ds.features(0)
