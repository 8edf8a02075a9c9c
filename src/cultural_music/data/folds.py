"""Cross-validation folds by group: stratified group k-fold, predefined folds, leave one group out.

Every function here returns one fold index per recording, and recordings of one group always
share a fold, so no group (recording, source, speaker) is ever on two sides of a split.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from cultural_music.data.dataset import Recording, holdout_groups
from cultural_music.errors import DatasetError, ParameterError

__all__ = ["group_kfold", "leave_one_group_out", "folds_from_column", "validation_split"]


def _check_groups(recordings: list[Recording], n_folds: int) -> None:
    n_groups = len({r.group for r in recordings})
    if n_groups < n_folds:
        raise DatasetError(f"only {n_groups} recording group(s) for {n_folds} folds; use at most {n_groups} folds")
    largest = max(Counter(r.label for r in recordings).values())  # scikit-learn's limit on stratified folds
    if largest < n_folds:
        raise DatasetError(f"the largest class has {largest} recording(s), too few for {n_folds} stratified folds; "
                           f"use at most {largest} folds")


def group_kfold(recordings: list[Recording], *, n_folds: int, seed: int) -> tuple[list[int], list[str]]:
    """Stratified group k-fold (scikit-learn ``StratifiedGroupKFold``, shuffled with ``seed``).

    Returns
    -------
    folds, names
        Fold index (0-based) of every recording, and the fold names ``"1" ... "k"``.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_folds < 2:
        raise ParameterError(f"The 'folds' parameter must be >= 2 (or 0 for leave one group out). Got {n_folds} instead.")
    _check_groups(recordings, n_folds)
    y = [r.label for r in recordings]
    groups = [r.group for r in recordings]
    folds = [-1] * len(recordings)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer groups than folds: run_cv reports the folds lacking it
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(y)), y, groups))
    for k, (_, test_idx) in enumerate(splits):
        for i in test_idx:
            folds[i] = k
    return folds, [str(k + 1) for k in range(n_folds)]


def leave_one_group_out(recordings: list[Recording]) -> tuple[list[int], list[str]]:
    """One fold per group (sorted by name); fold names are the group names."""
    names = sorted({r.group for r in recordings})
    if len(names) < 2:
        raise DatasetError(f"leave one group out needs at least 2 groups; found {len(names)}")
    index = {g: i for i, g in enumerate(names)}
    return [index[r.group] for r in recordings], [g.removeprefix("g:") for g in names]


def folds_from_column(recordings: list[Recording], csv_path: str | Path, column: str, root: Path) -> tuple[list[int], list[str]]:
    """Predefined folds from a CSV column (e.g. ESC's official ``fold``), keyed by ``path``.

    ``path`` is relative to the data folder ``root`` (or absolute).

    Raises
    ------
    DatasetError
        The CSV has no such column, a recording has no row or an empty value, or one group has
        recordings in two folds (that would leak).
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames or column not in reader.fieldnames:
                raise DatasetError(f"{csv_path}: needs columns 'path' and '{column}' (has: {', '.join(reader.fieldnames or [])})")
            values = {}
            for row in reader:
                key = Path(row["path"])
                if key.is_absolute():
                    try:
                        key = key.resolve().relative_to(root)
                    except ValueError:
                        pass
                values[key.as_posix()] = (row[column] or "").strip()
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read ({err.strerror})") from err
    missing = [r.rel_path for r in recordings if not values.get(r.rel_path)]
    if missing:
        raise DatasetError(f"{csv_path}: {len(missing)} file(s) have no value in column '{column}' (first: {missing[0]})")
    by_group: dict[str, set[str]] = {}
    for r in recordings:
        by_group.setdefault(r.group, set()).add(values[r.rel_path])
    split = {g: v for g, v in by_group.items() if len(v) > 1}
    if split:
        g, v = next(iter(split.items()))
        raise DatasetError(f"{csv_path}: group '{g.removeprefix('g:')}' is in several folds ({', '.join(sorted(v))}) of column '{column}'")
    names = sorted({values[r.rel_path] for r in recordings}, key=lambda s: (len(s), s))
    if len(names) < 2:
        raise DatasetError(f"{csv_path}: column '{column}' has {len(names)} distinct value(s); cross-validation needs at least 2")
    index = {n: i for i, n in enumerate(names)}
    return [index[values[r.rel_path]] for r in recordings], names


def validation_split(rest: list[Recording], *, val_fraction: float, seed: int) -> list[Recording]:
    """Split the non-test recordings of a fold into ``train`` / ``val`` by group, stratified.

    About ``val_fraction`` of the groups go to validation (at least one group, never all).  A
    class whose groups all landed in validation gets one of them back in training, so every
    class is learnt.
    """
    n_groups = len({r.group for r in rest})
    if n_groups < 2:
        raise DatasetError(f"a fold leaves {n_groups} group(s) for training + validation; at least 2 are needed")
    y = [r.label for r in rest]
    val_groups = holdout_groups(rest, val_fraction, seed)
    for label in sorted(set(y)):
        groups = sorted({r.group for r in rest if r.label == label})
        if all(g in val_groups for g in groups) and len(val_groups) > 1:
            val_groups.discard(groups[0])
    return [replace(r, split="val" if r.group in val_groups else "train") for r in rest]
