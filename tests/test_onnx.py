"""ONNX export: exact pooling rewrite, parity with PyTorch within 1e-4, prediction without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cultural_music.cli import main
from cultural_music.errors import ModelLoadError
from cultural_music.inference.export import export_onnx, exportable
from cultural_music.inference.classifier import Classifier
from cultural_music.inference.onnx_backend import OnnxClassifier

from conftest import write
from tiny_model import SOUNDS, SR, shared_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("onnx") / "m"
    shutil.copytree(shared_model(tmp_path_factory.getbasetemp()), model)
    res = export_onnx(model)
    assert res["max_abs_diff"] <= 1e-4
    return model


@pytest.fixture(scope="module")
def query(tmp_path_factory: pytest.TempPathFactory) -> Path:
    g = np.random.default_rng(9)
    y = np.concatenate([SOUNDS["Newari"](g, 2.0), SOUNDS["beep"](g, 1.9)])
    return write(tmp_path_factory.mktemp("q") / "q.wav", y, SR)


@pytest.mark.parametrize("pool", [nn.AdaptiveMaxPool2d((4, 8)), nn.AdaptiveAvgPool2d((3, 5))])
def test_fixed_bins_pool_equals_adaptive_pool(rng: np.random.Generator, pool: nn.Module) -> None:
    net = nn.Sequential(nn.Identity(), pool)
    x = torch.from_numpy(rng.standard_normal((2, 3, 13, 37)).astype(np.float32))  # sizes that do not divide
    fixed = exportable(net, x)
    assert not any(isinstance(m, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)) for m in fixed.modules())
    torch.testing.assert_close(fixed(x), net(x), rtol=0, atol=1e-6)


def test_onnx_probabilities_match_pytorch(exported: Path, query: Path) -> None:
    ref, got = Classifier.load(exported), OnnxClassifier.load(exported)
    s_ref, p_ref = ref.window_probabilities(query, hop_seconds=0.25)
    s_got, p_got = got.window_probabilities(query, hop_seconds=0.25)
    np.testing.assert_array_equal(s_ref, s_got)
    assert p_ref.shape == (13, 3)  # batches of 4, 4, 4 and 1 windows: the batch axis is dynamic
    np.testing.assert_allclose(p_got, p_ref, atol=1e-4, rtol=0)
    a, b = ref.predict(query), got.predict(query)
    assert a.label == b.label and abs(a.confidence - b.confidence) <= 1e-4
    assert [s.label for s in a.timeline] == [s.label for s in b.timeline]
    assert got.describe()["backend"] == "onnx" and got.describe()["version"] == ref.describe()["version"]


def assert_onnx_predicts_without_torch(model: Path, query: Path) -> None:
    """In a fresh process, the Python API and ``predict --onnx`` answer and ``torch`` is never imported."""
    code = textwrap.dedent(f"""
        import sys
        from cultural_music.cli import main
        from cultural_music.inference.onnx_backend import OnnxClassifier
        pred = OnnxClassifier.load({str(model)!r}).predict({str(query)!r})
        rc = main(["predict", {str(model)!r}, {str(query)!r}, "--onnx"])
        print(pred.label, rc, "torch" in sys.modules)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1].endswith(" 0 False")


def test_onnx_predictor_never_imports_torch(exported: Path, query: Path) -> None:
    assert_onnx_predicts_without_torch(exported, query)


def test_stale_or_missing_onnx_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(exported, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["weights_sha256"] = "0" * 64  # as if the model were retrained after the export
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="other weights"):
        OnnxClassifier.load(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="export .* --onnx"):
        OnnxClassifier.load(copy)
    (copy / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="not a readable ONNX"):
        OnnxClassifier.load(copy)


def test_cli_export_then_predict(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, query: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m"
    shutil.copytree(shared_model(tmp_path_factory.getbasetemp()), model)
    assert main(["predict", str(model), str(query), "--onnx"]) == 1  # not exported yet
    assert "cultural-music export" in capsys.readouterr().err
    assert main(["export", str(model), "--onnx"]) == 0
    assert (model / "model.onnx").is_file() and "probabilities match PyTorch" in capsys.readouterr().out
    assert main(["predict", str(model), str(query), "--onnx"]) == 0
    assert capsys.readouterr().out.startswith("🎵 q.wav: ")
    assert main(["export", str(model)]) == 2  # no format chosen
