"""Name the kind of a recording: load a model folder once, predict many files.

A file is cut into clips exactly as in training (settings come from the model folder, never
from the caller); its label is the class with the highest mean clip probability.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifact import Artifact, load_artifact
from .audio import iter_clips
from .metrics import softmax
from .features import compute_features

__all__ = ["Prediction", "Classifier", "predict_cultural_music_type", "format_prediction", "DEFAULT_MODEL_DIR"]

DEFAULT_MODEL_DIR = "model"
_BATCH = 8


@dataclass
class Prediction:
    """The answer for one file: label, confidence (0..1), every class probability."""

    path: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    n_clips: int
    duration: float
    top: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "path": self.path,
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "top": [{"label": lab, "probability": p} for lab, p in self.top],
            "n_clips": self.n_clips,
            "duration": self.duration,
        }


class Classifier:
    """A loaded model: ``predict(path)``, ``predict_proba(path)``.

    Parameters
    ----------
    artifact
        A loaded model folder (see :meth:`load`).
    """

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.classes: list[str] = list(artifact.classes)
        self.config = artifact.config
        self.temperature = float(artifact.meta.get("calibration", {}).get("temperature", 1.0))

    @classmethod
    def load(cls, model_dir: str | Path = DEFAULT_MODEL_DIR) -> "Classifier":
        """Load and verify a model folder (see :func:`~cultural_music.artifact.load_artifact`)."""
        return cls(load_artifact(model_dir))

    @torch.no_grad()
    def clip_probabilities(self, path: str | Path) -> tuple[np.ndarray, np.ndarray, float]:
        """Per-clip probabilities ``(n_clips, n_classes)``, clip starts (s) and file duration (s)."""
        cfg = self.config
        sr = cfg.audio.sample_rate
        starts: list[float] = []
        probs: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        end = 0.0

        def flush() -> None:
            feats = torch.from_numpy(compute_features(np.stack(batch), cfg))[:, None]
            probs.append(softmax(self.artifact.model(feats).numpy(), self.temperature))
            batch.clear()

        for start, clip in iter_clips(path, cfg.audio):
            starts.append(start)
            batch.append(clip)
            end = start + cfg.audio.clip_seconds
            if len(batch) == _BATCH:
                flush()
        if batch:
            flush()
        return np.concatenate(probs), np.asarray(starts, dtype=np.float32), end

    def predict_proba(self, path: str | Path) -> np.ndarray:
        """Mean class probabilities over the file's clips ``(n_classes,)``."""
        return self.clip_probabilities(path)[0].mean(axis=0)

    def predict(self, path: str | Path) -> Prediction:
        """Label, confidence and probabilities of one file."""
        from .audio import audio_info

        clip_p, _, _ = self.clip_probabilities(path)
        p = clip_p.mean(axis=0)
        order = np.argsort(-p)
        return Prediction(
            path=str(path),
            label=self.classes[order[0]],
            confidence=float(p[order[0]]),
            probabilities={c: float(v) for c, v in zip(self.classes, p)},
            n_clips=len(clip_p),
            duration=float(audio_info(path).duration),
            top=[(self.classes[i], float(p[i])) for i in order[:3]],
        )


@functools.lru_cache(maxsize=4)
def _cached_classifier(model_dir: str, stamp: float) -> Classifier:
    return Classifier.load(model_dir)


def predict_cultural_music_type(path: str | Path, model_dir: str | Path = DEFAULT_MODEL_DIR) -> tuple[str, float]:
    """Kind of music of one recording and the model's confidence in it (0..1).

    The model folder defaults to ``./model``; it is loaded once and reused by later calls.
    """
    d = Path(model_dir).resolve()
    meta = d / "model.json"
    stamp = meta.stat().st_mtime if meta.exists() else 0.0
    pred = _cached_classifier(str(d), stamp).predict(path)
    return pred.label, pred.confidence


def format_prediction(pred: Prediction) -> str:
    """``🎵 <file name>: <label> (<xx.xx>% confidence)``."""
    return f"🎵 {Path(pred.path).name}: {pred.label} ({pred.confidence * 100:.2f}% confidence)"
