"""A recording's class probabilities from its windows' (or cached clips'): the ONE aggregation.

:func:`recording_probabilities` is a mean of the window probabilities weighted by the seconds of
real audio each window holds, so a trailing window that is mostly zero padding cannot outvote
the audio.  ``predict`` (through :mod:`cultural_music.inference.timeline`, which re-exports
these), ``evaluate``, ``cv`` and the "uncertain" threshold fitted after training
(``training.pipeline.fit_on_validation``) all call it.  NumPy only (no torch).
"""

from __future__ import annotations

import numpy as np

from cultural_music.errors import ParameterError

__all__ = ["AGGREGATES", "aggregate_probabilities", "window_weights", "recording_probabilities", "clip_starts",
           "recordings_from_clips"]

AGGREGATES = ("mean", "geometric")


def aggregate_probabilities(window_proba: np.ndarray, method: str = "mean", weights: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities from windows' ``(n_windows, n_classes)``, weighted by ``weights``
    ``(n_windows,)`` (>= 0, not all 0; default equal).

    ``"mean"``: weighted arithmetic mean; ``"geometric"``: normalised weighted geometric mean (a
    class must be likely in every window).  Returns float64 ``(n_classes,)`` summing to 1.
    Use :func:`recording_probabilities` for a recording's answer (it sets the weights).
    """
    p = np.asarray(window_proba, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ParameterError(f"The 'window_proba' parameter of aggregate_probabilities must be a non-empty "
                             f"(n_windows, n_classes) array. Got shape {p.shape} instead.")
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(p),) or not np.all(w >= 0) or not w.sum() > 0:
        raise ParameterError(f"The 'weights' parameter of aggregate_probabilities must be {len(p)} non-negative "
                             f"numbers, not all 0. Got {w!r} instead.")
    w = w / w.sum()
    if method == "mean":
        out = w @ p
    elif method == "geometric":
        log = w @ np.log(np.clip(p, 1e-12, 1.0))
        out = np.exp(log - log.max())
    else:
        raise ParameterError(f"The 'method' parameter of aggregate_probabilities must be one of {AGGREGATES}. "
                             f"Got {method!r} instead.")
    return out / out.sum()


def window_weights(starts: np.ndarray, *, window: float, duration: float) -> np.ndarray:
    """Seconds of real audio (not padding) in each window, float64 ``(n_windows,)``.

    Window ``i`` covers ``[starts[i], starts[i] + window)`` seconds of a ``duration``-second file:
    ``clip(duration - start, 0, window)``.  If that is 0 for every window (a header that reports
    no duration), every window gets weight 1.
    """
    s = np.asarray(starts, dtype=np.float64)
    w = np.clip(float(duration) - s, 0.0, float(window))
    return w if w.sum() > 0 else np.ones_like(s)


def recording_probabilities(starts: np.ndarray, window_proba: np.ndarray, *, window: float, duration: float,
                            method: str = "mean") -> np.ndarray:
    """A recording's class probabilities, float64 ``(n_classes,)``: its windows' probabilities
    ``(n_windows, n_classes)`` averaged with :func:`window_weights` (seconds of real audio).

    ``starts`` are window starts in seconds ``(n_windows,)``, ``window`` the window length and
    ``duration`` the file's duration (s, from its header).  The one aggregation predict and
    evaluate share.
    """
    return aggregate_probabilities(window_proba, method, window_weights(starts, window=window, duration=duration))


def clip_starts(n_clips: int, *, clip_samples: int, sample_rate: int) -> np.ndarray:
    """Starts in seconds ``(n_clips,)`` of a file's cached (non-overlapping) clips, the same
    floats :func:`~cultural_music.features.audio.iter_clips` yields for them."""
    return np.arange(n_clips, dtype=np.int64) * int(clip_samples) / float(sample_rate)


def recordings_from_clips(rel_paths: list[str], clip_proba: np.ndarray, durations: dict[str, float], *,
                          window: float, clip_samples: int, sample_rate: int) -> tuple[list[str], np.ndarray]:
    """Recording probabilities from cached clips, through :func:`recording_probabilities`.

    ``rel_paths[i]`` names the file of clip row ``i`` of ``clip_proba`` ``(n_clips, n_classes)``
    (a file's clips consecutive and in order, as :func:`~cultural_music.training.clip_dataset.build_items` lists
    them); ``durations`` gives each file's duration in seconds.  Returns the files in first-seen
    order and their probabilities ``(n_files, n_classes)``.
    """
    rows: dict[str, list[int]] = {}
    for i, rel in enumerate(rel_paths):
        rows.setdefault(rel, []).append(i)
    p = np.asarray(clip_proba, dtype=np.float64)
    if not rows:
        return [], np.zeros((0, p.shape[1] if p.ndim == 2 else 0))
    out = [recording_probabilities(clip_starts(len(idx), clip_samples=clip_samples, sample_rate=sample_rate), p[idx],
                                   window=window, duration=durations[rel]) for rel, idx in rows.items()]
    return list(rows), np.stack(out)
