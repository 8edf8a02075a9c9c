"""A model folder for the prediction benchmarks: the default settings (22,050 Hz, 30 s clips,
128 mels, seed-cnn), fitted for a few steps on synthetic tones, plus its ``model.onnx``.

Speed and memory do not depend on how well the model is trained, so a few optimiser steps on
tones are enough; the folder is written by the same ``save_artifact`` as training, then
exported with ``export_onnx``.  Reused when it already exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = {"low": 220.0, "mid": 880.0, "high": 3520.0}


def ensure_bench_model(out: Path, *, steps: int = 8, seed: int = 0) -> Path:
    """Write (once) a default-config model folder with ``model.onnx`` under ``out``."""
    if (out / "model.json").is_file() and (out / "model.onnx").is_file():
        return out
    import torch

    from cultural_music.training.artifact import save_artifact
    from cultural_music.config import Config
    from cultural_music.features.compute import compute_features
    from cultural_music.models import build_model
    from cultural_music.inference.export import export_onnx

    cfg = Config()
    g = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sr, n = cfg.audio.sample_rate, cfg.audio.clip_samples
    t = np.arange(n) / sr
    names = sorted(CLASSES)
    clips = np.stack([0.5 * np.sin(2 * np.pi * CLASSES[c] * g.uniform(0.95, 1.05) * t) + 0.01 * g.standard_normal(n)
                      for c in names for _ in range(2)]).astype(np.float32)
    y = torch.tensor([i for i in range(len(names)) for _ in range(2)])
    x = torch.from_numpy(compute_features(clips, cfg))[:, None]
    model = build_model(cfg.train.model, n_classes=len(names), n_rows=cfg.features.n_rows)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    save_artifact(out, model, classes=names, config=cfg, model_name=cfg.train.model,
                  extra={"calibration": {"temperature": 1.0, "method": "none"},
                         "uncertain": {"threshold": 0.0, "method": "none (benchmark model)"}})
    export_onnx(out)
    return out


def ensure_default_model(out: Path, *, seconds: float = 30.0, seed: int = 0) -> Path:
    """Write (once) a model folder of the DEFAULT kind (frozen musicnn + head, its default
    settings, ``seconds`` s clips) trained on synthetic tones, plus its whole-network ``model.onnx``."""
    if (out / "model.json").is_file() and (out / "model.onnx").is_file():
        return out
    import soundfile as sf

    from cultural_music.models import default_config
    from cultural_music.inference.export import export_onnx
    from cultural_music.training.pipeline import run_training

    g = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    data = out.parent / "default-model-data"
    for c, f in CLASSES.items():
        (data / c).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            y = 0.5 * np.sin(2 * np.pi * f * g.uniform(0.95, 1.05) * t) + 0.01 * g.standard_normal(len(t))
            sf.write(data / c / f"{c}_{i}.wav", y.astype(np.float32), sr)
    cfg = default_config("musicnn").replace(audio={"clip_seconds": seconds}, train={"seed": seed})
    run_training(data, out, cfg, cache_dir=out.parent / "default-model-cache", workers=1, progress=False, log=lambda s: None)
    export_onnx(out)
    return out
