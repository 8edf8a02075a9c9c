from __future__ import annotations

import pytest
import torch

from cultural_music.errors import ParameterError
from cultural_music.models import available_models, build_model


def test_seed_cnn_registered_and_output_shape() -> None:
    assert "seed-cnn" in available_models()
    torch.manual_seed(0)
    m = build_model("seed-cnn", n_classes=5, n_rows=128).eval()
    for frames in (44, 1292):
        out = m(torch.rand(2, 1, 128, frames))
        assert out.shape == (2, 5)
    tiny = build_model("seed-cnn", n_classes=3, n_rows=16).eval()
    assert tiny(torch.rand(1, 1, 16, 3)).shape == (1, 3)


def test_seed_cnn_has_reference_layers() -> None:
    m = build_model("seed-cnn", n_classes=2, n_rows=64)
    kinds = {type(x).__name__ for x in m.modules()}
    assert {"Conv2d", "MaxPool2d", "LeakyReLU", "Dropout", "Linear"} <= kinds


def test_unknown_model() -> None:
    with pytest.raises(ParameterError, match="'model' parameter"):
        build_model("nope", n_classes=2, n_rows=8)


# ------------------------------------------------------------------------------------------
# new models: registry defaults, shapes, one training step, save/load round trip
# ------------------------------------------------------------------------------------------
from pathlib import Path  # noqa: E402

from cultural_music.training.artifact import load_artifact, save_artifact
from cultural_music.config import Config  # noqa: E402
from cultural_music.models import check_config, default_config, model_defaults  # noqa: E402


# (model, config, input rows, frames)
CASES = [
    ("seed-cnn", Config().replace(features={"n_mels": 16}), 16, 20),
    ("res-cnn", Config().replace(features={"n_mels": 16}), 16, 20),
    ("musicnn", default_config("musicnn"), 1506, 2),
    pytest.param("musicnn-finetune", default_config("musicnn-finetune"), 96, 63),
]


def test_all_models_registered() -> None:
    assert {"seed-cnn", "res-cnn", "musicnn", "musicnn-finetune"} <= set(available_models())
    assert model_defaults("seed-cnn") == {}


@pytest.mark.parametrize(("name", "cfg", "rows", "frames"), CASES)
def test_one_step_and_round_trip(tmp_path: Path, name: str, cfg: Config, rows: int, frames: int) -> None:
    cfg = cfg.replace(train={"model": name})
    check_config(cfg)
    torch.manual_seed(0)
    model = build_model(name, n_classes=3, n_rows=cfg.features.n_rows)
    x, y = torch.rand(4, 1, rows, frames), torch.tensor([0, 1, 2, 0])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed and torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        want = model(x)
    save_artifact(tmp_path, model, classes=["a", "b", "c"], config=cfg, model_name=name)
    art = load_artifact(tmp_path)
    assert art.config == cfg
    with torch.no_grad():
        torch.testing.assert_close(art.model(x), want)


@pytest.mark.parametrize("frames", [44, 1292])  # 1 s and 30 s at 22,050 Hz, hop 512
def test_res_cnn_any_clip_length(frames: int) -> None:
    m = build_model("res-cnn", n_classes=4, n_rows=128).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 1, 128, frames)).shape == (2, 4)
    kinds = {type(x).__name__ for x in m.modules()}
    assert {"BatchNorm2d", "Conv2d", "Linear"} <= kinds


def test_res_cnn_output_does_not_depend_on_batch_mates() -> None:
    m = build_model("res-cnn", n_classes=3, n_rows=32).eval()
    x = torch.rand(3, 1, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(m(x)[1:2], m(x[1:2]))


def test_musicnn_head_pools_over_patches() -> None:
    m = build_model("musicnn", n_classes=2, n_rows=1506).eval()
    one = torch.rand(1, 1, 1506, 1)
    with torch.no_grad():  # mean pooling: a clip of two identical patches is the same as one patch
        torch.testing.assert_close(m(one.repeat(1, 1, 1, 2)), m(one))
    with pytest.raises(ParameterError, match="backbone's embeddings"):
        build_model("musicnn", n_classes=2, n_rows=128)
    with pytest.raises(ParameterError, match="log-mels"):
        build_model("musicnn-finetune", n_classes=2, n_rows=128, backbone=None)


def test_default_config_and_check() -> None:
    cfg = default_config("musicnn")
    assert cfg.train.model == "musicnn" and cfg.audio.sample_rate == 16000
    assert cfg.features.kind == "musicnn-embedding" and cfg.features.backbone == "MSD_musicnn"
    assert cfg.features.n_mels == 96 and cfg.features.n_rows == 1506  # rows the model sees: the embedding size
    assert cfg.augment.spec_mask_p == 0.0
    ft = default_config("musicnn-finetune")
    assert ft.features.kind == "musicnn" and ft.features.n_mels == 96 and ft.train.backbone_lr_scale == 0.1
    rc = default_config("res-cnn", Config().replace(audio={"clip_seconds": 5.0}))
    assert rc.audio.clip_seconds == 5.0 and rc.train.mixup_alpha > 0 and rc.train.class_weighting == "balanced"
    assert default_config("seed-cnn") == Config().replace(train={"model": "seed-cnn"})
    with pytest.raises(ParameterError, match="needs feature kind 'musicnn-embedding'"):
        check_config(Config().replace(train={"model": "musicnn"}))
    with pytest.raises(ParameterError, match="needs feature kind 'logmel' or 'musicnn'"):
        check_config(cfg.replace(train={"model": "res-cnn"}))
