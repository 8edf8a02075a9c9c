"""What one upload may cost the server, and the header checks that refuse it before any decoding.

Duration alone does not bound the work: a small FLAC of silence at 384 kHz with 8 channels
decodes 40x more samples than a CD-quality file of the same length.  So an upload is also
refused when its header promises too many samples (frames x channels) or too high a sample
rate, and an allowed but long one is sent to a second model thread ("long lane") so that it
never delays the short recordings behind it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cultural_music.features.audio import AudioInfo, audio_info
from cultural_music.errors import AudioLoadError, ParameterError, check_positive
from cultural_music.serve.errors import RequestError

__all__ = ["Limits", "check_header", "is_long", "REFERENCE_RATE", "REFERENCE_CHANNELS"]

REFERENCE_RATE = 48_000
"""Hz of the "ordinary recording" that sample budgets are expressed in (48 kHz stereo)."""
REFERENCE_CHANNELS = 2


@dataclass(frozen=True)
class Limits:
    """The server's limits per upload and in all (every value must be > 0).

    Attributes
    ----------
    max_upload_mb
        Largest upload in MiB (413).
    max_duration_s
        Longest recording in seconds, from the header (413).
    max_samples
        Most samples (frames x channels, from the header) one upload may decode (413); default
        30 min of 48 kHz stereo.
    max_sample_rate
        Highest sample rate in Hz (422).
    long_after_s
        Recordings longer than this many seconds, or with more samples than this long a 48 kHz
        stereo file, run on the long lane (a second model thread), never delaying short ones.
    max_temp_mb
        Temp-disk MiB that all uploads in flight may use together (507 past it).
    body_timeout_s
        Seconds a client may send no body data before the upload is dropped (408).
    upload_timeout_s
        Seconds a whole upload may take to arrive (408).
    max_pending
        Recordings allowed to wait for one model thread; more get 503.
    """

    max_upload_mb: float = 100.0
    max_duration_s: float = 1800.0
    max_samples: float = 1800.0 * REFERENCE_RATE * REFERENCE_CHANNELS
    max_sample_rate: float = 192_000
    long_after_s: float = 120.0
    max_temp_mb: float = 2048.0
    body_timeout_s: float = 20.0
    upload_timeout_s: float = 900.0
    max_pending: int = 32

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_positive(field.name, "server limits", getattr(self, field.name))

    @classmethod
    def of(cls, base: "Limits | None" = None, **changes: Any) -> "Limits":
        """``base`` (default: the defaults) with ``changes``; unknown names raise ParameterError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ParameterError(f"create_app: unknown limit(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return dataclasses.replace(base or cls(), **{k: v for k, v in changes.items() if v is not None})

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def public(self) -> dict[str, Any]:
        """The limits a client needs to know (``GET /api/model``)."""
        return {"max_upload_mb": self.max_upload_mb, "max_duration_s": self.max_duration_s,
                "max_samples": int(self.max_samples), "max_sample_rate": int(self.max_sample_rate)}


def _millions(n: float) -> str:
    return f"{n / 1e6:,.1f} million"


def check_header(path: Path, filename: str, limits: Limits) -> AudioInfo:
    """Read the header of a saved upload and refuse it, before decoding, if it costs too much.

    Raises
    ------
    RequestError
        422: unreadable header or sample rate above ``max_sample_rate``; 413: longer than
        ``max_duration_s`` or more than ``max_samples`` samples (frames x channels).
    """
    try:
        info = audio_info(path)
    except AudioLoadError as err:
        raise RequestError(422, f"{filename}: {err.reason}") from err
    if info.sample_rate > limits.max_sample_rate:
        raise RequestError(422, f"{filename}: sample rate {info.sample_rate} Hz is above the "
                                f"{limits.max_sample_rate:g} Hz this server decodes")
    if info.duration > limits.max_duration_s:
        raise RequestError(413, f"{filename}: {info.duration:.1f} s long; this server accepts recordings up to "
                                f"{limits.max_duration_s:g} s")
    samples = info.duration * info.sample_rate * info.channels
    if samples > limits.max_samples:
        raise RequestError(413, f"{filename}: {_millions(samples)} samples to decode ({info.duration:.1f} s x "
                                f"{info.channels} channels at {info.sample_rate} Hz); this server decodes up to "
                                f"{_millions(limits.max_samples)} per recording")
    return info


def is_long(info: AudioInfo, limits: Limits) -> bool:
    """True if the upload goes to the long lane (see :attr:`Limits.long_after_s`)."""
    samples = info.duration * info.sample_rate * info.channels
    return info.duration > limits.long_after_s or samples > limits.long_after_s * REFERENCE_RATE * REFERENCE_CHANNELS
