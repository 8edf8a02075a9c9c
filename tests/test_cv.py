"""Group folds never leak, statistics are right, and ``cultural-music cv`` runs end to end."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from cultural_music.cli import main
from cultural_music.evaluation.cv import fold_statistics
from cultural_music.data.dataset import Recording
from cultural_music.errors import DatasetError, ParameterError
from cultural_music.data.folds import folds_from_column, group_kfold, leave_one_group_out, validation_split
from cultural_music.models import default_config

from conftest import make_tone_dataset


def _recs(n_classes: int = 3, groups_per_class: int = 8, files_per_group: int = 3) -> list[Recording]:
    out = []
    for c in range(n_classes):
        for g in range(groups_per_class):
            for f in range(files_per_group):
                rel = f"c{c}/g{g}_{f}.wav"
                out.append(Recording(Path("/x") / rel, rel, f"c{c}", f"c{c}-g{g}"))
    return out


def _sides(recs: list[Recording], folds: list[int]) -> dict[str, set[int]]:
    sides: dict[str, set[int]] = defaultdict(set)
    for r, f in zip(recs, folds):
        sides[r.group].add(f)
    return sides


def test_group_kfold_keeps_groups_whole_and_stratifies() -> None:
    recs = _recs()
    folds, names = group_kfold(recs, n_folds=4, seed=3)
    assert names == ["1", "2", "3", "4"]
    assert all(len(s) == 1 for s in _sides(recs, folds).values())
    for k in range(4):  # 8 groups per class over 4 folds: each fold gets 2 groups = 6 files per class
        labels = [r.label for r, f in zip(recs, folds) if f == k]
        assert sorted(set(labels)) == ["c0", "c1", "c2"]
        assert labels.count("c0") == 6
    assert group_kfold(recs, n_folds=4, seed=3)[0] == folds
    assert group_kfold(recs, n_folds=4, seed=4)[0] != folds


def test_group_kfold_rejects_too_few_groups() -> None:
    with pytest.raises(DatasetError, match="only 6 recording group"):
        group_kfold(_recs(groups_per_class=2), n_folds=7, seed=0)
    with pytest.raises(ParameterError, match="folds"):
        group_kfold(_recs(), n_folds=1, seed=0)
    # 6 groups, but no class has 5 recordings: a clear error, not scikit-learn's ValueError
    with pytest.raises(DatasetError, match="largest class has 3 recording"):
        group_kfold(_recs(n_classes=2, groups_per_class=3, files_per_group=1), n_folds=5, seed=0)


def test_leave_one_group_out() -> None:
    recs = _recs(groups_per_class=2)
    folds, names = leave_one_group_out(recs)
    assert len(names) == 6 and names[0] == "c0-g0"
    assert all(len(s) == 1 for s in _sides(recs, folds).values())
    assert sorted(set(folds)) == list(range(6))


def test_folds_from_column(tmp_path: Path) -> None:
    recs = _recs(groups_per_class=2, files_per_group=2)
    path = tmp_path / "g.csv"
    rows = ["path,group,fold"] + [f"{r.rel_path},{r.group},{10 if r.group.endswith('g0') else 2}" for r in recs]
    path.write_text("\n".join(rows) + "\n")
    folds, names = folds_from_column(recs, path, "fold", Path("/x"))
    assert names == ["2", "10"]  # numeric-looking values in natural order
    assert [f for r, f in zip(recs, folds) if r.group.endswith("g0")] == [1] * 6
    with pytest.raises(DatasetError, match="needs columns 'path' and 'split'"):
        folds_from_column(recs, path, "split", Path("/x"))
    path.write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(DatasetError, match="1 file\\(s\\) have no value"):
        folds_from_column(recs, path, "fold", Path("/x"))
    leaky = rows[:-1] + [f"{recs[-1].rel_path},{recs[-1].group},10"]  # one file of a fold-2 group in fold 10
    path.write_text("\n".join(leaky) + "\n")
    with pytest.raises(DatasetError, match="several folds"):
        folds_from_column(recs, path, "fold", Path("/x"))


def test_validation_split_is_by_group() -> None:
    recs = _recs(groups_per_class=6)
    out = validation_split(recs, val_fraction=0.2, seed=0)
    assert [r.rel_path for r in out] == [r.rel_path for r in recs]
    sides: dict[str, set[str]] = defaultdict(set)
    for r in out:
        sides[r.group].add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    val_groups = {g for g, s in sides.items() if s == {"val"}}
    assert 3 <= len(val_groups) <= 6  # about 1/5 of 18 groups, at least one per class
    assert {g.split("-")[0] for g in val_groups} == {"c0", "c1", "c2"}


def test_validation_split_leaves_every_class_in_training() -> None:
    # classes with a single group: plain StratifiedGroupKFold puts all of c2 in validation for seeds 0 and 1
    layout = {"c0": [1, 1], "c1": [1, 1], "c2": [3], "c3": [2]}
    recs = [Recording(Path("/x") / f"{c}/{g}_{f}.wav", f"{c}/{g}_{f}.wav", c, f"{c}-g{g}")
            for c, groups in layout.items() for g, n in enumerate(groups) for f in range(n)]
    for seed in range(6):
        out = validation_split(recs, val_fraction=0.3, seed=seed)
        assert {r.label for r in out if r.split == "train"} == set(layout), seed
        assert any(r.split == "val" for r in out)


def test_fold_statistics_hand_computed() -> None:
    st = fold_statistics([0.5, 0.7, 0.9])
    assert st["mean"] == pytest.approx(0.7) and st["std"] == pytest.approx(0.2)
    half = 4.302652729911275 * 0.2 / np.sqrt(3)  # t(0.975, df=2)
    assert st["ci95"] == pytest.approx([0.7 - half, 0.7 + half])
    assert fold_statistics([0.5, 0.7, 0.9], bounds=(0.0, 1.0))["ci95"] == pytest.approx([0.7 - half, 1.0])
    one = fold_statistics([0.4])
    assert one["mean"] == 0.4 and one["std"] is None and one["ci95"] is None


@pytest.mark.slow
def test_cv_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=6, seconds=1.2)
    groups = tmp_path / "groups.csv"  # files i and i+1 of a class come from one source
    lines = ["path,group"] + [f"{p.relative_to(data).as_posix()},{p.parent.name}-src{int(p.stem.split('_')[1]) // 2}"
                              for p in sorted(data.rglob("*.wav"))]
    groups.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cv"
    code = main(["cv", str(data), "--model", "seed-cnn", "--folds", "3", "--groups", str(groups), "--out", str(out), "--duration", "1",
                 "--sample-rate", "8000", "--n-mels", "32", "--epochs", "2", "--batch-size", "8", "--augment-variants", "0",
                 "--seed", "1", "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_folds"] == 3 and summary["n_groups"] == 9
    st = summary["metrics"]["recording"]["macro_f1"]
    assert st["mean"] == pytest.approx(np.mean(st["values"])) and len(st["values"]) == 3
    assert set(summary["metrics"]["clip"]) >= {"accuracy", "balanced_accuracy", "macro_f1"}
    assert np.array(summary["pooled"]["recording"]["confusion_matrix"]).sum() == 18
    with open(out / "cv_results.csv") as fh:
        assert [r["fold"] for r in csv.DictReader(fh)] == ["1", "2", "3"]
    with open(out / "oof_predictions.csv") as fh:
        oof = list(csv.DictReader(fh))
    assert sorted(r["path"] for r in oof) == sorted(p.relative_to(data).as_posix() for p in data.rglob("*.wav"))
    group_of = dict(line.split(",") for line in lines[1:])
    test_groups: list[set[str]] = []
    for k in (1, 2, 3):
        with open(out / f"fold_{k}" / "split.csv") as fh:
            rows = list(csv.DictReader(fh))
        sides: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            sides[group_of[r["path"]]].add(r["split"])
        assert all(len(s) == 1 for s in sides.values()), f"fold {k}: a group on two sides"
        assert {s for v in sides.values() for s in v} == {"train", "val", "test"}
        test_groups.append({g for g, s in sides.items() if s == {"test"}})
        assert {r["path"] for r in oof if r["fold"] == str(k)} == {r["path"] for r in rows if r["split"] == "test"}
    assert set.union(*test_groups) == set(group_of.values()) and sum(map(len, test_groups)) == 9
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    assert json.loads((out / "cv_summary.json").read_text())["scheme"].startswith("stratified group 3-fold")
    fold_cfg = json.loads((out / "fold_1" / "model.json").read_text())["config"]
    seed_defaults = default_config("seed-cnn")  # options not given keep the model's own settings, as in 'train'
    assert fold_cfg["train"]["learning_rate"] == seed_defaults.train.learning_rate
    assert fold_cfg["train"]["epochs"] == 2 and fold_cfg["audio"]["sample_rate"] == 8000


def test_cv_command_rejects_fold_column_without_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_tone_dataset(tmp_path / "data", per_class=3, seconds=0.5)
    assert main(["cv", str(data), "--fold-column", "fold"]) == 2
    assert "--groups" in capsys.readouterr().err
