"""Receive one uploaded recording: stream a multipart body into a private folder, with a size cap.

The body is parsed as it arrives (python-multipart's push parser), the ``file`` part is written
straight to disk and counted; past the cap the upload stops with a 413 at once, so no request
can make the server hold or store more than ``max_bytes`` of it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import RequestError
from .sniff import SNIFF_BYTES

__all__ = ["FIELD", "Upload", "receive_upload"]

FIELD = "file"
"""Name of the form field that holds the recording."""

_FORM_SLACK = 64 * 1024  # bytes of multipart framing and other (ignored) fields allowed on top
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Upload:
    """An upload saved to disk.

    Attributes
    ----------
    path
        The saved file (inside the caller's private folder; the caller deletes it).
    filename
        The name the browser gave (base name only; for messages, never used as a path).
    size
        Bytes received.
    head
        The first bytes of the file (at most :data:`~.sniff.SNIFF_BYTES`), for sniffing.
    """

    path: Path
    filename: str
    size: int
    head: bytes


def _clean_name(raw: bytes) -> str:
    name = raw.decode("utf-8", errors="replace").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("", name).strip()[:200]
    return name or "upload"


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f}".rstrip("0").rstrip(".") + " MB"


class _FormReader:
    """Callbacks for ``python_multipart.MultipartParser``; writes the first ``file`` part."""

    def __init__(self, target: Path, max_bytes: int) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.name = b""
        self.value = b""
        self.disposition = b""
        self.file: BinaryIO | None = None
        self.writing = False
        self.filename: str | None = None
        self.size = 0
        self.other_bytes = 0
        self.head = bytearray()

    def on_part_begin(self) -> None:
        self.disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        if self.name.strip().lower() == b"content-disposition":
            self.disposition = self.value
        self.name, self.value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.disposition)
        if options.get(b"name") == FIELD.encode() and b"filename" in options and self.filename is None:
            self.filename = _clean_name(options[b"filename"])
            self.file = open(self.target, "xb")  # noqa: SIM115 - closed in on_part_end / close()
            self.writing = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing:
            self.other_bytes += end - start
            if self.other_bytes > _FORM_SLACK:
                raise RequestError(413, f"form fields besides '{FIELD}' are larger than {_FORM_SLACK // 1024} KB")
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise RequestError(413, f"{self.filename}: larger than the {_mb(self.max_bytes)} this server accepts")
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        assert self.file is not None
        self.file.write(chunk)

    def on_part_end(self) -> None:
        if self.writing:
            self.close()
            self.writing = False

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


async def receive_upload(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], folder: Path, *, max_bytes: int
) -> Upload:
    """Stream a ``multipart/form-data`` body and save its ``file`` part as ``folder/upload``.

    Parameters
    ----------
    headers
        Request headers (case-insensitive mapping, as Starlette's).
    chunks
        The request body as it arrives (``request.stream()``).
    folder
        A private folder owned by the caller, who deletes it afterwards.
    max_bytes
        Largest accepted file in bytes.

    Raises
    ------
    RequestError
        400: not a multipart form, malformed, no ``file`` part or an empty file; 413: larger
        than ``max_bytes`` (checked against ``Content-Length`` first, then while streaming).
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise RequestError(400, f"send the recording as multipart/form-data in a field named '{FIELD}'")
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + _FORM_SLACK:
        raise RequestError(413, f"upload of {_mb(int(length))} is larger than the {_mb(max_bytes)} this server accepts")
    reader = _FormReader(folder / "upload", max_bytes)
    callbacks = {name: getattr(reader, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end")}
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as err:
        raise RequestError(400, f"malformed multipart form ({err})") from err
    finally:
        reader.close()
    if reader.filename is None:
        raise RequestError(400, f"no file in the form: send the recording in a field named '{FIELD}'")
    if reader.size == 0:
        raise RequestError(400, f"{reader.filename}: empty file (0 bytes)")
    return Upload(path=folder / "upload", filename=reader.filename, size=reader.size, head=bytes(reader.head))
