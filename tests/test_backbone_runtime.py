"""ONNX Runtime for the packaged backbones (backbones/runtime.py): parity with torch on real
front-end input, the stored export reused / re-exported when damaged, and the selection."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnx", reason="the onnx extra (onnx, onnxruntime) is not installed")

from cultural_music.backbones import musicnn as mn  # noqa: E402
from cultural_music.backbones import runtime as rt  # noqa: E402
from cultural_music.backbones import yamnet as ym  # noqa: E402
from cultural_music.backbones.packaged import WEIGHTS_SHA256  # noqa: E402
from cultural_music.errors import CulturalMusicError, ParameterError  # noqa: E402
from cultural_music.features.compute import musicnn_log_mel  # noqa: E402

SR = 16000


@pytest.fixture(autouse=True)
def fresh_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A tmp export folder, the default runtime and no session cached, before and after."""
    monkeypatch.setenv(rt.DIR_ENV, str(tmp_path / "backbones"))
    monkeypatch.delenv(rt.RUNTIME_ENV, raising=False)
    rt.clear_sessions()
    yield
    rt.clear_sessions()


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names exported, in order (counts the real exports)."""
    done: list[str] = []
    real = rt._export_bytes

    def counting(name, network):
        done.append(name)
        return real(name, network)

    monkeypatch.setattr(rt, "_export_bytes", counting)
    return done


def _waveform(seconds: float = 6.5) -> np.ndarray:
    """A 440 Hz sine + noise at 16 kHz, float32 (1, samples)."""
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return y.astype(np.float32)[None]


def _embed(name: str, y: np.ndarray) -> np.ndarray:
    if name == "yamnet":
        return ym.embed_waveforms(y)
    return mn.embed_logmels(mn.pretrained(name), musicnn_log_mel(y))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name", ["MSD_musicnn", "yamnet"])
def test_onnxruntime_matches_torch_on_real_front_end(name: str, monkeypatch: pytest.MonkeyPatch, exports: list[str]) -> None:
    y = _waveform()
    monkeypatch.setenv(rt.RUNTIME_ENV, "torch")
    ref = _embed(name, y)
    assert exports == [] and not rt._SESSIONS
    monkeypatch.setenv(rt.RUNTIME_ENV, "onnxruntime")
    got = _embed(name, y)
    assert exports == [name] and [k[0] for k in rt._SESSIONS] == [name]  # it ran on ONNX Runtime
    assert got.shape == ref.shape and got.dtype == np.float32
    assert _rel(got, ref) <= 1e-5


def test_stored_export_reused_then_damaged_one_exported_again(exports: list[str]) -> None:
    y = _waveform(2.0)
    first = _embed("yamnet", y)
    session = rt._SESSIONS[("yamnet", rt._torch_threads())]
    path = session.path
    assert path is not None and path.is_file() and exports == ["yamnet"]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["onnx_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["weights_sha256"] == WEIGHTS_SHA256["yamnet.safetensors"] and meta["opset"] == rt.OPSET
    stamp = path.stat().st_mtime_ns

    rt.clear_sessions()  # a new process: reuses the stored file
    np.testing.assert_array_equal(_embed("yamnet", y), first)
    assert exports == ["yamnet"] and path.stat().st_mtime_ns == stamp

    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))  # half-written by someone else
    rt.clear_sessions()
    np.testing.assert_array_equal(_embed("yamnet", y), first)
    assert exports == ["yamnet", "yamnet"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == json.loads(path.with_suffix(".json").read_text())["onnx_sha256"]


def test_torch_forced_and_other_modules_stay_on_torch(monkeypatch: pytest.MonkeyPatch, exports: list[str]) -> None:
    monkeypatch.setenv(rt.RUNTIME_ENV, "torch")
    assert rt.session_for(ym.pretrained_yamnet()) is None
    ym.embed_waveforms(_waveform(1.0))
    assert exports == [] and not rt._SESSIONS
    monkeypatch.setenv(rt.RUNTIME_ENV, "onnxruntime")
    fresh = ym.load_yamnet()  # not the packaged frozen instance (e.g. about to be fine-tuned)
    assert rt.session_for(fresh) is None
    assert rt.session_for(mn.load_musicnn("MSD_musicnn")) is None
    assert rt.session_for(copy.deepcopy(ym.pretrained_yamnet())) is None  # a copy may be trained
    assert exports == [] and not rt._SESSIONS
    monkeypatch.setenv(rt.RUNTIME_ENV, "tensorrt")
    with pytest.raises(ParameterError, match=rt.RUNTIME_ENV):
        rt.session_for(ym.pretrained_yamnet())


def test_onnxruntime_missing_auto_falls_back_forced_is_an_error(monkeypatch: pytest.MonkeyPatch, exports: list[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    y = _waveform(1.0)
    emb = ym.embed_waveforms(y)  # auto: torch
    assert emb.shape[:2] == (1, 1024) and exports == [] and not rt._SESSIONS
    monkeypatch.setenv(rt.RUNTIME_ENV, "onnxruntime")
    with pytest.raises(CulturalMusicError, match=r"cultural-music\[onnx\]"):
        ym.embed_waveforms(y)


def test_parity_failure_warns_once_and_uses_torch(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                  exports: list[str]) -> None:
    monkeypatch.setattr(rt, "PARITY", -1.0)  # a check no runtime passes
    y = _waveform(1.0)
    monkeypatch.setenv(rt.RUNTIME_ENV, "torch")
    ref = ym.embed_waveforms(y)
    monkeypatch.delenv(rt.RUNTIME_ENV)
    with caplog.at_level(logging.WARNING, logger=rt.__name__):
        first, second = ym.embed_waveforms(y), ym.embed_waveforms(y)
    np.testing.assert_array_equal(first, ref)
    np.testing.assert_array_equal(second, ref)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "differ from torch" in warnings[0].getMessage()
    assert exports == ["yamnet"] and not rt._SESSIONS


def test_feature_pool_workers_give_sessions_one_thread(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from cultural_music.config import Config
    from cultural_music.features import jobs
    from cultural_music.features.orphan import owner_token

    with ProcessPoolExecutor(1, mp_context=jobs._mp_context(False), initializer=jobs._init_worker,
                             initargs=(Config().to_dict(), str(tmp_path / "cache"), owner_token())) as pool:
        assert pool.submit(rt._torch_threads).result(timeout=120) == 1  # the sessions' intra-op threads
