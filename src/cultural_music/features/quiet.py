"""Keep the MP3 decoder's own diagnostics off the terminal.

libmpg123 (inside libsndfile) writes lines such as ``[src/libmpg123/layer3.c:...] error:
part2_3_length (1152) too large for available bit count (1144)`` straight to file descriptor 2
while it decodes perfectly usable files; users read them as failures.  :func:`quiet_decoder`
points fd 2 at a scratch file around a libsndfile call, then puts fd 2 back and writes whatever
else landed there (Python's own ``sys.stderr`` output from another thread, other libraries'
messages) to the real stderr: only the decoder's bracketed lines are dropped, nothing else is
lost.  Nested and concurrent use (the prefetch thread decodes while the main thread prints) is
reference-counted under one lock: fd 2 is redirected once, restored when the last user leaves.
Real decode failures are unaffected: their reasons come from libsndfile's return codes.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_decoder"]

# libmpg123's messages: "[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: ..." and its
# resync notes ("Note: Illegal Audio-MPEG-Header 0x... at offset 15.", "Note: Trying to resync...").
_DECODER_LINE = re.compile(
    rb"^(\[[^\]\n]*mpg123[^\]\n]*\]|Note: (Illegal Audio-MPEG-Header|Trying to resync|Skipped \d+ bytes in input"
    rb"|Hit end of \(available\) data))[^\n]*(\n|$)",
    re.MULTILINE,
)


class _Guard:
    """Process-wide state of the redirect: fd 2 is a process resource, so there is one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0  # users inside quiet_decoder()
        self.saved: int | None = None  # duplicate of the real fd 2 while redirected
        self.scratch: int | None = None  # fd of a reused, already unlinked temporary file

    def start(self) -> None:
        """Point fd 2 at the scratch file (left as is if fd 2 cannot be duplicated)."""
        _flush_python_stderr()
        try:
            if self.scratch is None:
                self.scratch = _scratch_fd()
            saved = os.dup(2)
        except OSError:
            return
        try:
            os.dup2(self.scratch, 2)
        except OSError:
            os.close(saved)
            return
        self.saved = saved

    def stop(self) -> None:
        """Put fd 2 back and pass on everything captured except the decoder's lines."""
        if self.saved is None or self.scratch is None:
            return
        _flush_python_stderr()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.saved = None
        try:
            os.lseek(self.scratch, 0, os.SEEK_SET)
            parts = []
            while part := os.read(self.scratch, 1 << 16):
                parts.append(part)
            os.lseek(self.scratch, 0, os.SEEK_SET)
            os.ftruncate(self.scratch, 0)
        except OSError:
            return
        _write_all(_DECODER_LINE.sub(b"", b"".join(parts)))


def _scratch_fd() -> int:
    """A raw read/write fd on a temporary file that is removed at once (or at exit, on Windows)."""
    fd, name = tempfile.mkstemp(prefix="cultural-music-stderr-")
    try:
        os.unlink(name)
    except OSError:  # pragma: no cover - Windows: an open file cannot be removed
        atexit.register(_remove, fd, name)
    return fd


def _remove(fd: int, name: str) -> None:  # pragma: no cover - Windows
    try:
        os.close(fd)
        os.unlink(name)
    except OSError:
        pass


def _flush_python_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):  # closed or broken stderr: nothing to keep
        pass


def _write_all(data: bytes) -> None:
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass


_GUARD = _Guard()


@contextmanager
def quiet_decoder() -> Iterator[None]:
    """Silence the MP3 decoder's writes to fd 2 for the duration of the ``with`` block."""
    with _GUARD.lock:
        if _GUARD.depth == 0:
            _GUARD.start()
        _GUARD.depth += 1
    try:
        yield
    finally:
        with _GUARD.lock:
            _GUARD.depth -= 1
            if _GUARD.depth == 0:
                _GUARD.stop()
