"""Name the kind of a recording: load a model folder once, predict many files, long or short.

A file is read as a stream of windows, each one model clip long (settings come from the model
folder, never from the caller), starting every ``hop_seconds``.  The default hop is one clip:
the windows are then exactly the clips training and ``evaluate`` cut and cache (same trailing-
piece rule, a file shorter than a clip is one window filled as ``audio.pad`` says), so ``predict`` answers what
``evaluate`` scores.  Each window gets class probabilities; the file's probabilities are their
mean weighted by the seconds of real audio each window holds
(:func:`~cultural_music.inference.timeline.recording_probabilities`, shared with ``evaluate``), and a
timeline of labelled segments shows where the label changes.  An answer whose confidence is below the
model's threshold (see :mod:`cultural_music.metrics.uncertainty`) is ``"uncertain"``.

This module does not import torch at import time: :class:`WindowClassifier` holds everything
but the forward pass, which :class:`Classifier` (PyTorch) and
:class:`~cultural_music.inference.onnx_backend.OnnxClassifier` (onnxruntime, no torch) supply.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cultural_music import __version__
from cultural_music.features.audio import audio_info
from cultural_music.config import Config
from cultural_music.errors import ModelLoadError, ParameterError
from cultural_music.features.compute import feature_batches
from cultural_music.metrics.classification import softmax
from cultural_music.features.prefetch import prefetch
from cultural_music.inference.timeline import Segment, build_timeline, recording_probabilities
from cultural_music.metrics.uncertainty import UNCERTAIN, check_threshold, is_uncertain


if TYPE_CHECKING:
    from cultural_music.training.artifact import Artifact

__all__ = ["Prediction", "Segment", "WindowClassifier", "Classifier", "predict_cultural_music_type",
           "format_prediction", "format_timeline", "DEFAULT_MODEL_DIR", "ONNX_FILE"]

DEFAULT_MODEL_DIR = "model"
ONNX_FILE = "model.onnx"  # the exported network in a model folder (inference.export writes it, onnx_backend reads it)
_BATCH = 4  # windows per forward pass (4 x 30 s at 22,050 Hz = 10.6 MB of audio)
_HEADLINE = ("n", "accuracy", "balanced_accuracy", "macro_f1", "baseline_accuracy")


@dataclass
class Prediction:
    """The answer for one file.

    ``label`` is ``"uncertain"`` when ``confidence`` (the top mean probability, 0..1) is below
    the threshold; ``top`` then names the candidates.  ``duration`` is in seconds.
    """

    path: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    n_clips: int
    duration: float
    top: list[tuple[str, float]] = field(default_factory=list)
    uncertain: bool = False
    timeline: list[Segment] = field(default_factory=list)
    status: str = "ok"
    threshold: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "path": self.path,
            "status": self.status,
            "label": self.label,
            "confidence": self.confidence,
            "uncertain": self.uncertain,
            "threshold": self.threshold,
            "top": [{"label": lab, "probability": p} for lab, p in self.top],
            "probabilities": self.probabilities,
            "n_clips": self.n_clips,
            "duration": self.duration,
            "timeline": [s.to_dict() for s in self.timeline],
        }


class WindowClassifier:
    """Everything a loaded model does except the forward pass (see :meth:`logits`).

    Attributes
    ----------
    classes
        Class names in output order.
    config
        The model's config (clip length in seconds, sample rate in Hz, features).
    threshold
        Confidence (0..1) below which an answer is ``"uncertain"``; 0 = never.  Set from
        ``model.json``; assign to change it for later calls.
    temperature
        Calibration temperature the logits are divided by.
    """

    backend = "none"

    def __init__(self, *, directory: str | Path, meta: dict[str, Any], config: Config) -> None:
        self.directory = Path(directory)
        self.meta = meta
        self.config = config
        self.classes: list[str] = list(meta["classes"])
        self.temperature = float(meta.get("calibration", {}).get("temperature", 1.0))
        self.threshold = check_threshold(float(meta.get("uncertain", {}).get("threshold", 0.0)), "model.json")

    @property
    def window_seconds(self) -> float:
        """Window length in seconds: the model's clip length."""
        return float(self.config.audio.clip_seconds)

    @property
    def default_hop(self) -> float:
        """Default start-to-start window distance in seconds: one window, so the windows are
        the clips ``evaluate`` scores."""
        return self.window_seconds

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits ``(n, n_classes)`` of features ``(n, n_mels, frames)``."""
        raise NotImplementedError

    def _hop(self, hop_seconds: float | None) -> float:
        if hop_seconds is None:
            return self.default_hop
        if not 0 < hop_seconds <= self.window_seconds:
            raise ParameterError(f"The 'hop_seconds' parameter of predict must be in (0, {self.window_seconds:g}] "
                                 f"(the model's window). Got {hop_seconds!r} instead.")
        return float(hop_seconds)

    def _threshold(self, threshold: float | None) -> float:
        return self.threshold if threshold is None else check_threshold(threshold)

    def _window_batches(self, path: str | Path, hop_seconds: float) -> Iterator[tuple[list[float], np.ndarray]]:
        """A file's windows as model input, batch by batch: ``(starts in seconds, features
        (n, rows, columns))`` from :func:`~cultural_music.features.compute.compute_features`, windows
        ``hop_seconds`` apart.  Override to feed another input (e.g. raw audio) to :meth:`logits`."""
        return feature_batches(path, self.config, batch_size=_BATCH, hop_seconds=hop_seconds)

    def window_probabilities(self, path: str | Path, *, hop_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stream a file: window starts in seconds ``(n,)`` and probabilities ``(n, n_classes)``.

        Decoding and features of the next batch of windows run in a background thread while the
        model runs on the current one; memory is bounded by a few batches whatever the file length.

        Raises
        ------
        AudioLoadError
            Unreadable, corrupt, empty or silent file (the message names it).
        """
        starts: list[float] = []
        probs: list[np.ndarray] = []
        for batch_starts, feats in prefetch(self._window_batches(path, self._hop(hop_seconds))):
            starts.extend(batch_starts)
            probs.append(softmax(self.logits(feats), self.temperature))
        return np.asarray(starts, dtype=np.float64), np.concatenate(probs)

    def recording_probabilities(self, starts: np.ndarray, window_proba: np.ndarray, duration: float,
                                aggregate: str = "mean") -> np.ndarray:
        """A file's probabilities float64 ``(n_classes,)`` from its windows' (starts in seconds
        ``(n,)``, probabilities ``(n, n_classes)``; ``duration`` in seconds): the mean weighted
        by real audio per window, :func:`~cultural_music.inference.timeline.recording_probabilities`."""
        return recording_probabilities(starts, window_proba, window=self.window_seconds, duration=duration, method=aggregate)

    def predict_proba(self, path: str | Path, *, hop_seconds: float | None = None) -> np.ndarray:
        """The file's class probabilities float ``(n_classes,)``, as :meth:`predict` gives them."""
        duration = float(audio_info(path).duration)
        starts, proba = self.window_probabilities(path, hop_seconds=hop_seconds)
        return self.recording_probabilities(starts, proba, duration).astype(np.float32)

    def predict_timeline(self, path: str | Path, *, hop_seconds: float | None = None,
                         threshold: float | None = None) -> list[Segment]:
        """Labelled segments covering the file from 0 to its duration (seconds)."""
        return self.predict(path, hop_seconds=hop_seconds, threshold=threshold).timeline

    def predict(self, path: str | Path, *, hop_seconds: float | None = None, threshold: float | None = None,
                aggregate: str = "mean") -> Prediction:
        """Label, confidence, probabilities, top-3 and timeline of one file.

        Parameters
        ----------
        path
            Audio file (WAV, FLAC, OGG, MP3), any length.
        hop_seconds
            Start-to-start window distance in seconds, in (0, window]; default one window
            (the clips ``evaluate`` scores); smaller gives a finer timeline.
        threshold
            Overrides :attr:`threshold` for this call (0 = never uncertain).
        aggregate
            How window probabilities make the file's (both weighted by real audio per window):
            ``"mean"`` (what ``evaluate`` scores) or ``"geometric"``.
        """
        thr = self._threshold(threshold)
        duration = float(audio_info(path).duration)
        starts, proba = self.window_probabilities(path, hop_seconds=hop_seconds)
        p = self.recording_probabilities(starts, proba, duration, aggregate)
        order = np.argsort(-p, kind="stable")
        conf = float(p[order[0]])
        unsure = is_uncertain(conf, thr)
        duration = max(duration, float(starts[-1]))
        return Prediction(
            path=str(path),
            label=UNCERTAIN if unsure else self.classes[order[0]],
            confidence=conf,
            probabilities={c: float(v) for c, v in zip(self.classes, p)},
            n_clips=len(proba),
            duration=duration,
            top=[(self.classes[i], float(p[i])) for i in order[:3]],
            uncertain=unsure,
            timeline=build_timeline(starts, proba, self.classes, window=self.window_seconds, duration=duration, threshold=thr),
            threshold=thr,
        )

    def describe(self) -> dict[str, Any]:
        """Model card: name, version, classes, settings, headline test metrics, threshold (JSON-able)."""
        m = self.meta
        sha = str(m.get("weights_sha256", ""))
        metrics = None
        metrics_path = self.directory / "metrics.json"
        if metrics_path.is_file():
            try:
                saved = json.loads(metrics_path.read_text(encoding="utf-8"))
                metrics = {k: saved[k] for k in _HEADLINE if k in saved}
            except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError):
                metrics = None
        a = self.config.audio
        return {
            "name": m.get("model", {}).get("name"),
            "version": f"{m.get('package_version', __version__)}+{sha[:12]}",
            "package_version": m.get("package_version"),
            "weights_sha256": sha,
            "created": m.get("created"),
            "backend": self.backend,
            "classes": list(self.classes),
            "settings": {"sample_rate": a.sample_rate, "window_seconds": a.clip_seconds, "default_hop_seconds": self.default_hop,
                         "n_mels": self.config.features.n_rows, "temperature": self.temperature},
            "metrics": metrics,
            "threshold": self.threshold,
            "uncertain": m.get("uncertain", {}),
        }


