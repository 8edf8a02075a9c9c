"""A model folder in a few seconds for the prediction tests: a seed-cnn fitted directly on the
features of generated sounds (no pipeline run), saved with :func:`save_artifact`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cultural_music.training.artifact import save_artifact
from cultural_music.config import Config
from cultural_music.features.compute import compute_features
from cultural_music.models import build_model

TINY = Config().replace(
    audio={"sample_rate": 8000, "clip_seconds": 1.0},
    features={"n_fft": 256, "hop_length": 64, "n_mels": 32},
    augment={"n_variants": 0},
    train={"seed": 0},
)
SR = 8000
KWARGS = {"channels": (8, 16, 32), "dense": 32}


def sine(freq: float) -> Callable[[np.random.Generator, float], np.ndarray]:
    """A sound maker: a jittered sine at ``freq`` Hz with a little noise."""

    def make(g: np.random.Generator, seconds: float) -> np.ndarray:
        t = np.arange(int(seconds * SR)) / SR
        y = 0.5 * np.sin(2 * np.pi * freq * g.uniform(0.97, 1.03) * t) + 0.01 * g.standard_normal(len(t))
        return y.astype(np.float32)

    return make


def train_tiny_model(out: Path, sounds: dict[str, Callable[[np.random.Generator, float], np.ndarray]], *,
                     per_class: int = 10, steps: int = 40, threshold: float = 0.0, seed: int = 0) -> Path:
    """Fit a seed-cnn on ``per_class`` one-clip sounds per class and write a model folder."""
    g = np.random.default_rng(seed)
    torch.manual_seed(seed)
    classes = sorted(sounds)
    n = TINY.audio.clip_samples
    clips = np.stack([sounds[c](g, 1.0)[:n] for c in classes for _ in range(per_class)])
    y = torch.tensor([i for i in range(len(classes)) for _ in range(per_class)])
    x = torch.from_numpy(compute_features(clips, TINY))[:, None]
    model = build_model("seed-cnn", n_classes=len(classes), n_mels=TINY.features.n_mels, **KWARGS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is faster on a shared machine
    try:
        model.train()
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return save_artifact(out, model, classes=classes, config=TINY, model_name="seed-cnn", model_kwargs=KWARGS,
                         extra={"calibration": {"temperature": 1.0, "method": "none"},
                                "uncertain": {"threshold": threshold, "method": "fixed (test)"}})


def demo_sound(kind: str) -> Callable[[np.random.Generator, float], np.ndarray]:
    """A sound maker: a synthetic demo recording of ``kind`` at :data:`SR` Hz."""
    from cultural_music.data.demo_data import synthesize_recording

    def make(g: np.random.Generator, seconds: float) -> np.ndarray:
        return synthesize_recording(kind, seconds=seconds, sample_rate=SR, rng=g)

    return make


SOUNDS = {"Deuda": demo_sound("Deuda"), "Newari": demo_sound("Newari"), "beep": sine(2400.0)}


def shared_model(base: Path) -> Path:
    """The tiny model trained on :data:`SOUNDS`, trained once per test session under ``base``
    (pass ``tmp_path_factory.getbasetemp()``).  Copy it before changing anything in it."""
    out = base / "tiny_model"
    if not (out / "model.json").is_file():
        train_tiny_model(out, SOUNDS)
    return out
