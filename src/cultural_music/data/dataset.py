"""Scan a folder-per-class data set and split it without leakage.

Layout: ``DATA_DIR/<Class>/**/<file>.(wav|mp3|flac|ogg)``; the class is the name of the
first-level subfolder, files may sit deeper.  A *group* keeps files together in a split: by
default each recording is its own group; an optional CSV ``path,group`` joins several files of
one song, performer or source recording.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cultural_music.atomic import atomic_write_text
from cultural_music.errors import DatasetError

__all__ = [
    "AUDIO_EXTENSIONS",
    "Recording",
    "Skipped",
    "DatasetScan",
    "scan_folder",
    "read_groups_csv",
    "split_recordings",
    "write_split_csv",
    "read_split_csv",
    "file_sha256",
]

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Recording:
    """One audio file of the data set.

    Attributes
    ----------
    path
        Absolute path of the file.
    rel_path
        Path relative to the data folder, with ``/`` separators (stable across machines).
    label
        Class name (first-level subfolder).
    group
        Recordings with the same group always land on the same side of a split.
    split
        ``"train"``, ``"val"``, ``"test"`` or ``""`` before splitting.
    """

    path: Path
    rel_path: str
    label: str
    group: str
    split: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why (shown to the user, never silent)."""

    path: str
    reason: str


@dataclass
class DatasetScan:
    """Result of :func:`scan_folder`: usable recordings, skipped files and the class list."""

    root: Path
    recordings: list[Recording]
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Sorted class names that have at least one recording."""
        return sorted({r.label for r in self.recordings})


def scan_folder(data_dir: str | Path, *, min_classes: int = 2) -> DatasetScan:
    """List the audio files of a folder-per-class data set.

    Parameters
    ----------
    data_dir
        Folder whose first-level subfolders are the classes.
    min_classes
        Fewer classes than this is a :class:`DatasetError` (training needs 2; an external
        evaluation set may have 1).

    Returns
    -------
    DatasetScan
        Recordings sorted by relative path; files with other extensions, unreadable entries and
        symlink loops are listed in ``skipped``; empty class folders in ``warnings`` / errors.
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: is not a folder (expected one subfolder per class)")
    root = root.resolve()
    recordings: list[Recording] = []
    skipped: list[Skipped] = []
    empty: list[str] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for loose in sorted(p for p in root.iterdir() if p.is_file() and _is_audio(p)):
        skipped.append(Skipped(str(loose), "audio file directly in the data folder has no class folder"))
    for class_dir in class_dirs:
        found = 0
        for path in _walk_files(class_dir, skipped):
            rel = path.relative_to(root).as_posix() if _is_under(path, root) else f"{class_dir.name}/{path.name}"
            if not _is_audio(path):
                if not path.name.startswith(".") and path.suffix.lower() not in (".csv", ".txt", ".md", ".json"):
                    skipped.append(Skipped(str(path), f"unsupported file type '{path.suffix or '(none)'}'"))
                continue
            special = _special_reason(path)
            if special:
                skipped.append(Skipped(str(path), special))
                continue
            recordings.append(Recording(path=path, rel_path=rel, label=class_dir.name, group=rel))
            found += 1
        if found == 0:
            empty.append(class_dir.name)
    scan = DatasetScan(root=root, recordings=sorted(recordings, key=lambda r: r.rel_path), skipped=skipped)
    for name in empty:
        scan.warnings.append(f"class folder '{name}' has no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    if len(scan.classes) < min_classes:
        raise DatasetError(
            f"{root}: found {len(scan.classes)} class folder(s) with audio "
            f"({', '.join(scan.classes) or 'none'}); at least {min_classes} needed. "
            "Put each kind of audio in its own subfolder: DATA_DIR/<Class>/<file>.wav"
        )
    return scan


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _special_reason(path: Path) -> str | None:
    """Why ``path`` (after symlinks) cannot be read as a file, or ``None`` for a regular file.

    Only ``stat``: a FIFO is never opened (opening one for reading blocks until a writer comes).
    """
    try:
        mode = path.stat().st_mode
    except OSError as err:
        return f"cannot read file ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({special_file_kind(mode)})"


def special_file_kind(mode: int) -> str:
    """What a non-regular, non-folder file is, from its ``st_mode``: ``"FIFO"``, ``"device"``, ..."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "socket" if stat.S_ISSOCK(mode) else "special file"


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _walk_files(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """All files under ``folder`` (following symlinks, detecting loops), sorted."""
    out: list[Path] = []
    seen_dirs: set[str] = set()

    def on_error(err: OSError) -> None:
        skipped.append(Skipped(str(err.filename), f"cannot read folder: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=on_error):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            skipped.append(Skipped(dirpath, "symlink loop: folder already visited"))
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() and not path.exists():
                skipped.append(Skipped(str(path), "broken symlink"))
                continue
            out.append(path)
    return out


def read_groups_csv(csv_path: str | Path, scan: DatasetScan) -> DatasetScan:
    """Assign groups from a CSV with columns ``path,group`` (extra columns are ignored).

    ``path`` is relative to the data folder (or absolute).  Recordings not in the CSV keep their
    own path as group; CSV rows naming no scanned file are ignored with a warning.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames or "group" not in reader.fieldnames:
                raise DatasetError(f"{csv_path}: groups CSV needs a header with 'path' and 'group' columns")
            mapping = {}
            for row in reader:
                key = Path(row["path"]).as_posix()
                if Path(key).is_absolute():
                    try:
                        key = Path(key).resolve().relative_to(scan.root).as_posix()
                    except ValueError:
                        pass
                mapping[key] = str(row["group"])
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read groups CSV ({err.strerror})") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{csv_path}: not a readable CSV ({err})") from err
    known = {r.rel_path for r in scan.recordings}
    unmatched = [k for k in mapping if k not in known]
    if unmatched:
        scan.warnings.append(f"{csv_path}: {len(unmatched)} row(s) name no file in the data folder (ignored)")
    scan.recordings = [
        replace(r, group="g:" + mapping[r.rel_path]) if r.rel_path in mapping else r for r in scan.recordings
    ]
    return scan


