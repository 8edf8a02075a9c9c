"""From per-window probabilities to a file's answer and a timeline of labelled segments.

:func:`recording_probabilities` (defined in :mod:`cultural_music.metrics.recording`, re-exported
here) is the ONE place a recording's class probabilities are made
from its windows' (``predict``, batch predict, the Python, HTTP and web APIs, ``evaluate`` and
``cv`` all call it): a mean of the window probabilities weighted by the seconds of real audio
each window holds, so a trailing window that is mostly zero padding cannot outvote the audio.

A recording is read as windows (one model clip each; by default exactly the clips training and
evaluation cut, see :func:`~cultural_music.features.audio.iter_clips`).  Each window owns the
stretch of time nearer to its centre than to any other window's centre, so the owned stretches
tile the file from 0 to its duration without gaps or overlaps; consecutive windows with the same
label merge into one :class:`Segment`.  Torch-free (used by the ONNX predictor too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cultural_music.metrics.recording import (AGGREGATES, aggregate_probabilities, clip_starts, recording_probabilities,
                                              recordings_from_clips, window_weights)
from cultural_music.metrics.uncertainty import UNCERTAIN, is_uncertain

__all__ = ["Segment", "AGGREGATES", "aggregate_probabilities", "window_weights", "recording_probabilities",
           "clip_starts", "recordings_from_clips", "window_bounds", "build_timeline"]


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording with one label.

    Attributes
    ----------
    label
        Class name, or ``"uncertain"`` where the windows' top probability is below the threshold.
    start, end
        Seconds from the start of the file (``start < end``).
    confidence
        Mean over the segment's windows of the probability of ``label`` (of the top class for
        ``"uncertain"``), 0..1.
    """

    label: str
    start: float
    end: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def window_bounds(starts: np.ndarray, *, window: float, duration: float) -> np.ndarray:
    """Edges ``(n_windows + 1,)`` in seconds of the stretch each window owns.

    Edge 0 is 0, the last edge is ``duration``, inner edges lie half-way between consecutive
    window centres (``start + window / 2``), clipped to ``[0, duration]``; non-decreasing.
    """
    s = np.asarray(starts, dtype=np.float64)
    centres = s + window / 2.0
    inner = (centres[:-1] + centres[1:]) / 2.0
    edges = np.concatenate([[0.0], inner, [duration]])
    return np.maximum.accumulate(np.clip(edges, 0.0, duration))


def build_timeline(
    starts: np.ndarray,
    window_proba: np.ndarray,
    classes: list[str],
    *,
    window: float,
    duration: float,
    threshold: float = 0.0,
) -> list[Segment]:
    """Contiguous labelled segments covering ``[0, duration]`` seconds.

    Parameters
    ----------
    starts
        Window start times in seconds ``(n_windows,)``, increasing.
    window_proba
        Window class probabilities ``(n_windows, n_classes)``.
    classes
        Class names in column order.
    window
        Window length in seconds.
    duration
        File duration in seconds.
    threshold
        A window whose top probability is below it is labelled ``"uncertain"``.

    Returns
    -------
    list of Segment
        First starts at 0, each ends where the next starts, last ends at ``duration``; two
        neighbours never share a label.
    """
    p = np.asarray(window_proba, dtype=np.float64)
    if len(p) == 0:
        return []
    edges = window_bounds(starts, window=window, duration=duration)
    top = p.argmax(axis=1)
    conf = p.max(axis=1)
    labels = [UNCERTAIN if is_uncertain(float(c), threshold) else classes[int(i)] for i, c in zip(top, conf)]
    segments: list[Segment] = []
    run_label, run_start, run_conf = labels[0], 0.0, [float(conf[0])]
    for i in range(1, len(p)):
        if edges[i + 1] <= edges[i]:
            continue  # a window owning no time (centre past the end of the file)
        if labels[i] == run_label:
            run_conf.append(float(conf[i]))  # a run's label is each window's top class (or uncertain)
            continue
        segments.append(Segment(run_label, run_start, float(edges[i]), float(np.mean(run_conf))))
        run_label, run_start, run_conf = labels[i], float(edges[i]), [float(conf[i])]
    segments.append(Segment(run_label, run_start, float(duration), float(np.mean(run_conf))))
    return segments
