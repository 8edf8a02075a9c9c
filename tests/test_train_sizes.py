"""Any training-set size trains (issue 14 s4.2): no batch of one clip reaches batch norm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import random_clip_dataset
from cultural_music.config import TrainConfig
from cultural_music.errors import CulturalMusicError
from cultural_music.models import build_model, default_config
from cultural_music.training.loop import train_model




@pytest.mark.parametrize("model,rows,cols,n_train,batch", [
    ("musicnn", 1506, 2, 66, 65),  # the default model: full-batch L-BFGS over 65 + 1 clips
    ("musicnn", 1506, 2, 5, 2),
    ("musicnn", 1506, 2, 5, 1),  # --batch-size 1: every chunk one clip
    ("res-cnn", 16, 16, 5, 4),
    ("seed-cnn", 16, 16, 5, 4),
])
def test_a_last_batch_of_one_clip_trains(tmp_path: Path, model: str, rows: int, cols: int, n_train: int, batch: int) -> None:
    train_ds = random_clip_dataset(tmp_path, n_train, "train", rows=rows, cols=cols)
    val_ds = random_clip_dataset(tmp_path, 4, "val", rows=rows, cols=cols)
    recipe = default_config(model).train
    cfg = TrainConfig(**{**recipe.__dict__, "epochs": 2, "batch_size": batch, "class_weighting": "none"})
    net = build_model(model, n_classes=2, n_mels=rows)
    result = train_model(net, train_ds, val_ds, cfg, log=lambda s: None)
    assert len(result.history) >= 1 and np.isfinite(result.history[0]["train_loss"])


def test_one_training_clip_is_a_clear_error_for_batch_norm_models(tmp_path: Path) -> None:
    cfg = TrainConfig(model="res-cnn", epochs=1, batch_size=4)
    net = build_model("res-cnn", n_classes=2, n_mels=16)
    with pytest.raises(CulturalMusicError, match="at least 2 training clips"):
        train_model(net, random_clip_dataset(tmp_path, 1, "t", rows=16, cols=16), random_clip_dataset(tmp_path, 2, "v", rows=16, cols=16), cfg, log=lambda s: None)
