"""Decode audio files into mono float32 clips at a fixed sample rate, streaming.

Files are read block by block with soundfile (WAV, FLAC, OGG, MP3 through libsndfile), mixed
to mono, resampled with soxr and cut into fixed-length clips, so memory stays bounded by one
clip whatever the file length.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from cultural_music.config import AudioConfig
from cultural_music.data.dataset import special_file_kind
from cultural_music.errors import AudioLoadError
from cultural_music.features.quiet import quiet_decoder

__all__ = ["AudioInfo", "audio_info", "iter_blocks", "iter_clips", "load_clips", "load_audio"]

_BLOCK_SECONDS = 10.0
# Float files hold samples in about -1..1; far beyond, the features overflow float32 (power is
# the square of sums of thousands of samples), so such a file is refused with this reason.
_MAX_ABS_SAMPLE = 1e8


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: duration in seconds, native sample rate in Hz, channels."""

    duration: float
    sample_rate: int
    channels: int
    format: str


def _open(path: str | Path) -> sf.SoundFile:
    path = Path(path)
    try:
        st = path.stat()  # follows symlinks; never opens (a FIFO would block)
    except FileNotFoundError as err:
        raise AudioLoadError(path, "file not found") from err
    except OSError as err:
        raise AudioLoadError(path, f"cannot read file ({err.strerror or err})") from err
    if stat.S_ISDIR(st.st_mode):
        raise AudioLoadError(path, "is a folder, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioLoadError(path, f"not a regular file ({special_file_kind(st.st_mode)})")
    if st.st_size == 0:
        raise AudioLoadError(path, "empty file (0 bytes)")
    try:
        with quiet_decoder():
            return sf.SoundFile(str(path))
    except sf.LibsndfileError as err:
        raise AudioLoadError(path, f"not a readable audio file or corrupt ({_clean(err, path)})") from err
    except (RuntimeError, TypeError, ValueError) as err:
        raise AudioLoadError(path, f"not a readable audio file or corrupt ({err})") from err
    except OSError as err:
        raise AudioLoadError(path, f"cannot read file ({err.strerror or err})") from err


def _clean(err: Exception, path: Path) -> str:
    text = str(err)
    text = text.split(": ", 1)[-1] if "Error opening" in text else text
    if "not a regular file" in text:  # libsndfile's answer when no decoder accepts the bytes
        return f"no decodable {path.suffix.lstrip('.').upper() or 'audio'} data: not audio, or damaged"
    return text


def audio_info(path: str | Path) -> AudioInfo:
    """Header information of an audio file (no decoding)."""
    with _open(path) as f:
        if f.samplerate <= 0 or f.channels <= 0:
            raise AudioLoadError(path, "invalid header (sample rate or channel count is 0)")
        return AudioInfo(duration=f.frames / f.samplerate, sample_rate=f.samplerate, channels=f.channels, format=f.format)


def iter_blocks(path: str | Path, *, sample_rate: int, block_seconds: float = _BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield the file as consecutive mono float32 blocks ``(samples,)`` at ``sample_rate`` Hz.

    Raises
    ------
    AudioLoadError
        Unreadable, corrupt, empty or non-finite audio; the message names the file.
    """
    with _open(path) as f:
        if f.samplerate <= 0 or f.channels <= 0:
            raise AudioLoadError(path, "invalid header (sample rate or channel count is 0)")
        native = int(f.samplerate)
        resampler = None if native == sample_rate else soxr.ResampleStream(native, sample_rate, 1, dtype="float32", quality="HQ")
        block = max(1024, int(block_seconds * native))
        total = 0
        while True:
            try:
                with quiet_decoder():  # never around the yield below: only the C call
                    data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as err:
                if total == 0:
                    raise AudioLoadError(path, f"corrupt audio data ({_clean(err, Path(path))})") from err
                break  # truncated file: keep what decoded
            last = len(data) < block
            _check_samples(path, data)
            mono = _mix_to_mono(data)
            total += len(mono)
            out = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            if out.size:
                yield np.ascontiguousarray(out, dtype=np.float32)
            if last:
                break
        if total == 0:
            raise AudioLoadError(path, "no audio samples (0 frames)")


def _check_samples(path: str | Path, data: np.ndarray) -> None:
    """Refuse non-finite or absurdly large float32 samples ``(frames, channels)`` with a reason
    (checked before mixing, whose sums could overflow)."""
    if not data.size:
        return
    if not np.isfinite(data).all():
        raise AudioLoadError(path, "contains NaN or infinite samples")
    peak = float(max(data.max(), -data.min()))
    if peak > _MAX_ABS_SAMPLE:
        raise AudioLoadError(path, f"samples out of range (peak {peak:.3g}; float audio is expected within about ±1)")


def _mix_to_mono(data: np.ndarray) -> np.ndarray:
    """Mean of the channels of float32 ``(frames, channels)``, as ``(frames,)``.

    Same values as ``data.mean(axis=1)`` (channels added in order, then divided), about 100x
    faster: a reduction over the short, interleaved channel axis is slow in numpy.
    """
    if data.shape[1] == 1:
        return data[:, 0]
    mono = data[:, 0].copy()
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    mono /= np.float32(data.shape[1])
    return mono


def iter_clips(
    path: str | Path,
    cfg: AudioConfig,
    *,
    hop_seconds: float | None = None,
    allow_silent: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Cut a file into fixed-length mono clips, streaming.

    Parameters
    ----------
    path
        Audio file.
    cfg
        Sample rate (Hz), clip length (s) and the rule for the trailing piece.
    hop_seconds
        Start-to-start distance of clips in seconds; default = the clip length (no overlap).
    allow_silent
        If False, a file whose samples are all zero raises :class:`AudioLoadError` (after its
        last clip; callers collect clips before using them).

    Yields
    ------
    (start_seconds, clip)
        ``clip`` is float32 ``(cfg.clip_samples,)``.  A file shorter than one clip yields exactly
        one clip; it, and a kept trailing piece, is filled to a whole clip as ``cfg.pad`` says
        (:func:`fill_clip`).
    """
    size = cfg.clip_samples
    hop = size if hop_seconds is None else max(1, int(round(hop_seconds * cfg.sample_rate)))
    buf = np.zeros(0, dtype=np.float32)
    start = 0  # sample index of buf[0] in the file
    n_yielded = 0
    peak = 0.0
    for block in iter_blocks(path, sample_rate=cfg.sample_rate):
        peak = max(peak, float(np.abs(block).max(initial=0.0)))
        buf = np.concatenate([buf, block])
        while len(buf) >= size:
            yield start / cfg.sample_rate, buf[:size].copy()
            n_yielded += 1
            buf = buf[hop:]
            start += hop
    rest = len(buf)
    covered_to = (n_yielded - 1) * hop + size if n_yielded else 0
    if rest > 0 and (n_yielded == 0 or (start + rest > covered_to and rest >= cfg.min_last_clip_fraction * size)):
        yield start / cfg.sample_rate, fill_clip(buf, size, cfg.pad)
        n_yielded += 1
    if not allow_silent and peak == 0.0:
        raise AudioLoadError(path, "silent: every sample is zero")


def fill_clip(piece: np.ndarray, size: int, pad: str) -> np.ndarray:
    """``piece`` (samples,) filled up to float32 ``(size,)``: ``"repeat"`` tiles it end to end
    (the last copy cut short), ``"zeros"`` appends silence."""
    if pad == "repeat" and len(piece):
        return np.resize(piece, size).astype(np.float32, copy=False)
    clip = np.zeros(size, dtype=np.float32)
    clip[: len(piece)] = piece
    return clip


def load_clips(path: str | Path, cfg: AudioConfig, *, hop_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All clips of a file: ``(starts_seconds (n,), clips (n, cfg.clip_samples))`` float32."""
    starts, clips = [], []
    for start, clip in iter_clips(path, cfg, hop_seconds=hop_seconds):
        starts.append(start)
        clips.append(clip)
    return np.asarray(starts, dtype=np.float32), np.stack(clips)


def load_audio(path: str | Path, *, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Whole file as mono float32 ``(samples,)`` at ``sample_rate`` Hz (optionally capped)."""
    parts, total = [], 0
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    for block in iter_blocks(path, sample_rate=sample_rate):
        parts.append(block)
        total += len(block)
        if limit is not None and total >= limit:
            break
    y = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return y[:limit] if limit is not None else y