class Classifier(WindowClassifier):
    """A model folder run with PyTorch: ``predict``, ``predict_proba``, ``predict_timeline``.

    Parameters
    ----------
    artifact
        A loaded model folder (see :meth:`load`).
    """

    backend = "torch"

    def __init__(self, artifact: "Artifact") -> None:
        super().__init__(directory=artifact.directory, meta=artifact.meta, config=artifact.config)
        self.artifact = artifact
        _speed_up_inference(artifact.model)

    @classmethod
    def load(cls, model_dir: str | Path = DEFAULT_MODEL_DIR) -> "Classifier":
        """Load and verify a model folder (see :func:`~cultural_music.training.artifact.load_artifact`)."""
        from cultural_music.training.artifact import load_artifact

        return cls(load_artifact(model_dir))

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits ``(n, n_classes)`` of features ``(n, n_mels, frames)``."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(features))[:, None]  # (n, 1, rows, cols): already channels-last too
        with torch.inference_mode():
            return self.artifact.model(x).numpy()


def _speed_up_inference(model: Any) -> None:
    """Same results, about 2.5x faster on CPU: channels-last weights (fast max-pool and conv
    kernels) and in-place activations where nothing else reads their input (right after a
    convolution, linear or batch-norm layer inside an ``nn.Sequential``, whose output is new)."""
    import torch
    from torch import nn

    fresh = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
    model.to(memory_format=torch.channels_last)
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            children = list(seq.children())
            for before, child in zip(children, children[1:]):
                if isinstance(before, fresh) and isinstance(child, (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Hardtanh)):
                    child.inplace = True