def split_recordings(
    recordings: list[Recording],
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
) -> list[Recording]:
    """Stratified, seeded train / val / test split by group (no group on two sides).

    When every group holds one class (a recording, a song): within each class, groups are
    shuffled with the seed and ``round(fraction * n_groups)`` (at least 1) go to test and to
    validation; every class needs at least 3 groups so that each side sees it.  When groups span
    classes (a performer or speaker heard in several kinds), whole groups are held out with
    stratified group k-fold (:func:`holdout_groups`): about ``test_fraction`` of the data for
    test, then about ``val_fraction`` for validation, and every class must still reach all
    three sides.

    Raises
    ------
    DatasetError
        If a class has fewer than 3 groups, or (shared groups) misses a side; the message says
        which class and why.
    """
    group_labels: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in recordings:
        group_labels[rec.group][rec.label] += 1
    if any(len(counts) > 1 for counts in group_labels.values()):
        return _split_shared_groups(recordings, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    by_class: dict[str, list[str]] = defaultdict(list)
    for group, counts in group_labels.items():
        by_class[max(sorted(counts), key=lambda c: counts[c])].append(group)
    too_few = {c: len(g) for c, g in by_class.items() if len(g) < 3}
    if too_few:
        parts = [f"'{c}' has {n} recording group(s)" for c, n in sorted(too_few.items())]
        raise DatasetError(
            "cannot split without leakage: " + "; ".join(parts) + ". Each class needs at least 3 "
            "separate recordings (or groups) so that train, validation and test each get one."
        )
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        order = rng.permutation(len(groups))
        n = len(groups)
        n_test = max(1, int(round(test_fraction * n)))
        n_val = max(1, int(round(val_fraction * n)))
        if n_test + n_val > n - 1:
            n_test, n_val = 1, 1
        for rank, idx in enumerate(order):
            side = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            assignment[groups[idx]] = side
    return [replace(r, split=assignment[r.group]) for r in recordings]


def holdout_groups(recordings: list[Recording], fraction: float, seed: int) -> set[str]:
    """About ``fraction`` of the recordings, as whole groups: the first fold of a shuffled
    stratified group k-fold (scikit-learn ``StratifiedGroupKFold``, ``k = round(1 / fraction)``,
    at most one fold per group), so the held-out part has roughly the class mix of the whole."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [r.group for r in recordings]
    y = [r.label for r in recordings]
    n_groups = len(set(groups))
    if n_groups < 2:
        raise DatasetError(f"cannot hold out part of {n_groups} group(s) without leakage: at least 2 groups are needed")
    largest_class = max(Counter(y).values())  # scikit-learn's limit on n_splits
    n_splits = max(2, min(int(round(1.0 / fraction)), n_groups, largest_class))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only n members": still split by group
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(splitter.split(np.zeros(len(y)), y, groups))
    return {groups[int(i)] for i in held}


def _split_shared_groups(recordings: list[Recording], *, val_fraction: float, test_fraction: float,
                         seed: int) -> list[Recording]:
    """:func:`split_recordings` for groups that span classes (e.g. one speaker, every digit)."""
    n_groups = len({r.group for r in recordings})
    if n_groups < 3:
        raise DatasetError(f"cannot split without leakage: the groups span classes and there are only {n_groups}; at "
                           "least 3 groups are needed so that train, validation and test each get whole groups")
    test = holdout_groups(recordings, test_fraction, seed)
    rest = [r for r in recordings if r.group not in test]
    val = holdout_groups(rest, val_fraction / max(1.0 - test_fraction, 1e-9), seed + 1)
    out = [replace(r, split="test" if r.group in test else "val" if r.group in val else "train") for r in recordings]
    sides: dict[str, set[str]] = defaultdict(set)
    for r in out:
        sides[r.label].add(r.split)
    lacking = {c: sorted(set(SPLITS) - s) for c, s in sorted(sides.items()) if set(SPLITS) - s}
    if lacking:
        parts = [f"'{c}' has no files on the {'/'.join(m)} side" for c, m in lacking.items()]
        raise DatasetError(
            "cannot split without leakage: " + "; ".join(parts) + f" (groups span classes; {n_groups} groups). Each class needs files in at least 3 groups so that train, validation and test each get one."
        )
    return out


def write_split_csv(path: str | Path, recordings: list[Recording]) -> None:
    """Write ``path,label,group,split`` rows (paths relative to the data folder) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "group", "split"])
    for r in recordings:
        writer.writerow([r.rel_path, r.label, r.group, r.split])
    atomic_write_text(path, buf.getvalue())


def read_split_csv(path: str | Path, data_dir: str | Path) -> list[Recording]:
    """Read a ``split.csv`` back into recordings rooted at ``data_dir``."""
    root = Path(data_dir)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row.get("split") not in SPLITS:
            raise DatasetError(f"{path}: bad split value {row.get('split')!r} for {row.get('path')!r}")
    return [
        Recording(path=root / r["path"], rel_path=r["path"], label=r["label"], group=r["group"], split=r["split"])
        for r in rows
    ]


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the content key of the feature cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
