"""From per-window probabilities to a file's answer and a timeline of labelled segments.

A long recording is read as overlapping windows (one model clip each).  Each window owns the
stretch of time nearer to its centre than to any other window's centre, so the owned stretches
tile the file from 0 to its duration without gaps or overlaps; consecutive windows with the same
label merge into one :class:`Segment`.  Torch-free (used by the ONNX predictor too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ParameterError
from .uncertainty import UNCERTAIN, is_uncertain

__all__ = ["Segment", "AGGREGATES", "aggregate_probabilities", "window_bounds", "build_timeline"]

AGGREGATES = ("mean", "geometric")


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


def aggregate_probabilities(window_proba: np.ndarray, method: str = "mean") -> np.ndarray:
    """A file's class probabilities from its windows' ``(n_windows, n_classes)``.

    ``"mean"``: arithmetic mean; ``"geometric"``: normalised geometric mean (a class must be
    likely in every window).  Returns float ``(n_classes,)`` summing to 1.
    """
    p = np.asarray(window_proba, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ParameterError(f"The 'window_proba' parameter of aggregate_probabilities must be a non-empty "
                             f"(n_windows, n_classes) array. Got shape {p.shape} instead.")
    if method == "mean":
        out = p.mean(axis=0)
    elif method == "geometric":
        log = np.log(np.clip(p, 1e-12, 1.0)).mean(axis=0)
        out = np.exp(log - log.max())
    else:
        raise ParameterError(f"The 'method' parameter of aggregate_probabilities must be one of {AGGREGATES}. "
                             f"Got {method!r} instead.")
    return out / out.sum()


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
