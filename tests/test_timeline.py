"""Timeline: windows -> contiguous labelled segments; a two-class recording switches at the join."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cultural_music.errors import ParameterError
from cultural_music.inference.classifier import Classifier
from cultural_music.inference.timeline import Segment, aggregate_probabilities, build_timeline, clip_starts, recording_probabilities, recordings_from_clips, window_bounds, window_weights

from conftest import write
from tiny_model import SOUNDS, SR, shared_model

CLASSES = ["a", "b", "c"]


def _assert_tiles(segments: list[Segment], duration: float) -> None:
    assert segments[0].start == 0.0
    assert segments[-1].end == pytest.approx(duration)
    for left, right in zip(segments, segments[1:]):
        assert left.end == right.start  # no gap, no overlap
        assert left.label != right.label  # neighbours merged
    assert all(s.start < s.end for s in segments)


def test_window_bounds_split_at_centre_midpoints() -> None:
    # windows of 30 s every 15 s on a 70 s file: centres 15, 30, 45, 60
    edges = window_bounds(np.array([0.0, 15.0, 30.0, 45.0]), window=30.0, duration=70.0)
    np.testing.assert_allclose(edges, [0.0, 22.5, 37.5, 52.5, 70.0])


def test_segments_merge_and_cover_file() -> None:
    p = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.7, 0.2], [0.2, 0.6, 0.2]])
    segs = build_timeline(np.array([0.0, 15.0, 30.0, 45.0]), p, CLASSES, window=30.0, duration=70.0)
    assert [(s.label, s.start, s.end) for s in segs] == [("a", 0.0, 37.5), ("b", 37.5, 70.0)]
    assert segs[0].confidence == pytest.approx(0.85) and segs[1].confidence == pytest.approx(0.65)


def test_low_windows_become_uncertain() -> None:
    p = np.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25], [0.45, 0.3, 0.25], [0.1, 0.9, 0.0]])
    segs = build_timeline(np.arange(4) * 1.0, p, CLASSES, window=2.0, duration=5.0, threshold=0.5)
    assert [s.label for s in segs] == ["a", "uncertain", "b"]
    assert segs[1].confidence == pytest.approx(0.425)
    assert [s.label for s in build_timeline(np.arange(4) * 1.0, p, CLASSES, window=2.0, duration=5.0)] == ["a", "b"]


@pytest.mark.parametrize("hop", [0.25, 0.5, 1.0])
def test_random_windows_tile_without_gaps(rng: np.random.Generator, hop: float) -> None:
    n = 17
    starts = np.arange(n) * hop
    duration = starts[-1] + rng.uniform(0.1, 1.0)
    p = rng.dirichlet(np.ones(3) * 0.3, size=n)
    segs = build_timeline(starts, p, CLASSES, window=1.0, duration=duration)
    _assert_tiles(segs, duration)
    assert sum(s.end - s.start for s in segs) == pytest.approx(duration)


def test_single_window_spans_short_file() -> None:
    segs = build_timeline(np.array([0.0]), np.array([[0.2, 0.8, 0.0]]), CLASSES, window=30.0, duration=4.2)
    assert segs == [Segment("b", 0.0, 4.2, pytest.approx(0.8))]


def test_aggregate_mean_and_geometric() -> None:
    p = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    np.testing.assert_allclose(aggregate_probabilities(p), [1.6 / 3, 1.4 / 3])
    g = aggregate_probabilities(p, "geometric")
    raw = np.array([(0.9 * 0.1 * 0.6) ** (1 / 3), (0.1 * 0.9 * 0.4) ** (1 / 3)])
    np.testing.assert_allclose(g, raw / raw.sum())
    with pytest.raises(ParameterError, match="'method'"):
        aggregate_probabilities(p, "max")


def test_window_weights_are_seconds_of_real_audio() -> None:
    np.testing.assert_allclose(window_weights(np.array([0.0, 5.0]), window=5.0, duration=5.001), [5.0, 0.001])
    np.testing.assert_allclose(window_weights(np.array([0.0, 2.5, 5.0]), window=5.0, duration=7.0), [5.0, 4.5, 2.0])
    np.testing.assert_allclose(window_weights(np.array([0.0]), window=5.0, duration=1.0), [1.0])
    np.testing.assert_allclose(window_weights(np.array([0.0, 1.0]), window=1.0, duration=0.0), [1.0, 1.0])  # no duration


def test_mostly_padding_window_cannot_outvote_real_audio() -> None:
    # 5.001 s file, 5 s windows: the event in the first window, a near-empty second window says "c"
    p = np.array([[0.9, 0.05, 0.05], [0.0, 0.0, 1.0]])
    out = recording_probabilities(np.array([0.0, 5.0]), p, window=5.0, duration=5.001)
    assert int(np.argmax(out)) == 0 and out[0] > 0.89
    np.testing.assert_allclose(out, (5.0 * p[0] + 0.001 * p[1]) / 5.001)
    g = recording_probabilities(np.array([0.0, 5.0]), p, window=5.0, duration=5.001, method="geometric")
    assert int(np.argmax(g)) == 0


def test_weights_are_checked() -> None:
    with pytest.raises(ParameterError, match="'weights'"):
        aggregate_probabilities(np.array([[0.5, 0.5]]), weights=np.array([0.0]))


def test_cached_clips_aggregate_like_windows() -> None:
    g = np.random.default_rng(0)
    p = g.dirichlet(np.ones(3), size=5)
    starts = clip_starts(3, clip_samples=32000, sample_rate=16000)
    np.testing.assert_allclose(starts, [0.0, 2.0, 4.0])
    paths, rec = recordings_from_clips(["x", "x", "x", "y", "y"], p, {"x": 5.0, "y": 3.1}, window=2.0,
                                       clip_samples=32000, sample_rate=16000)
    assert paths == ["x", "y"]
    np.testing.assert_allclose(rec[0], recording_probabilities(starts, p[:3], window=2.0, duration=5.0))
    np.testing.assert_allclose(rec[0], (2 * p[0] + 2 * p[1] + 1 * p[2]) / 5)
    np.testing.assert_allclose(rec[1], (2 * p[3] + 1.1 * p[4]) / 3.1)


def test_two_demo_classes_back_to_back_switch_at_join(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    g = np.random.default_rng(11)
    first, second = SOUNDS["Deuda"](g, 6.0), SOUNDS["Newari"](g, 5.0)
    path = write(tmp_path / "join.wav", np.concatenate([first, second]), SR)
    clf = Classifier.load(shared_model(tmp_path_factory.getbasetemp()))
    segs = clf.predict_timeline(path, hop_seconds=0.25, threshold=0.0)
    _assert_tiles(segs, 11.0)
    long = [s for s in segs if s.end - s.start >= 1.0]  # ignore a stray window at the join
    assert [s.label for s in long] == ["Deuda", "Newari"]
    assert abs(long[0].end - 6.0) <= 1.0 and abs(long[1].start - 6.0) <= 1.0
