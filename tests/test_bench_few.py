"""The few-labels protocol of bench/accuracy.py (``--per-class K``, issue 17 item 6): K seeded
training recordings per class, the test fold untouched."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import accuracy  # noqa: E402

from cultural_music.config import Config  # noqa: E402
from cultural_music.data.dataset import Recording  # noqa: E402


def _recs() -> tuple[list[Recording], dict[str, str]]:
    """3 classes x 4 folds; class c has 6 + 2c recordings per fold, each its own group."""
    recs, folds = [], {}
    for c in range(3):
        for f in range(1, 5):
            for i in range(6 + 2 * c):
                rel = f"c{c}/f{f}_{i}.wav"
                recs.append(Recording(Path("/x") / rel, rel, f"c{c}", f"g-{rel}", None))
                folds[rel] = str(f)
    return recs, folds


def test_k_per_class_outside_the_test_fold_and_the_test_fold_untouched() -> None:
    recs, folds = _recs()
    for test in ("1", "3"):
        kept = accuracy.per_class_subset(recs, folds, test, 5, seed=0)
        train = [r for r in kept if folds[r.rel_path] != test]
        assert Counter(r.label for r in train) == {"c0": 5, "c1": 5, "c2": 5}
        assert {r.rel_path for r in kept if folds[r.rel_path] == test} == {r.rel_path for r in recs if folds[r.rel_path] == test}
    # more than a class holds: all of it
    big = accuracy.per_class_subset(recs, folds, "1", 20, seed=0)
    assert Counter(r.label for r in big if folds[r.rel_path] != "1") == {"c0": 18, "c1": 20, "c2": 20}


def test_subsets_are_seeded_and_nested_in_k() -> None:
    recs, folds = _recs()
    paths = lambda rs: {r.rel_path for r in rs}  # noqa: E731
    a = accuracy.per_class_subset(recs, folds, "2", 5, seed=0)
    assert paths(a) == paths(accuracy.per_class_subset(recs, folds, "2", 5, seed=0))
    assert paths(a) != paths(accuracy.per_class_subset(recs, folds, "2", 5, seed=1))
    assert paths(a) < paths(accuracy.per_class_subset(recs, folds, "2", 10, seed=0))
    # the draw spans the training folds, not the first files of each class
    assert len({folds[r.rel_path] for r in a if folds[r.rel_path] != "2"}) > 1


def test_the_split_keeps_the_test_fold_as_test_and_splits_only_the_kept() -> None:
    recs, folds = _recs()
    args = argparse.Namespace(val="groups")
    out = accuracy.per_class_split(folds, "4", 10, 0, args, Config())(recs)
    by = Counter((r.split, r.label) for r in out)
    for c in ("c0", "c1", "c2"):
        assert by[("train", c)] + by[("val", c)] == 10 and by[("val", c)] >= 1
    assert {r.rel_path for r in out if r.split == "test"} == {r.rel_path for r in recs if folds[r.rel_path] == "4"}
