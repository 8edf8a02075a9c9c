"""The joins between stages: prepare once, one runner for every job and the training, bad files
skipped and reported once (training.pipeline, features.jobs, cluster.runner)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from cultural_music.features.cache import FeatureCache
from cultural_music.features.jobs import ExtractJob, LocalRunner, extract_one
from cultural_music.models import default_config
from cultural_music.training import pipeline

from conftest import make_tone_dataset

CFG = default_config("seed-cnn").replace(audio={"sample_rate": 8000, "clip_seconds": 1.0}, features={"n_mels": 32},
                                         augment={"n_variants": 1}, train={"epochs": 1, "batch_size": 8, "seed": 1})


def _data(root: Path) -> Path:
    """3 tone classes of 5 files, an identical copy of one file and a file that is not audio."""
    data = make_tone_dataset(root, per_class=5, seconds=1.2)
    shutil.copy(data / "low" / "low_0.wav", data / "low" / "copy.wav")
    (data / "mid" / "bad.wav").write_bytes(b"not audio")
    return data


class SpyRunner(LocalRunner):
    """A local runner that counts what the pipeline asks of it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.job_calls: list[int] = []
        self.train_calls = 0

    def run_jobs(self, jobs, cfg, cache_root):  # noqa: ANN001, ANN201
        self.job_calls.append(len(jobs))
        return super().run_jobs(jobs, cfg, cache_root)

    def train(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.train_calls += 1
        return super().train(*args, **kwargs)


def _no_default_runner(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise AssertionError("a LocalRunner was built although the caller gave one")


def test_cv_prepares_once_and_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cultural_music.evaluation.cv import run_cv

    data = _data(tmp_path / "d")
    scans = []
    real_scan = pipeline.scan_folder
    monkeypatch.setattr(pipeline, "scan_folder", lambda *a, **k: scans.append(a) or real_scan(*a, **k))
    lines: list[str] = []
    summary = run_cv(data, CFG, folds=2, out_dir=tmp_path / "cv", cache_dir=tmp_path / "c", workers=1, progress=False,
                     log=lines.append)
    assert len(scans) == 1  # the folder is scanned once, not once per fold
    text = "\n".join(lines)
    assert text.count("identical audio") == 1 and "low/copy.wav" in text
    assert text.count("bad.wav") == 1 and text.count("skipped 1 file(s)") == 1
    assert summary["n_folds"] == 2 and summary["n_recordings"] == 16
    assert [s["path"] for s in summary["skipped"]] == [str(data / "mid" / "bad.wav")]
    assert (tmp_path / "cv" / "fold_2" / "metrics.json").is_file()


def test_training_uses_the_one_runner_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "LocalRunner", _no_default_runner)
    monkeypatch.setattr("cultural_music.features.extract.LocalRunner", _no_default_runner)
    runner = SpyRunner()
    run = pipeline.run_training(_data(tmp_path / "d"), tmp_path / "m", CFG, cache_dir=tmp_path / "c", runner=runner,
                                progress=False, log=lambda s: None)
    assert runner.train_calls == 1
    assert len(runner.job_calls) == 2 and runner.job_calls[0] == 17  # clean features of every file, then augmented variants
    assert [Path(s.path).name for s in run.skipped] == ["bad.wav"]
    assert (run.model_dir / "model.json").is_file()


def test_prepared_split_leaves_the_prepared_data_alone(tmp_path: Path) -> None:
    prepared = pipeline.prepare(_data(tmp_path / "d"), CFG, cache=FeatureCache(tmp_path / "c"), runner=LocalRunner(1),
                                progress=False, log=lambda s: None)
    assert "mid/bad.wav" not in {r.rel_path for r in prepared.recordings} and len(prepared.recordings) == 16
    recs, feats, skipped = prepared.split()
    train = {r.rel_path for r in recs if r.split == "train"}
    assert train and all(feats.entries[p].n_variants == 1 for p in train)
    assert all(e.aug_path is None for e in prepared.features.entries.values())  # folds do not see each other's variants
    assert [Path(s.path).name for s in skipped] == ["bad.wav"] and len(prepared.scan.skipped) == 1


def test_a_bad_file_is_a_result_not_an_exception(tmp_path: Path) -> None:
    data = _data(tmp_path / "d")
    cache = FeatureCache(tmp_path / "c")
    bad = extract_one(ExtractJob(str(data / "mid" / "bad.wav"), "mid/bad.wav"), CFG, cache)
    assert bad.entry is None and bad.error and "not a readable audio file" in bad.error
    jobs = [ExtractJob(str(p), p.relative_to(data).as_posix()) for p in sorted(data.rglob("*.wav"))]
    out = {r.rel_path: r for r in LocalRunner(2).run_jobs(jobs, CFG, cache.root)}  # a process pool: 17 jobs, 2 workers
    assert set(out) == {j.rel_path for j in jobs}
    assert out["mid/bad.wav"].error == bad.error
    good = out["low/low_0.wav"].entry
    assert good is not None and good.n_clips == 1 and good.sha == out["low/copy.wav"].entry.sha


def test_ray_runner_trains_an_lbfgs_head_here_without_joining_ray() -> None:
    from cultural_music.cluster.runner import RayRunner

    runner = RayRunner(None, 3)
    said: list[str] = []
    got = runner.train("model", "train", "val", SimpleNamespace(optimizer="lbfgs"), local=lambda *a, **k: (a, k),
                       checkpoint_dir="ck", log=said.append)
    assert got == (("model", "train", "val", SimpleNamespace(optimizer="lbfgs")), {"log": said.append, "checkpoint_dir": "ck"})
    assert "L-BFGS head trains here" in said[0] and runner._workers is None  # Ray never joined


def test_uncertain_threshold_is_fitted_on_what_predict_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The validation recordings' probabilities are weighted by real audio, as predict's: a
    trailing clip holding 0.1 s of audio does not count as much as a full one."""
    import numpy as np

    from cultural_music.features.cache import FeatureEntry
    from cultural_music.features.extract import ExtractResult
    from cultural_music.metrics.recording import recordings_from_clips
    from cultural_music.training.clip_dataset import ClipItem

    items = [ClipItem(Path("x.npy"), 0, 0, "a/x.wav"), ClipItem(Path("x.npy"), 1, 0, "a/x.wav"),
             ClipItem(Path("y.npy"), 0, 1, "b/y.wav")]
    val_ds = SimpleNamespace(items=items, labels=np.array([0, 0, 1]))
    logits = np.array([[4.0, 0.0], [0.0, 4.0], [0.0, 4.0]], dtype=np.float32)
    monkeypatch.setattr("cultural_music.training.loop.predict_logits", lambda model, ds: logits)
    seen = {}
    monkeypatch.setattr("cultural_music.metrics.uncertainty.fit_threshold",
                        lambda p, y: seen.update(p=p, y=y) or {"threshold": 0.5})
    extracted = ExtractResult({"a/x.wav": FeatureEntry("a/x.wav", "s1", 2, 1.1, Path("x.npy")),
                               "b/y.wav": FeatureEntry("b/y.wav", "s2", 1, 1.0, Path("y.npy"))})
    cfg = CFG  # 1 s clips at 8 kHz
    out = pipeline.fit_on_validation(None, val_ds, extracted, cfg)
    from cultural_music.metrics.classification import softmax

    proba = softmax(logits, out["calibration"]["temperature"])
    _, want = recordings_from_clips(["a/x.wav", "a/x.wav", "b/y.wav"], proba, {"a/x.wav": 1.1, "b/y.wav": 1.0}, window=1.0,
                                    clip_samples=8000, sample_rate=8000)
    np.testing.assert_allclose(seen["p"], want, rtol=1e-6)
    assert seen["p"][0, 0] > proba[:2, 0].mean() + 0.1 and list(seen["y"]) == [0, 1]
