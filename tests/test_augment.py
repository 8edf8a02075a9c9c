"""Seeded waveform and spectrogram augmentations (cultural_music.augment)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from cultural_music.augment import Compose, PitchShift, SpecMask, TimeStretch, WhiteNoise, from_config
from cultural_music.config import AugmentConfig
from cultural_music.errors import ParameterError

SR = 22050


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def sine(freq: float = 440.0, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(y: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size), n=1 << 17))
    return float(np.fft.rfftfreq(1 << 17, 1 / SR)[np.argmax(spec)])


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


WAVE = {
    "stretch": lambda p: TimeStretch(0.8, 0.9, p=p),
    "pitch": lambda p: PitchShift(1.0, 2.0, p=p),
    "noise": lambda p: WhiteNoise(10.0, 20.0, p=p),
}


@pytest.mark.parametrize("name", sorted(WAVE))
def test_p1_changes_signal_keeps_length_and_dtype(name, rng):
    x = sine()
    y = WAVE[name](1.0)(x, SR, rng)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert not np.allclose(y, x, atol=1e-3)


@pytest.mark.parametrize("name", sorted(WAVE))
def test_p0_returns_input_unchanged(name, rng):
    x = sine()
    y = WAVE[name](0.0)(x, SR, rng)
    assert y.dtype == np.float32 and np.array_equal(y, x)


@pytest.mark.parametrize("name", sorted(WAVE))
def test_same_seed_same_output_other_seed_differs(name):
    x, t = sine(), WAVE[name](1.0)
    a = t(x, SR, np.random.default_rng(1))
    b = t(x, SR, np.random.default_rng(1))
    c = t(x, SR, np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TimeStretch(min_rate=0.0),
        lambda: TimeStretch(min_rate=1.2, max_rate=1.1),
        lambda: TimeStretch(p=1.5),
        lambda: PitchShift(min_semitones=3.0, max_semitones=2.0),
        lambda: PitchShift(max_semitones=30.0),
        lambda: PitchShift(p=-0.1),
        lambda: WhiteNoise(min_snr_db=30.0, max_snr_db=10.0),
        lambda: WhiteNoise(min_snr_db=float("nan")),
        lambda: WhiteNoise(p=2.0),
        lambda: SpecMask(freq_mask_max=-1),
        lambda: SpecMask(time_mask_max=2.5),
        lambda: SpecMask(p=1.1),
        lambda: Compose([1]),
    ],
)
def test_bad_parameters_raise(make):
    with pytest.raises(ParameterError, match="parameter of"):
        make()


def test_stereo_input_rejected(rng):
    with pytest.raises(ParameterError, match="1-D"):
        WhiteNoise(p=1.0)(np.zeros((2, 100), np.float32), SR, rng)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_white_noise_snr(snr_db, rng):
    x = sine()
    y = WhiteNoise(snr_db, snr_db, p=1.0)(x, SR, rng)
    measured = 20 * np.log10(rms(x) / rms(y - x))
    assert abs(measured - snr_db) < 0.5


def test_white_noise_leaves_silence_unchanged(rng):
    x = np.zeros(SR // 2, np.float32)
    y = WhiteNoise(p=1.0)(x, SR, rng)
    assert np.array_equal(y, x) and y.dtype == np.float32


@pytest.mark.parametrize("semitones", [2.0, -3.0])
def test_pitch_shift_moves_peak(semitones, rng):
    y = PitchShift(semitones, semitones, p=1.0)(sine(440.0), SR, rng)
    expected = 440.0 * 2 ** (semitones / 12)
    assert y.shape == (SR // 2,)
    assert abs(peak_hz(y) - expected) / expected < 0.015


def _click_centroids(y: np.ndarray) -> np.ndarray:
    """Energy-weighted time (s) of each burst of energy, bursts split at gaps > 0.15 s."""
    hop = int(0.005 * SR)
    e = librosa.feature.rms(y=y, frame_length=hop, hop_length=hop, center=False)[0] ** 2
    t = (np.arange(e.size) + 0.5) * hop / SR
    on = np.flatnonzero(e > 0.01 * e.max())
    groups = np.split(on, np.flatnonzero(np.diff(on) > 0.15 * SR / hop) + 1)
    return np.array([np.sum(t[g] * e[g]) / np.sum(e[g]) for g in groups])


def test_time_stretch_click_spacing(rng):
    # Clicks 0.7 s apart; rate 1.2 should bring them to 0.7 / 1.2 = 0.583 s.  The phase
    # vocoder places each click to within about one hop (23 ms), hence the 5 % tolerance.
    x = librosa.clicks(times=[0.2, 0.9, 1.6], sr=SR, length=2 * SR, click_duration=0.01).astype(np.float32)
    y = TimeStretch(1.2, 1.2, p=1.0)(x, SR, rng)
    assert y.shape == x.shape and y.dtype == np.float32
    c_in, c_out = _click_centroids(x), _click_centroids(y)
    assert len(c_in) == len(c_out) == 3
    ratio = np.mean(np.diff(c_in)) / np.mean(np.diff(c_out))
    assert abs(ratio - 1.2) < 0.05 * 1.2


def test_time_stretch_slow_down_pads_to_length(rng):
    x = sine()
    y = TimeStretch(0.5, 0.5, p=1.0)(x, SR, rng)
    assert y.shape == x.shape and y.dtype == np.float32


def test_spec_mask_sets_expected_bands(rng):
    spec = np.random.default_rng(5).uniform(0.1, 1.0, (16, 50)).astype(np.float32)
    mask = SpecMask(freq_mask_max=4, time_mask_max=10, p=1.0)
    params = mask.randomize(np.random.default_rng(4), spec.shape)
    assert params["f_width"] > 0 and params["t_width"] > 0
    out = mask.apply(spec, params)
    expected = spec.copy()
    f0, t0 = params["f0"], params["t0"]
    expected[f0 : f0 + params["f_width"], :] = spec.min()
    expected[:, t0 : t0 + params["t_width"]] = spec.min()
    assert out.dtype == np.float32 and out.shape == spec.shape
    assert np.array_equal(out, expected)
    assert np.array_equal(mask(spec, np.random.default_rng(4)), expected)
    assert not np.array_equal(out, spec)


def test_spec_mask_widths_in_range_and_p0(rng):
    spec = np.ones((8, 20), np.float32)
    spec[0, 0] = 0.0
    mask = SpecMask(freq_mask_max=20, time_mask_max=40, p=1.0)
    for _ in range(50):
        p = mask.randomize(rng, spec.shape)
        assert 0 <= p["f_width"] <= 8 and 0 <= p["f0"] <= 8 - p["f_width"]
        assert 0 <= p["t_width"] <= 20 and 0 <= p["t0"] <= 20 - p["t_width"]
    assert np.array_equal(SpecMask(p=0.0)(spec, rng), spec)
    with pytest.raises(ParameterError, match="2-D"):
        mask(np.ones(10, np.float32), rng)


def test_spec_mask_from_config():
    m = SpecMask.from_config(AugmentConfig(spec_mask_p=0.3, freq_mask_max=5, time_mask_max=7))
    assert (m.p, m.freq_mask_max, m.time_mask_max) == (0.3, 5, 7)


def test_compose_applies_in_order_with_same_rng():
    x = sine()
    stretch, noise = TimeStretch(0.9, 0.9, p=1.0), WhiteNoise(15.0, 15.0, p=1.0)
    got = Compose([stretch, noise])(x, SR, np.random.default_rng(7))
    r = np.random.default_rng(7)
    want = noise(stretch(x, SR, r), SR, r)
    assert np.array_equal(got, want)
    r = np.random.default_rng(7)
    other = stretch(noise(x, SR, r), SR, r)
    assert not np.array_equal(got, other)

    calls: list[str] = []

    def tag(name: str):
        def t(s, sr, g):
            calls.append(name)
            return s + 1
        return t

    out = Compose([tag("a"), tag("b"), tag("c")])(np.zeros(4, np.float32), SR, np.random.default_rng(0))
    assert calls == ["a", "b", "c"] and np.array_equal(out, np.full(4, 3, np.float32))


def test_from_config(rng):
    cfg = AugmentConfig(
        time_stretch_p=0.1, time_stretch_range=(0.9, 1.1), pitch_shift_p=0.2,
        pitch_shift_semitones=(-1.0, 1.0), noise_p=0.3, noise_snr_db=(5.0, 6.0),
    )
    c = from_config(cfg)
    ts, ps, wn = c.transforms
    assert isinstance(ts, TimeStretch) and (ts.min_rate, ts.max_rate, ts.p) == (0.9, 1.1, 0.1)
    assert isinstance(ps, PitchShift) and (ps.min_semitones, ps.max_semitones, ps.p) == (-1.0, 1.0, 0.2)
    assert isinstance(wn, WhiteNoise) and (wn.min_snr_db, wn.max_snr_db, wn.p) == (5.0, 6.0, 0.3)
    y = from_config(AugmentConfig())(sine(), SR, rng)
    assert y.dtype == np.float32 and y.shape == (SR // 2,)
