"""Scale-out: Ray extraction == local extraction, DDP training == single-process training.

The DDP core is tested with two ``torch.multiprocessing`` processes (no Ray needed); the Ray
tests share one local Ray instance (2 CPUs) and skip, with the reason, only if Ray is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader

from cultural_music.features.cache import FeatureCache
from cultural_music.cli import main
from cultural_music.cluster.ddp import init_process_group, shard_indices, shutdown, state_digest
from cultural_music.config import Config, TrainConfig
from cultural_music.training.clip_dataset import ClipDataset, ClipItem
from cultural_music.data.dataset import Recording, scan_folder
from cultural_music.errors import ParameterError
from cultural_music.features.extract import extract_features
from cultural_music.training.loop import train_model

from conftest import make_tone_dataset, tone, write

TINY = Config().replace(
    audio={"sample_rate": 8000, "clip_seconds": 1.0},
    features={"n_fft": 256, "hop_length": 64, "n_mels": 32},
    augment={"n_variants": 1},
    train={"seed": 0},
)


# --- no Ray needed ---------------------------------------------------------------------------


def test_local_path_does_not_import_ray() -> None:
    code = ("import sys, cultural_music, cultural_music.cli, cultural_music.training.loop, cultural_music.features.jobs, "
            "cultural_music.features.extract, cultural_music.training.pipeline, cultural_music.cluster.ddp; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from cultural_music.cluster.session import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now fails as if not installed
    with pytest.raises(ParameterError, match=r"pip install 'cultural-music\[cluster\]'"):
        require_ray()


def test_address_needs_ray_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", str(tmp_path), "--address", "auto"]) == 2
    assert "--address needs --backend ray" in capsys.readouterr().err


def test_shards_partition_the_local_order() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1])  # 11 items: padded to 12 for 2 ranks
    loader = DataLoader(range(11), batch_size=1, shuffle=True, generator=torch.Generator().manual_seed(5))
    local = [int(b) for b in loader]  # the order of a local training loader with this seed
    assert shard_indices(labels, 0, 1, seed=5) == local
    r0, r1 = shard_indices(labels, 0, 2, seed=5), shard_indices(labels, 1, 2, seed=5)
    assert len(r0) == len(r1) == 6
    assert sorted(set(r0 + r1)) == list(range(11))
    assert [x for pair in zip(r0, r1) for x in pair][:11] == local  # step k covers a local batch k
    bal = shard_indices(labels, 0, 1, seed=5, balanced=True)
    assert len(bal) == 11 and shard_indices(labels, 1, 2, seed=5, balanced=True) == (bal + bal[:1])[1::2]


def _clips(root: Path, labels: list[int], seed: int) -> ClipDataset:
    """One ``.npy`` per clip ``(1, 16, 12)``; class c has its energy in mel rows 4c..4c+2."""
    g = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i, lab in enumerate(labels):
        x = 0.1 * g.random((1, 16, 12), dtype=np.float32)
        x[0, 4 * lab: 4 * lab + 3] += 0.8
        np.save(root / f"{i}.npy", x)
        items.append(ClipItem(root / f"{i}.npy", 0, lab, f"c{lab}/{i}.wav"))
    return ClipDataset(items, train=True, seed=seed)


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "linear":  # no batch norm: DDP is the local run up to float rounding
        return nn.Sequential(nn.Flatten(), nn.Linear(16 * 12, 16), nn.ReLU(), nn.Linear(16, 3))
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3))


# patience > epochs: every comparison runs exactly 4 epochs.  With early stopping the landing
# point depended on float noise (batch norm: epoch 2 improved on epoch 1 by 3e-6 against the
# 1e-6 threshold with 1 thread, 3e-5 with 2), so the 2-rank and the local run could stop apart.
CFG = TrainConfig(epochs=4, batch_size=8, learning_rate=1e-2, patience=100, seed=3)


def _fit(kind: str, root: Path, *, dist=None, ckpt: Path | None = None, cfg: TrainConfig = CFG,  # noqa: ANN001, ANN202
         resume: bool = False):
    train = _clips(root / "tr", [0, 1, 2] * 8, seed=0)  # 24 clips: 3 steps of 8 (2 x 4 per rank)
    val = _clips(root / "va", [0, 1, 2] * 2, seed=1)
    model = _model(kind)
    res = train_model(model, train, val, cfg, checkpoint_dir=ckpt, resume=resume, log=lambda s: None, dist=dist)
    return model, res


def _rank(rank: int, world: int, port: int, root: str, out: str) -> None:
    torch.set_num_threads(1)
    ctx = init_process_group(rank, world, "127.0.0.1", port, timeout_s=60)
    try:
        report = {}
        for kind in ("linear", "batchnorm"):
            ckpt = Path(out) / f"ckpt-{kind}-{rank}"
            ckpt.mkdir(parents=True, exist_ok=True)
            model, res = _fit(kind, Path(root) / kind, dist=ctx, ckpt=ckpt)
            report[kind] = {"digest": state_digest(model), "history": res.history, "best_epoch": res.best_epoch}
        # early stopping: with lr 1e-12 and no batch norm the validation loss is constant (to 1e-9,
        # far below the 1e-6 improvement threshold), so every rank stops after epoch 1 + patience 2
        _, res = _fit("linear", Path(root) / "stop", dist=ctx, cfg=replace(CFG, learning_rate=1e-12, epochs=10,
                                                                             patience=2))
        report["stopped"] = [len(res.history), res.stopped_early]
        # resume: 2 epochs, then on to 4 from rank 0's checkpoint == 4 epochs at once
        long = CFG
        shared = Path(out) / "ckpt-resume"
        shared.mkdir(exist_ok=True)
        _fit("batchnorm", Path(root) / "res", dist=ctx, ckpt=shared, cfg=replace(long, epochs=2))
        torch.distributed.barrier()  # rank 0 has written the checkpoint
        resumed, _ = _fit("batchnorm", Path(root) / "res", dist=ctx, ckpt=shared, cfg=long, resume=True)
        straight, _ = _fit("batchnorm", Path(root) / "res", dist=ctx, cfg=long)
        report["resume"] = [state_digest(resumed), state_digest(straight)]
        Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_rank_ddp_matches_single_process_and_stays_in_sync(tmp_path: Path) -> None:
    mp.start_processes(_rank, args=(2, _free_port(), str(tmp_path / "data"), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0]["stopped"] == reports[1]["stopped"] == [3, True]  # epoch 1, then patience 2
    for rep in reports:
        assert rep["resume"][0] == rep["resume"][1] == reports[0]["resume"][0]
    for kind in ("linear", "batchnorm"):
        assert reports[0][kind]["digest"] == reports[1][kind]["digest"], f"{kind}: ranks hold different weights"
        assert reports[0][kind]["history"][-1]["val_loss"] == reports[1][kind]["history"][-1]["val_loss"]
        assert (tmp_path / f"ckpt-{kind}-0" / "checkpoint.pt").exists()  # rank 0 writes ...
        assert not (tmp_path / f"ckpt-{kind}-1" / "checkpoint.pt").exists()  # ... and only rank 0
        _, local = _fit(kind, tmp_path / "local" / kind)
        dist_hist = reports[0][kind]["history"]
        assert len(dist_hist) == len(local.history) == CFG.epochs  # fixed length: no early-stopping landing point
        tol = 1e-4 if kind == "linear" else 0.05  # batch norm sees 4 clips per rank, not 8
        for d, l in zip(dist_hist, local.history):
            assert d["val_loss"] == pytest.approx(l["val_loss"], abs=tol)
            assert d["train_loss"] == pytest.approx(l["train_loss"], abs=tol)
        assert reports[0][kind]["best_epoch"] == local.best_epoch or kind == "batchnorm"


# --- Ray --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():  # noqa: ANN201
    try:
        import ray
    except ImportError as err:  # not installed, or installed but broken
        pytest.skip(f"Ray cannot be imported ({err}); pip install 'cultural-music[cluster]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


def _recs(root: Path) -> list[Recording]:
    return [Recording(r.path, r.rel_path, r.label, r.group, "train") for r in scan_folder(root).recordings]


def _extract(recs: list[Recording], root: Path, backend: str, workers: int):  # noqa: ANN202
    from cultural_music.cluster.runner import RayRunner

    runner = RayRunner(None, workers) if backend == "ray" else None
    return extract_features(recs, TINY, FeatureCache(root), workers=workers, progress=False, runner=runner)


def test_ray_extraction_equals_local(ray_session, tmp_path: Path) -> None:  # noqa: ANN001
    data = make_tone_dataset(tmp_path / "d", per_class=3)
    write(data / "low" / "noise.wav", 0.1 * np.random.default_rng(1).standard_normal(8000).astype(np.float32), 8000)
    (data / "mid" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (data / "high" / "empty.wav").write_bytes(b"")
    recs = _recs(data)
    local = _extract(recs, tmp_path / "c_local", "local", 1)
    remote = _extract(recs, tmp_path / "c_ray", "ray", 2)
    assert [(s.path, s.reason) for s in remote.skipped] == [(s.path, s.reason) for s in local.skipped]
    assert len(local.skipped) == 2 and len(local.entries) == 10
    assert list(remote.entries) == list(local.entries)
    for rel, a in local.entries.items():
        b = remote.entries[rel]
        assert (b.sha, b.n_clips, b.n_variants) == (a.sha, a.n_clips, a.n_variants)
        assert b.clean_path.relative_to(tmp_path / "c_ray") == a.clean_path.relative_to(tmp_path / "c_local")
        assert np.array_equal(np.load(b.clean_path), np.load(a.clean_path))
        assert np.array_equal(np.load(b.aug_path), np.load(a.aug_path))  # seeded augmentation too


def test_features_command_reports_the_same_on_ray(ray_session, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    data = make_tone_dataset(tmp_path / "d", per_class=2)
    (data / "low" / "corrupt.mp3").write_bytes(b"ID3 not really")
    args = ["features", str(data), "--duration", "1", "--sample-rate", "8000", "--n-mels", "32", "--workers", "2", "-q"]
    outs = []
    for backend in ("local", "ray"):
        assert main([*args, "--backend", backend, "--cache-dir", str(tmp_path / backend)]) == 0
        outs.append(capsys.readouterr().out.replace(str(tmp_path / backend), "CACHE"))
    assert "6 file(s) with features: 6 decoded" in outs[0] and "corrupt.mp3: " in outs[0]
    assert outs[1] == outs[0]


def test_ray_task_failure_skips_only_that_file(ray_session, tmp_path: Path) -> None:  # noqa: ANN001
    from cultural_music.cluster.ray_features import ray_backend
    from cultural_music.features.jobs import ExtractJob

    def _crash_on(jobs, cfg_dict, cache_root):  # noqa: ANN001, ANN202 - local: Ray ships it by value
        """A task whose worker dies on a file named ``crash*``."""
        import os
        from pathlib import Path

        from cultural_music.cluster.ray_features import extract_chunk

        if any(Path(j.path).name.startswith("crash") for j in jobs):
            os._exit(1)
        return extract_chunk(jobs, cfg_dict, cache_root)

    data = make_tone_dataset(tmp_path / "d", per_class=2)
    write(data / "low" / "crash.wav", tone(300, 1.0), 8000)
    jobs = [ExtractJob(str(r.path), r.rel_path) for r in scan_folder(data).recordings]
    out = {r.rel_path: r for r in ray_backend(jobs, TINY, str(tmp_path / "c"), 2, max_retries=0, task=_crash_on)}
    assert set(out) == {j.rel_path for j in jobs}
    assert "Ray task failed 1 time(s)" in (out["low/crash.wav"].error or "")
    assert all(r.error is None and r.entry is not None and r.entry.n_clips == 1 for k, r in out.items() if k != "low/crash.wav")


TRAIN = ["--model", "seed-cnn", "--duration", "1", "--sample-rate", "8000", "--n-mels", "32", "--epochs", "3",
         "--batch-size", "8", "--augment-variants", "0", "--workers", "2", "--seed", "0", "-q"]


def test_ray_training_end_to_end_matches_local(ray_session, tmp_path: Path) -> None:  # noqa: ANN001
    data = make_tone_dataset(tmp_path / "d", per_class=6)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["train", str(data), "--out", str(tmp_path / "local"), *cache, *TRAIN]) == 0
    assert main(["train", str(data), "--out", str(tmp_path / "ray"), *cache, *TRAIN, "--backend", "ray"]) == 0
    loc, ray_ = (json.loads((tmp_path / m / "model.json").read_text()) for m in ("local", "ray"))
    assert ray_["model"] == loc["model"] and ray_["classes"] == loc["classes"]
    assert set(os.listdir(tmp_path / "ray")) == set(os.listdir(tmp_path / "local"))  # same artifact, no checkpoint left
    assert ray_["training"]["epochs_run"] == loc["training"]["epochs_run"]
    assert ray_["training"]["best_val_loss"] == pytest.approx(loc["training"]["best_val_loss"], abs=0.05)
