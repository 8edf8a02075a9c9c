"""Shared fixtures: a seeded generator and tiny generated audio files."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tone(freq: float, seconds: float, sr: int = 8000, *, rng: np.random.Generator | None = None, noise: float = 0.01) -> np.ndarray:
    """A sine at ``freq`` Hz with a little noise, float32 ``(samples,)``."""
    t = np.arange(int(seconds * sr)) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    if rng is not None:
        y = y + noise * rng.standard_normal(len(t))
    return y.astype(np.float32)


def write(path: Path, y: np.ndarray, sr: int = 8000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, **kw)
    return path


Sound = Callable[[np.random.Generator, float], np.ndarray]
"""A sound maker: ``(generator, seconds) -> float32 (samples,)``."""
CORRUPT = b"RIFF\x00\x00garbage, not a wave file" * 4
"""The bytes of a ``.wav`` that no decoder reads."""


def write_folder(root: Path, files: Mapping[str, tuple[Sound, float] | bytes | str], *, sr: int = 8000,
                 seed: int = 0) -> Path:
    """``root/<relative path>`` for each entry of ``files``, in order: a ``(sound, seconds)`` pair
    is made with one generator seeded ``seed`` and written at ``sr`` Hz; bytes or text are written
    as they are (a corrupt file, a note).  Returns ``root``."""
    g = np.random.default_rng(seed)
    for rel, what in files.items():
        path = root / rel
        if isinstance(what, (bytes, str)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(what.encode() if isinstance(what, str) else what)
        else:
            make, seconds = what
            write(path, make(g, seconds), sr)
    return root


def jittered_tone(freq: float, sr: int = 8000) -> Sound:
    """A sound maker: :func:`tone` at ``freq`` Hz times a random 0.97..1.03, with a little noise."""
    return lambda g, seconds: tone(freq * g.uniform(0.97, 1.03), seconds, sr, rng=g)


def make_tone_dataset(root: Path, *, classes: dict[str, float] | None = None, per_class: int = 6, seconds: float = 1.0,
                      sr: int = 8000, seed: int = 0) -> Path:
    """``root/<class>/<i>.wav``: each class a different sine frequency, random jitter per file."""
    classes = classes or {"low": 300.0, "mid": 900.0, "high": 2400.0}
    files = {f"{name}/{name}_{i}.wav": (jittered_tone(f, sr), seconds) for name, f in classes.items() for i in range(per_class)}
    return write_folder(root, files, sr=sr, seed=seed)


@pytest.fixture
def tone_dataset(tmp_path: Path) -> Path:
    return make_tone_dataset(tmp_path / "data")


def random_clip_dataset(root: Path, n: int, name: str, *, rows: int = 16, cols: int = 16):
    """A ClipDataset of ``n`` random feature maps ``(rows, cols)`` saved as one ``.npy`` under
    ``root``; odd clips (class 1) are brighter, so a model can learn them."""
    from cultural_music.training.clip_dataset import ClipDataset, ClipItem

    rng = np.random.default_rng(n)
    feats = rng.random((n, rows, cols), dtype=np.float32)
    labels = np.arange(n) % 2
    feats[labels == 1] += 0.5
    path = root / f"{name}.npy"
    np.save(path, feats)
    return ClipDataset([ClipItem(path, i, int(labels[i]), f"{name}/{i}.wav") for i in range(n)])
