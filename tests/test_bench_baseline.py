"""The sklearn-logreg baseline of bench/accuracy.py (issue 16) on tiny synthetic embeddings."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import accuracy  # noqa: E402
import baseline  # noqa: E402

from cultural_music.data.dataset import Recording  # noqa: E402
from cultural_music.features.extract import ExtractResult, FeatureEntry  # noqa: E402

DIM = 6


def _fold_data(tmp_path: Path, *, n_groups: int = 8, per_group: int = 3, n_classes: int = 3):
    """Recordings of ``n_groups`` groups (one class each), 2 clips x 2 patches of ``DIM``-dim
    embeddings whose mean depends on the class; the last 2 groups are the test fold, the one
    before is validation.  Every vector carries its recording index in dimension 0."""
    g = np.random.default_rng(0)
    recs, extracted = [], ExtractResult()
    for gi in range(n_groups):
        label = f"c{gi % n_classes}"
        split = "test" if gi >= n_groups - 2 else "val" if gi == n_groups - 3 else "train"
        for j in range(per_group):
            rel = f"{label}/g{gi}_{j}.wav"
            emb = g.normal(size=(2, DIM, 2)).astype(np.float32)
            emb[:, 1 + gi % n_classes] += 4.0
            emb[:, 0] = len(recs)
            path = tmp_path / f"{len(recs)}.npy"
            np.save(path, emb)
            extracted.entries[rel] = FeatureEntry(rel, f"{len(recs):064x}", 2, 2.0, path)
            recs.append(Recording(Path("/x") / rel, rel, label, f"g{gi}", split))
    return recs, extracted


def test_pool_recording_is_mean_then_max_over_all_patches():
    emb = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (clips, dim, patches)
    out = baseline.pool_recording(emb)
    flat = emb.transpose(0, 2, 1).reshape(8, 3)
    assert out.shape == (6,)
    np.testing.assert_allclose(out, np.concatenate([flat.mean(0), flat.max(0)]))


def test_predict_proba_gives_unseen_classes_zero():
    x = np.random.default_rng(1).normal(size=(12, 4))
    y = np.array([0, 2] * 6)
    p = baseline.predict_proba(baseline.fit(x, y, 1.0, None), x, 4)
    assert p.shape == (12, 4)
    assert np.all(p[:, [1, 3]] == 0)
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_grid_search_sees_training_groups_only_and_splits_by_group(tmp_path, monkeypatch):
    recs, extracted = _fold_data(tmp_path)
    index = {i: r for i, r in enumerate(recs)}
    fitted, scored = [], []
    real_fit, real_proba = baseline.fit, baseline.predict_proba

    def spy_fit(x, y, c, w):
        fitted.append({index[int(round(v))].group for v in x[:, 0]})
        return real_fit(x, y, c, w)

    def spy_proba(model, x, k):
        scored.append({index[int(round(v))].group for v in x[:, 0]})
        return real_proba(model, x, k)

    monkeypatch.setattr(baseline, "fit", spy_fit)
    monkeypatch.setattr(baseline, "predict_proba", spy_proba)
    monkeypatch.setattr(accuracy, "fit", spy_fit)
    out = accuracy.baseline_fold(recs, extracted)
    train_groups = {r.group for r in recs if r.split in ("train", "val")}
    test_groups = {r.group for r in recs if r.split == "test"}
    grid = len(baseline.C_GRID) * len(baseline.WEIGHTS)
    assert out["inner_splits"] == 5 and len(out["inner_macro_f1"]) == grid
    assert len(fitted) == grid * 5 + 1  # inner fits, then the refit on train + val
    assert fitted[-1] == train_groups  # refit on everything but the test fold
    for seen, held in zip(fitted[:-1], scored):  # inner fits alternate with their held-out scoring
        assert seen | held <= train_groups and not seen & held
    assert not set().union(*fitted) & test_groups
    assert (out["C"], out["class_weight"] if out["class_weight"] != "none" else None) in {
        (d["C"], None if d["class_weight"] == "none" else d["class_weight"]) for d in out["inner_macro_f1"]}
    assert out["n_train"] == 18 and out["n_test"] == 6 and out["n_test_clips"] == 12
    assert out["rec_macro_f1"] > 0.9  # the classes are far apart: a working fit separates them


def test_choose_prefers_the_best_inner_score():
    g = np.random.default_rng(2)
    y = np.repeat([0, 1], 20)
    x = g.normal(size=(40, 30)) + y[:, None] * 0.8
    groups = [f"g{i // 4}" for i in range(40)]
    ch = baseline.choose(x, y, groups, 2, grid=(1e-4, 1.0), weights=(None,))
    assert ch.scores[(ch.c, ch.weight)] == max(ch.scores.values())
    assert ch.n_splits == 5


@pytest.mark.parametrize("seed", [0, 1])
def test_subsample_follows_the_ladder_spread_over_folds(seed):
    items = [(f"c{c}/{f}_{i}.wav", f"c{c}", str(f)) for c in range(6) for f in range(4) for i in range(30)]
    kept, counts = baseline.subsample(items, [5, 10, 20, 40, 80], seed=seed)
    assert sorted(counts.values()) == [5, 10, 20, 40, 80, 80]
    assert max(counts.values()) / min(counts.values()) >= 16
    by = {(rel.split("/")[0], rel.split("/")[1].split("_")[0]) for rel in kept}
    assert len(by) == 24  # every class keeps recordings in every fold
    per_fold = Counter((rel.split("/")[0], rel.split("/")[1].split("_")[0]) for rel in kept)
    for label, n in counts.items():
        sizes = [per_fold[(label, str(f))] for f in range(4)]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    assert baseline.subsample(items, [5, 10, 20, 40, 80], seed=seed)[0] == kept
    assert baseline.subsample(items, [5, 10, 20, 40, 80], seed=seed + 7)[0] != kept
    capped = baseline.subsample(items, [50, 500], seed=seed)[1]
    assert sorted(capped.values()) == [50] + [120] * 5


def test_compare_pairs_the_rows_on_the_folds_both_finished(tmp_path):
    import json

    def experiment(name, model, scores, subsample=None):
        d = tmp_path / name
        cfg = {"train": {"model": "musicnn"}, "audio": {"clip_seconds": 1.0}}
        (d).mkdir()
        (d / "config.json").write_text(json.dumps({"config": cfg, "model": model, "data": "/d/fsdd", "fold_column": "group",
                                                   "val": "next-fold", "subsample": subsample, "subsample_seed": 0}))
        for fold, f1 in scores.items():
            (d / f"fold-{fold}").mkdir()
            (d / f"fold-{fold}" / "fold.json").write_text(json.dumps({"fold": fold, "rec_macro_f1": f1}))

    experiment("a", "musicnn", {"1": 0.80, "2": 0.90})
    experiment("b", accuracy.BASELINE, {"1": 0.85})
    experiment("c", "musicnn", {"1": 0.70}, subsample=[5, 10])
    experiment("d", accuracy.BASELINE, {"1": 0.705}, subsample=[5, 10])
    lines = accuracy.compare(tmp_path).splitlines()[2:]
    assert lines == ["| fsdd | group (1) | all | 0.800 ± 0.000 | 0.850 ± 0.000 | -0.050 | **no** |",
                     "| fsdd | group (1) | 5,10 | 0.700 ± 0.000 | 0.705 ± 0.000 | -0.005 | yes |"]


def test_train_only_fit_leaves_out_validation(tmp_path, monkeypatch):
    recs, extracted = _fold_data(tmp_path)
    index = {i: r for i, r in enumerate(recs)}
    refit = []
    real_fit = baseline.fit
    monkeypatch.setattr(accuracy, "fit", lambda x, y, c, w: refit.append({index[int(round(v))].split for v in x[:, 0]}) or real_fit(x, y, c, w))
    out = accuracy.baseline_fold(recs, extracted, fit_on=("train",))
    assert refit == [{"train"}] and out["n_train"] == 15


def test_run_baseline_scores_every_fold_from_the_prepared_features(tmp_path, monkeypatch):
    """``run_baseline`` end to end on the package's ``prepare`` (faked: the synthetic embeddings),
    called with arguments ``prepare`` accepts; 4 folds of 2 groups, the next fold as validation."""
    import argparse
    import csv
    import inspect
    from dataclasses import replace
    from types import SimpleNamespace

    from cultural_music.training import pipeline

    recs, extracted = _fold_data(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "groups.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group", "fold"])
        w.writerows([r.rel_path, r.group, str(int(r.group[1:]) // 2 + 1)] for r in recs)
    calls, real = [], inspect.signature(pipeline.prepare)

    def fake_prepare(*a, **kw):
        calls.append(real.bind(*a, **kw).arguments)
        return SimpleNamespace(recordings=[replace(r, split=None) for r in recs], features=extracted)

    monkeypatch.setattr(pipeline, "prepare", fake_prepare)
    args = argparse.Namespace(name="b", data=str(data), model=accuracy.BASELINE, duration=1.0, fold_column="fold", folds="",
                              val="next-fold", subsample=None, subsample_seed=0, baseline_fit="train+val", set=[],
                              root=tmp_path / "runs", cache_dir=tmp_path / "cache", workers=1)
    s = accuracy.run_baseline(args)
    assert len(calls) == 1 and calls[0]["groups_csv"] == data.resolve() / "groups.csv"
    assert s["folds"] == 4
    assert [(r["fold"], r["n_test"], r["n_train"]) for r in s["per_fold"]] == [(f, 6, 18) for f in "1234"]
