from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cultural_music.features.audio import audio_info, iter_clips, load_audio, load_clips
from cultural_music.config import AudioConfig
from cultural_music.errors import AudioLoadError

from conftest import tone, write


def test_short_file_is_zero_padded_to_one_clip_with_pad_zeros(tmp_path: Path) -> None:
    p = write(tmp_path / "a.wav", tone(440, 0.3, 8000))
    starts, clips = load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0, pad="zeros"))
    assert clips.shape == (1, 8000) and clips.dtype == np.float32
    assert np.all(clips[0, 2400:] == 0) and np.abs(clips[0, :2400]).max() > 0.4
    assert starts.tolist() == [0.0]


def test_short_file_is_repeated_to_fill_one_clip_by_default(tmp_path: Path) -> None:
    p = write(tmp_path / "a.wav", tone(440, 0.3, 8000))
    starts, clips = load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0))
    assert AudioConfig().pad == "repeat"
    assert clips.shape == (1, 8000) and clips.dtype == np.float32 and starts.tolist() == [0.0]
    piece = clips[0, :2400]
    assert np.abs(piece).max() > 0.4
    for k in range(1, 3):  # two whole copies after the first, then a cut-short one
        np.testing.assert_array_equal(clips[0, 2400 * k: 2400 * (k + 1)], piece)
    np.testing.assert_array_equal(clips[0, 7200:], piece[:800])


def test_kept_trailing_piece_is_repeated_too(tmp_path: Path) -> None:
    p = write(tmp_path / "a.wav", tone(440, 1.7, 8000))
    clips = load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0))[1]
    assert clips.shape == (2, 8000)
    tail = clips[1, :5600]
    np.testing.assert_array_equal(clips[1, 5600:], tail[:2400])
    assert np.all(load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0, pad="zeros"))[1][1, 5600:] == 0)


def test_unknown_pad_mode_is_a_clear_error() -> None:
    from cultural_music.errors import ParameterError

    with pytest.raises(ParameterError, match="'pad' parameter of AudioConfig must be one of"):
        AudioConfig(pad="mirror")


def test_long_file_cut_into_clips_last_piece_rule(tmp_path: Path) -> None:
    p = write(tmp_path / "a.wav", tone(440, 3.7, 8000))
    starts, clips = load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0))
    assert clips.shape == (4, 8000)  # 0.7 s trailing piece >= half a clip: kept
    assert starts.tolist() == [0.0, 1.0, 2.0, 3.0]
    p2 = write(tmp_path / "b.wav", tone(440, 3.2, 8000))
    assert load_clips(p2, AudioConfig(sample_rate=8000, clip_seconds=1.0))[1].shape == (3, 8000)


def test_overlapping_windows(tmp_path: Path) -> None:
    p = write(tmp_path / "a.wav", tone(440, 4.0, 8000))
    starts = [s for s, _ in iter_clips(p, AudioConfig(sample_rate=8000, clip_seconds=2.0), hop_seconds=1.0)]
    assert starts == [0.0, 1.0, 2.0]


def test_stereo_is_mixed_and_resampled(tmp_path: Path) -> None:
    y = np.stack([tone(440, 1.0, 44100), 0.6 * tone(1000, 1.0, 44100)], axis=1)  # different channels
    p = write(tmp_path / "s.wav", y, 44100)
    out = load_audio(p, sample_rate=22050)
    assert out.shape == (22050,) and out.dtype == np.float32
    amp = 2 * np.abs(np.fft.rfft(out)) / len(out)  # 1 Hz bins: amplitude of each sine
    # the mean of the channels: each sine at half its channel's amplitude (0.5 and 0.3), nothing else
    assert amp[440] == pytest.approx(0.25, rel=0.03) and amp[1000] == pytest.approx(0.15, rel=0.03)
    assert np.delete(amp, [440, 1000]).max() < 0.01


def test_mp3_written_and_read_back(tmp_path: Path) -> None:
    p = write(tmp_path / "a.mp3", tone(1000, 1.0, 22050), 22050, format="MP3")
    info = audio_info(p)
    assert info.sample_rate == 22050 and 0.9 < info.duration < 1.2
    y = load_audio(p, sample_rate=22050)
    spec = np.abs(np.fft.rfft(y[:22050]))
    assert abs(np.argmax(spec) * 22050 / len(y[:22050]) - 1000) < 5


@pytest.mark.parametrize(
    "content,match",
    [(b"", "empty file"), (b"this is not audio at all" * 10, "not a readable audio file"), (b"RIFF\x10\x00\x00\x00WAVEfmt ", "not a readable")],
)
def test_bad_files_give_clear_errors(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioLoadError, match=match) as exc:
        load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0))
    assert "bad.wav" in str(exc.value)


def test_missing_and_silent(tmp_path: Path) -> None:
    with pytest.raises(AudioLoadError, match="not found"):
        load_audio(tmp_path / "nope.wav", sample_rate=8000)
    p = write(tmp_path / "silent.wav", np.zeros(8000, dtype=np.float32))
    with pytest.raises(AudioLoadError, match="silent"):
        load_clips(p, AudioConfig(sample_rate=8000, clip_seconds=1.0))


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_channel_mix_is_the_exact_mean(tmp_path: Path, rng: np.random.Generator, channels: int) -> None:
    y = (0.3 * rng.standard_normal((8000, channels))).astype(np.float32)
    p = write(tmp_path / "multi.wav", y, 8000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p, sample_rate=8000), y.mean(axis=1, dtype=np.float32))
