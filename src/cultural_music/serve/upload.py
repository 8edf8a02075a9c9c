"""Receive one uploaded recording: stream a multipart body into a private folder, with a size cap.

The body is parsed as it arrives (python-multipart's push parser), the ``file`` part is written
straight to disk and counted; past the cap the upload stops with a 413 at once, so no request
can make the server hold or store more than ``max_bytes`` of it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cultural_music.serve.errors import RequestError
from cultural_music.serve.sniff import SNIFF_BYTES

__all__ = ["FIELD", "Upload", "UploadSpace", "receive_upload", "timed_chunks"]

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
    if n_bytes < 2**20:
        return f"{n_bytes / 1024:.0f} KB"
    return f"{n_bytes / 2**20:.1f}".rstrip("0").rstrip(".") + " MB"


class _FormReader:
    """Callbacks for ``python_multipart.MultipartParser``; writes the first ``file`` part."""

    def __init__(self, target: Path, max_bytes: int, reserve: Callable[[int], None]) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.reserve = reserve
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
        self.reserve(len(chunk))
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
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], folder: Path, *, max_bytes: int,
    reserve: Callable[[int], None] = lambda n: None,
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
    reserve
        Called with the size in bytes of every chunk before it is written (may raise, e.g.
        :meth:`UploadSpace.reserve`'s 507).

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
    reader = _FormReader(folder / "upload", max_bytes, reserve)
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


async def timed_chunks(chunks: AsyncIterator[bytes], *, idle_s: float, total_s: float) -> AsyncIterator[bytes]:
    """``chunks`` as they come, but give up on a client that stalls or trickles.

    Raises
    ------
    RequestError
        408 when no chunk arrives for ``idle_s`` seconds, or the whole body takes longer than
        ``total_s`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    it = aiter(chunks)
    while True:
        left = deadline - loop.time()
        try:
            chunk = await asyncio.wait_for(anext(it), timeout=min(idle_s, max(left, 0.0)))
        except StopAsyncIteration:
            return
        except TimeoutError:
            why = f"no data for {idle_s:g} s" if left > idle_s else f"not complete after {total_s:g} s"
            raise RequestError(408, f"the upload stalled ({why}); send it again") from None
        yield chunk


class UploadSpace:
    """Private per-upload folders (mode 0700) and a cap on the bytes all of them hold together.

    Parameters
    ----------
    max_bytes
        Bytes all uploads in flight may hold together; :meth:`reserve` past it raises 507.
    parent
        Where the folders are made (default: the system temp folder).
    """

    def __init__(self, max_bytes: int, parent: str | Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.parent = parent
        self._lock = threading.Lock()
        self._used: dict[Path, int] = {}
        self._leftover: set[Path] = set()

    @property
    def used(self) -> int:
        """Bytes reserved by the uploads in flight."""
        with self._lock:
            return sum(self._used.values())

    def new_folder(self) -> Path:
        """A new empty private folder for one upload (and a retry of earlier failed deletions)."""
        self.sweep()
        folder = Path(tempfile.mkdtemp(prefix="cultural-music-upload-", dir=self.parent))
        with self._lock:
            self._used[folder] = 0
        return folder

    def reserver(self, folder: Path) -> Callable[[int], None]:
        """A ``reserve`` callback for :func:`receive_upload` that books bytes on ``folder``."""
        def reserve(n_bytes: int) -> None:
            with self._lock:
                total = sum(self._used.values())
                if total + n_bytes > self.max_bytes:
                    raise RequestError(507, f"the server's space for uploads in progress is full "
                                            f"({_mb(self.max_bytes)}); try again in a minute")
                self._used[folder] = self._used.get(folder, 0) + n_bytes
        return reserve

    def remove(self, folder: Path) -> None:
        """Delete ``folder`` and free its bytes; if that fails (e.g. no file handles left),
        it is retried by the next :meth:`new_folder` and by :meth:`sweep`."""
        shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._used.pop(folder, None)
            if folder.exists():
                self._leftover.add(folder)

    def sweep(self) -> None:
        """Retry deleting the folders whose deletion failed before."""
        with self._lock:
            todo, self._leftover = self._leftover, set()
        for folder in todo:
            self.remove(folder)