@functools.lru_cache(maxsize=4)
def _cached_classifier(model_dir: str, stamp: float) -> Classifier:
    return Classifier.load(model_dir)


def predict_cultural_music_type(path: str | Path, model_dir: str | Path = DEFAULT_MODEL_DIR) -> tuple[str, float]:
    """Kind of music of one recording and the model's confidence in it (0..1).

    The label is ``"uncertain"`` when the confidence is below the model's threshold.  The model
    folder defaults to ``./model``; it is loaded once and reused by later calls.
    """
    d = Path(model_dir).resolve()
    meta = d / "model.json"
    stamp = meta.stat().st_mtime if meta.exists() else 0.0
    pred = _cached_classifier(str(d), stamp).predict(path)
    return pred.label, pred.confidence


def format_prediction(pred: Prediction) -> str:
    """``🎵 <file name>: <label> (<xx.xx>% confidence)``, or for an uncertain answer
    ``🎵 <file name>: uncertain (top: A 41.20%, B 38.05%, C 10.11%)``."""
    name = Path(pred.path).name
    if pred.uncertain:
        return f"🎵 {name}: {UNCERTAIN} (top: " + ", ".join(f"{lab} {p * 100:.2f}%" for lab, p in pred.top) + ")"
    return f"🎵 {name}: {pred.label} ({pred.confidence * 100:.2f}% confidence)"


def format_timeline(segments: list[Segment]) -> str:
    """One indented line per segment: ``  0:00:00.0-0:00:22.5  Deuda (87.10%)``."""
    return "\n".join(f"  {_clock(s.start)}-{_clock(s.end)}  {s.label} ({s.confidence * 100:.2f}%)" for s in segments)


def _clock(seconds: float) -> str:
    h, rest = divmod(round(seconds, 1), 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}"
