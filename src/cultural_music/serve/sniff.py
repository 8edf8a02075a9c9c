"""Tell the audio format of an upload from its first bytes, never from its name.

Only the formats the rest of the package reads are accepted: WAV (RIFF/RF64/RIFX ``WAVE``),
FLAC (``fLaC``), Ogg (``OggS``) and MP3 (an ``ID3`` tag or an MPEG audio frame header).  For
anything else :func:`describe_content` gives a short guess of what the bytes are, so an error
message can say "this looks like a PDF document" instead of only "not audio".
"""

from __future__ import annotations

__all__ = ["SNIFF_BYTES", "AUDIO_MEDIA_TYPES", "sniff_audio", "describe_content"]

SNIFF_BYTES = 4096
"""Bytes of the file start that :func:`sniff_audio` needs at most."""

AUDIO_MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}

_OTHER = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
)


def _mpeg_frame(head: bytes, i: int = 0) -> bool:
    """True if ``head[i:i+4]`` is a plausible MPEG-1/2/2.5 layer I-III audio frame header."""
    if len(head) < i + 4 or head[i] != 0xFF or head[i + 1] & 0xE0 != 0xE0:
        return False
    version = (head[i + 1] >> 3) & 0b11  # 01 is reserved
    layer = (head[i + 1] >> 1) & 0b11  # 00 is reserved (and is what AAC/ADTS uses)
    bitrate = head[i + 2] >> 4  # 1111 is invalid
    rate = (head[i + 2] >> 2) & 0b11  # 11 is reserved
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and rate != 0b11


def _id3_end(head: bytes) -> int:
    """Offset just past an ID3v2 tag at the start of ``head`` (0 if there is none)."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = 0
    for b in head[6:10]:  # "synchsafe" integer: 7 bits per byte
        size = (size << 7) | (b & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def sniff_audio(head: bytes) -> str | None:
    """Audio format of a file from its first bytes.

    Parameters
    ----------
    head
        The first bytes of the file (:data:`SNIFF_BYTES` are enough; fewer work for most files).

    Returns
    -------
    str or None
        ``"wav"``, ``"flac"``, ``"ogg"`` or ``"mp3"``; None when the bytes are not one of these.
    """
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    end = _id3_end(head)
    if end:
        # ID3 tags front MP3 files (and, rarely, FLAC); a bad frame after it fails at decoding.
        return "flac" if head[end:end + 4] == b"fLaC" else "mp3"
    if head[:4] == b"fLaC":
        return "flac"
    if _mpeg_frame(head):
        return "mp3"
    return None


def describe_content(head: bytes) -> str:
    """A few words on what non-audio bytes look like (for error messages)."""
    if not head:
        return "an empty file"
    for magic, what in _OTHER:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF":
        return f"a RIFF file of type {head[8:12]!r}, not WAVE"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:1] == b"<":
        return "an HTML or XML document"
    if text[:1] in (b"{", b"["):
        return "JSON or other text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # a multi-byte character cut at the end is still text
            return "binary data of an unknown kind"
    return "plain text"
