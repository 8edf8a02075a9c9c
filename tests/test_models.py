from __future__ import annotations

import pytest
import torch

from cultural_music.errors import ParameterError
from cultural_music.models import available_models, build_model


def test_seed_cnn_registered_and_output_shape() -> None:
    assert "seed-cnn" in available_models()
    torch.manual_seed(0)
    m = build_model("seed-cnn", n_classes=5, n_mels=128).eval()
    for frames in (44, 1292):
        out = m(torch.rand(2, 1, 128, frames))
        assert out.shape == (2, 5)
    tiny = build_model("seed-cnn", n_classes=3, n_mels=16).eval()
    assert tiny(torch.rand(1, 1, 16, 3)).shape == (1, 3)


def test_seed_cnn_has_reference_layers() -> None:
    m = build_model("seed-cnn", n_classes=2, n_mels=64)
    kinds = {type(x).__name__ for x in m.modules()}
    assert {"Conv2d", "MaxPool2d", "LeakyReLU", "Dropout", "Linear"} <= kinds


def test_unknown_model() -> None:
    with pytest.raises(ParameterError, match="'model' parameter"):
        build_model("nope", n_classes=2, n_mels=8)
