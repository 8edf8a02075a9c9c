"""ONNX export of embedding models is the whole network (backbone + head): equal to PyTorch on
real clips, and an ONNX prediction never imports torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cultural_music.models import default_config
from cultural_music.inference.export import export_onnx
from cultural_music.inference.classifier import Classifier
from cultural_music.inference.onnx_backend import OnnxClassifier

from conftest import SHARED, make_tone_dataset
from test_onnx import assert_onnx_predicts_without_torch

ESC10 = SHARED / "esc10"
needs_esc10 = pytest.mark.skipif(not ESC10.is_dir(), reason="shared esc10 data not found")


@pytest.fixture(scope="module", params=[1.0, 5.0], ids=["1s-one-padded-patch", "5s-two-patches"])
def musicnn_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model kind (frozen musicnn + head), trained on tones, exported to ONNX."""
    from cultural_music.training.pipeline import run_training

    seconds = request.param
    root = tmp_path_factory.mktemp("whole")
    data = make_tone_dataset(root / "data", per_class=4, seconds=seconds, sr=16000)
    cfg = default_config("musicnn").replace(audio={"clip_seconds": seconds}, train={"seed": 0})
    run_training(data, root / "model", cfg, cache_dir=root / "cache", workers=1, progress=False, log=lambda s: None)
    res = export_onnx(root / "model")
    assert res["max_abs_diff"] <= 1e-4
    return root / "model"


def _real_clips() -> list[Path]:
    return [sorted((ESC10 / c).glob("*"))[0] for c in ("dog_bark", "rain", "helicopter")]


@needs_esc10
def test_whole_network_onnx_equals_pytorch_on_real_clips(musicnn_model: Path) -> None:
    meta = json.loads((musicnn_model / "model.json").read_text())
    assert meta["config"]["features"]["kind"].startswith("musicnn-embedding")
    import onnx

    graph = onnx.load(str(musicnn_model / "model.onnx"))
    assert {p.key: p.value for p in graph.metadata_props}["input_kind"] == "musicnn"
    assert (musicnn_model / "model.onnx").stat().st_size > 1_000_000  # the backbone's weights are inside
    ref, got = Classifier.load(musicnn_model), OnnxClassifier.load(musicnn_model)
    for path in _real_clips():
        s_ref, p_ref = ref.window_probabilities(path)
        s_got, p_got = got.window_probabilities(path)
        np.testing.assert_array_equal(s_ref, s_got)
        assert np.abs(p_got - p_ref).max() <= 1e-4
        a, b = ref.predict(path), got.predict(path)
        assert a.label == b.label and abs(a.confidence - b.confidence) <= 1e-4


@needs_esc10
def test_onnx_prediction_of_the_default_model_never_imports_torch(musicnn_model: Path) -> None:
    assert_onnx_predicts_without_torch(musicnn_model, _real_clips()[0])


@needs_esc10
@pytest.mark.parametrize("kind", ["seed-cnn", "res-cnn", "musicnn-finetune", "yamnet", "yamnet-mid", "fusion"])
def test_every_model_kind_exports_and_matches_pytorch(kind: str, tmp_path: Path) -> None:
    from cultural_music.models import available_models
    from cultural_music.training.pipeline import run_training

    assert {"musicnn", "seed-cnn", "res-cnn", "musicnn-finetune", "yamnet", "yamnet-mid", "fusion"} >= set(available_models())  # a new kind needs a case here
    cfg = default_config(kind)
    sr = cfg.audio.sample_rate if cfg.features.kind != "logmel" else 8000
    data = make_tone_dataset(tmp_path / "data", per_class=3, seconds=1.0, sr=sr)
    cfg = cfg.replace(audio={"clip_seconds": 1.0, "sample_rate": sr},
                      train={"seed": 0, "epochs": 1, "batch_size": 4}, augment={"n_variants": 0})
    run_training(data, tmp_path / "model", cfg, cache_dir=tmp_path / "cache", workers=1, progress=False, log=lambda s: None)
    assert export_onnx(tmp_path / "model")["max_abs_diff"] <= 1e-4
    ref, got = Classifier.load(tmp_path / "model"), OnnxClassifier.load(tmp_path / "model")
    path = _real_clips()[1]
    assert np.abs(got.window_probabilities(path)[1] - ref.window_probabilities(path)[1]).max() <= 1e-4
