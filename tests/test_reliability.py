"""Issue 7: every bad input gets a clear answer; runs survive interruption; nothing half-written."""

from __future__ import annotations

import os
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cultural_music.training.artifact import load_artifact
from cultural_music.features.audio import iter_clips, load_clips
from cultural_music.features.cache import FeatureCache
from cultural_music.config import AudioConfig, Config
from cultural_music.errors import AudioLoadError, DatasetError, ModelLoadError, OutputError
from cultural_music.training.pipeline import run_training

from conftest import make_tone_dataset, tone, write

CFG = Config().replace(
    audio={"sample_rate": 8000, "clip_seconds": 1.0},
    features={"n_fft": 256, "hop_length": 64, "n_mels": 32},
    augment={"n_variants": 1},
    train={"model": "seed-cnn", "epochs": 3, "batch_size": 8, "learning_rate": 1e-3, "patience": 10, "seed": 1},
)
QUIET = {"workers": 1, "progress": False, "log": lambda s: None}


def _bad_files(root: Path) -> dict[str, str]:
    """Write the bad-input matrix under ``root/mid``; returns {file name: expected reason part}."""
    d = root / "mid"
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("just some text, not audio\n" * 20)
    (d / "image.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    good = tone(900, 1.0, 8000)
    write(d / "corrupt.wav", good)
    raw = (d / "corrupt.wav").read_bytes()
    (d / "corrupt.wav").write_bytes(raw[:12] + b"\x00garbage" * 10)
    write(d / "silent.wav", np.zeros(8000, np.float32))
    write(d / "tiny.mp3", tone(900, 1.0, 22050), 22050, format="MP3")
    (d / "broken.mp3").write_bytes((d / "tiny.mp3").read_bytes()[:200])
    (d / "notes.aiff2").write_bytes(b"abc")
    return {"empty.wav": "empty file", "text.wav": "not a readable audio file", "image.wav": "not a readable audio file",
            "corrupt.wav": "", "silent.wav": "silent", "notes.aiff2": "unsupported file type"}


def test_training_survives_the_bad_input_matrix(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    expected = _bad_files(data)
    # usable odd files: 0.1 s, 8 channels at 96 kHz, non-ASCII name with spaces, a symlink
    write(data / "low" / "short 0.1s.wav", tone(300, 0.1, 8000))
    write(data / "high" / "eight channels ñ.wav", np.repeat(tone(2400, 1.0, 96000)[:, None], 8, axis=1), 96000)
    os.symlink(data / "low" / "low_0.wav", data / "low" / "link.wav")
    logs: list[str] = []
    run = run_training(data, tmp_path / "model", CFG, cache_dir=tmp_path / "cache", workers=1, progress=False, log=logs.append)
    skipped = {Path(s.path).name: s.reason for s in run.skipped}
    for name, reason in expected.items():
        assert name in skipped, name
        assert reason in skipped[name]
    used = {r.rel_path for r in run.recordings}
    assert {"low/short 0.1s.wav", "high/eight channels ñ.wav", "low/link.wav"} <= used
    # the symlink and its target hold the same audio: warned and kept in one group
    assert any("identical audio" in line and "low/link.wav" in line for line in logs)
    by_path = {r.rel_path: r for r in run.recordings}
    assert by_path["low/link.wav"].split == by_path["low/low_0.wav"].split


def test_duplicate_audio_in_two_classes_is_warned_and_kept_together(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    shutil.copy(data / "low" / "low_1.wav", data / "high" / "copied.wav")
    logs: list[str] = []
    run = run_training(data, tmp_path / "m", CFG.replace(train={"epochs": 1}), cache_dir=tmp_path / "c", workers=1, progress=False, log=logs.append)
    warn = [x for x in logs if "identical audio in different classes" in x]
    assert warn and "high/copied.wav" in warn[0] and "low/low_1.wav" in warn[0]
    by_path = {r.rel_path: r for r in run.recordings}
    assert by_path["high/copied.wav"].split == by_path["low/low_1.wav"].split


def test_class_whose_files_are_all_bad_is_a_clear_error(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    for f in (data / "mid").iterdir():
        f.write_bytes(b"")
    with pytest.raises(DatasetError, match="no usable file: mid"):
        run_training(data, tmp_path / "m", CFG, cache_dir=tmp_path / "c", **QUIET)


def test_one_recording_class_says_how_many_are_needed(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    for f in sorted((data / "mid").iterdir())[1:]:
        f.unlink()
    with pytest.raises(DatasetError, match="'mid' has 1 recording group.*at least 3"):
        run_training(data, tmp_path / "m", CFG, cache_dir=tmp_path / "c", **QUIET)


def test_three_hour_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "three_hours.wav"
    sr, block = 8000, 8000 * 600
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for i in range(18):  # 18 x 10 min
            f.write(tone(440 + 10 * i, 600, sr))
    tracemalloc.start()
    n = sum(1 for _ in iter_clips(path, AudioConfig(sample_rate=16000, clip_seconds=30.0)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 360
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB"  # the decoded file would be 660 MiB


def test_long_file_features_are_cached_in_bounded_memory(tmp_path: Path) -> None:
    from cultural_music.data.dataset import Recording
    from cultural_music.features.extract import extract_features

    path = tmp_path / "c" / "long.wav"
    path.parent.mkdir()
    with sf.SoundFile(str(path), "w", samplerate=8000, channels=1, subtype="PCM_16") as f:
        for i in range(6):  # 30 minutes
            f.write(tone(440 + 50 * i, 300, 8000))
    rec = Recording(path, "c/long.wav", "c", "c/long.wav", "train")
    warm = Recording(write(tmp_path / "c" / "warm.wav", tone(440, 2.0, 8000)), "c/warm.wav", "c", "w", "train")
    extract_features([warm], CFG, FeatureCache(tmp_path / "cache"), workers=1, progress=False)  # imports done
    tracemalloc.start()
    res = extract_features([rec], CFG, FeatureCache(tmp_path / "cache"), workers=1, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    entry = res.entries["c/long.wav"]
    assert entry.n_clips == 1800
    clean = np.load(entry.clean_path, mmap_mode="r")
    aug = np.load(entry.aug_path, mmap_mode="r")
    assert clean.shape == (1800, 32, 126) and aug.shape == (1, 1800, 32, 126)
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"  # the features alone are 29 MiB per copy


def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_artifact(model_dir).model.state_dict()


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    cfg = CFG.replace(train={"epochs": 3})
    run_training(data, tmp_path / "full", cfg, cache_dir=tmp_path / "c", **QUIET)

    class Interrupt(Exception):
        pass

    def stop_after_epoch_1(line: str) -> None:
        if line.startswith("epoch   2/"):  # epoch 1 checkpointed, epoch 2 computed but never saved
            raise Interrupt

    with pytest.raises(Interrupt):
        run_training(data, tmp_path / "resumed", cfg, cache_dir=tmp_path / "c", workers=1, progress=False, log=stop_after_epoch_1)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    logs: list[str] = []
    run_training(data, tmp_path / "resumed", cfg, cache_dir=tmp_path / "c", workers=1, progress=False, log=logs.append, resume=True)
    assert any("resuming" in x and "epoch 2" in x for x in logs)
    a, b = _state(tmp_path / "full"), _state(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_identical_weights_and_metrics(tmp_path: Path) -> None:
    from cultural_music.evaluation.evaluate import run_evaluation

    data = make_tone_dataset(tmp_path / "data", per_class=4)
    cfg = CFG.replace(train={"epochs": 2})
    out = []
    for name in ("a", "b"):
        run_training(data, tmp_path / name, cfg, cache_dir=tmp_path / f"cache_{name}", **QUIET)
        m = run_evaluation(tmp_path / name, cache_dir=tmp_path / f"cache_{name}", workers=1, progress=False, plots=False, log=lambda s: None).metrics
        out.append((_state(tmp_path / name), m["recording"]["log_loss"], m["accuracy"]))
    assert all(torch.equal(out[0][0][k], out[1][0][k]) for k in out[0][0])
    assert out[0][1:] == out[1][1:]


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    cache = tmp_path / "cache"
    run_training(data, tmp_path / "m", CFG.replace(train={"epochs": 1}), cache_dir=cache, **QUIET)
    entries = sorted(p for p in cache.rglob("*.npy") if "aug-" not in str(p))
    entries[0].write_bytes(entries[0].read_bytes()[:50])  # truncated, as after a crash
    assert FeatureCache(cache).load(entries[0]) is None and not entries[0].exists()
    run_training(data, tmp_path / "m2", CFG.replace(train={"epochs": 1}), cache_dir=cache, **QUIET)
    assert np.load(entries[0]).ndim == 3


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create folder"):
        run_training(data, blocker / "model", CFG, cache_dir=tmp_path / "c", **QUIET)


def test_disk_full_leaves_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cultural_music import atomic

    target = tmp_path / "metrics.json"
    atomic.atomic_write_json(target, {"v": 1})

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic.atomic_write_json(target, {"v": 2})
    assert target.read_text().strip().endswith("}") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


class _Boom:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch /tmp/cultural_music_pwned",))


def test_pickled_payloads_are_never_executed(tmp_path: Path) -> None:
    import pickle

    marker = Path("/tmp/cultural_music_pwned")
    marker.unlink(missing_ok=True)
    data = make_tone_dataset(tmp_path / "data", per_class=4)
    run_training(data, tmp_path / "m", CFG.replace(train={"epochs": 1}), cache_dir=tmp_path / "c", **QUIET)
    evil = pickle.dumps(_Boom())
    # weights replaced by a pickle (checksum updated to match, as an attacker would)
    import hashlib
    import json

    (tmp_path / "m" / "model.safetensors").write_bytes(evil)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(evil).hexdigest()
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError):
        load_artifact(tmp_path / "m")
    # a checkpoint holding a pickle is refused on resume
    torch.save({"x": _Boom()}, tmp_path / "m" / "checkpoint.pt")
    with pytest.raises(Exception, match="cannot resume"):
        run_training(data, tmp_path / "m", CFG.replace(train={"epochs": 1}), cache_dir=tmp_path / "c", resume=True, **QUIET)
    # a feature cache entry holding a pickle is treated as corrupt
    entry = next(p for p in (tmp_path / "c").rglob("*.npy"))
    np.save(entry, np.array([_Boom()], dtype=object), allow_pickle=True)
    assert FeatureCache(tmp_path / "c").load(entry) is None
    assert not marker.exists()


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "dir.wav"
    p.mkdir()
    with pytest.raises(AudioLoadError, match="dir.wav: is a folder"):
        load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0))
