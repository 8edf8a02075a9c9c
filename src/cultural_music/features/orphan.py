"""Worker processes that do not outlive the process that started them.

A pool worker started through ``forkserver`` is a child of the fork server, not of the process
that owns the pool, and the fork server only exits once every worker has closed its end of the
server's pipe: when the owner is killed with SIGKILL (no ``finally`` runs) the workers and the
server would otherwise stay, idle or still decoding.  :func:`exit_with_owner`, called in a
worker's initializer, arranges two ways out:

* Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel signals the worker when its parent dies
  (the owner itself with ``spawn``, the fork server with ``forkserver``);
* a daemon thread that checks every :data:`POLL_SECONDS` whether the owner process still exists
  (pid plus start time, so a reused pid is not mistaken for it) and ends the worker if not.  With
  the workers gone, the fork server sees the end of its pipe and exits too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from pathlib import Path

__all__ = ["POLL_SECONDS", "owner_token", "exit_with_owner"]

POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie counts as gone


def owner_token() -> tuple[int, str | None]:
    """What identifies this process to its workers: ``(pid, start time or None)``."""
    return os.getpid(), _start_time(os.getpid())


def _owner_alive(token: tuple[int, str | None]) -> bool:
    pid, started = token
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else: a reused pid
        return False
    except OSError:  # pragma: no cover - no way to tell; keep running
        return True
    return started is None or _start_time(pid) == started


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog still works
        pass


def _watch(token: tuple[int, str | None], parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent or not _owner_alive(token):
            os._exit(1)  # noqa: SLF001 - nothing of this worker's is worth finishing for nobody


def exit_with_owner(token: tuple[int, str | None]) -> None:
    """End this (worker) process when the process ``token`` names (see :func:`owner_token`) or
    this process's parent dies.  Call once, early, in the worker."""
    parent = os.getppid()
    _set_parent_death_signal()
    if os.getppid() != parent or not _owner_alive(token):  # died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(token, parent), name="exit-with-owner", daemon=True).start()
