"""Settings fitted after training on held-out answers: calibration, then the "uncertain" threshold.

The held-out answers are the validation split's (an epoch-trained model) or the out-of-fold
answers of the head search (a convex head, :mod:`.head_fit`).  Recording probabilities are made
by the one aggregation ``predict`` uses (:func:`~cultural_music.metrics.recording.recordings_from_clips`:
clips weighted by their seconds of real audio).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cultural_music.config import Config
from cultural_music.features.extract import ExtractResult
from cultural_music.metrics.classification import softmax
from cultural_music.metrics.recording import recordings_from_clips

__all__ = ["recording_level", "fit_after_training"]


def recording_level(rels: list[str], logits: np.ndarray, labels: np.ndarray, extracted: ExtractResult, cfg: Config,
                    temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Recording probabilities ``(n_rec, k)`` and labels ``(n_rec,)`` from clip logits ``(n, k)``,
    labels ``(n,)`` and recordings ``rels`` ``(n,)``; ``extracted`` gives the durations."""
    a = cfg.audio
    paths, proba = recordings_from_clips(rels, softmax(logits, temperature), {r: extracted.entries[r].duration for r in set(rels)},
                                         window=float(a.clip_seconds), clip_samples=a.clip_samples, sample_rate=a.sample_rate)
    first: dict[str, int] = {}
    for r, y in zip(rels, labels):
        first.setdefault(r, int(y))
    return proba, np.array([first[p] for p in paths], dtype=int)


def fit_after_training(logits: np.ndarray, labels: np.ndarray, rels: list[str], extracted: ExtractResult,
                       cfg: Config) -> dict[str, Any]:
    """model.json's ``calibration`` (temperature on the clip logits) and ``uncertain`` (threshold
    on calibrated recording probabilities), from held-out clip logits ``(n, k)``."""
    from cultural_music.metrics.calibration import fit_temperature
    from cultural_music.metrics.uncertainty import fit_threshold

    calibration = fit_temperature(logits, labels)
    proba, rec_labels = recording_level(rels, logits, labels, extracted, cfg, float(calibration.get("temperature", 1.0)))
    return {"calibration": calibration, "uncertain": fit_threshold(proba, rec_labels)}
