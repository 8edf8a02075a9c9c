"""Any training-set size trains (issue 14 s4.2): no batch of one clip reaches batch norm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cultural_music.config import TrainConfig
from cultural_music.training.clip_dataset import ClipDataset, ClipItem
from cultural_music.errors import CulturalMusicError
from cultural_music.models import build_model, default_config
from cultural_music.training.loop import train_model


def _dataset(root: Path, n: int, rows: int, cols: int, name: str) -> ClipDataset:
    rng = np.random.default_rng(n)
    feats = rng.random((n, rows, cols), dtype=np.float32)
    labels = np.arange(n) % 2
    feats[labels == 1] += 0.5
    path = root / f"{name}.npy"
    np.save(path, feats)
    return ClipDataset([ClipItem(path, i, int(labels[i]), f"{name}/{i}.wav") for i in range(n)])


@pytest.mark.parametrize("model,rows,cols,n_train,batch", [
    ("musicnn", 1506, 2, 66, 65),  # the default model: full-batch L-BFGS over 65 + 1 clips
    ("musicnn", 1506, 2, 5, 2),
    ("musicnn", 1506, 2, 5, 1),  # --batch-size 1: every chunk one clip
    ("res-cnn", 16, 16, 5, 4),
    ("seed-cnn", 16, 16, 5, 4),
])
def test_a_last_batch_of_one_clip_trains(tmp_path: Path, model: str, rows: int, cols: int, n_train: int, batch: int) -> None:
    train_ds = _dataset(tmp_path, n_train, rows, cols, "train")
    val_ds = _dataset(tmp_path, 4, rows, cols, "val")
    recipe = default_config(model).train
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": 2, "batch_size": batch, "class_weighting": "none"})
    net = build_model(model, n_classes=2, n_mels=rows)
    result = train_model(net, train_ds, val_ds, cfg, log=lambda s: None)
    assert len(result.history) >= 1 and np.isfinite(result.history[0]["train_loss"])


def test_one_training_clip_is_a_clear_error_for_batch_norm_models(tmp_path: Path) -> None:
    cfg = TrainConfig(model="res-cnn", epochs=1, batch_size=4)
    net = build_model("res-cnn", n_classes=2, n_mels=16)
    with pytest.raises(CulturalMusicError, match="at least 2 training clips"):
        train_model(net, _dataset(tmp_path, 1, 16, 16, "t"), _dataset(tmp_path, 2, 16, 16, "v"), cfg, log=lambda s: None)
