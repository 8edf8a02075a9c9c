"""Run a generator one step ahead in a background thread (decode + features of the next batch
while the model runs on this one), keeping order, memory bound and exceptions."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_POLL_SECONDS = 0.1


def prefetch(items: Iterable[T], *, depth: int = 1) -> Iterator[T]:
    """Yield the items of ``items`` in order, producing up to ``depth`` of them ahead in a thread.

    An exception raised while producing is re-raised here, at the position it occurred.  When
    the consumer stops early (break, exception), the producer stops at its next item and the
    source generator is closed (its ``finally`` / ``with`` blocks run).
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(("error", err))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()
