"""Run the app under uvicorn with guards against slow and numerous clients.

uvicorn (h11) times out idle keep-alive connections, but not a client that connects and then
sends its request head slowly or never, and it accepts connections without bound (each one a
file handle).  :class:`GuardedH11Protocol` closes a connection whose request head has not
arrived ``head_timeout_s`` seconds after it was opened, and answers 503 and closes at once a
connection over ``max_connections``.  Stalls *inside* a body are the app's job
(:func:`~.upload.timed_chunks`, 408).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "make_server", "DEFAULT_HEAD_TIMEOUT_S", "DEFAULT_KEEP_ALIVE_S",
           "DEFAULT_MAX_CONNECTIONS"]

DEFAULT_HEAD_TIMEOUT_S = 10.0
DEFAULT_KEEP_ALIVE_S = 5.0
DEFAULT_MAX_CONNECTIONS = 256

_BUSY = json.dumps({"detail": "server busy: too many open connections; try again in a minute"}).encode()
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
                  b"content-length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a request-head timeout and a cap on open connections.

    The two settings are class attributes (``head_timeout_s`` in seconds, ``max_connections``),
    set on a subclass by :func:`make_server`.
    """

    head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            transport.write(_BUSY_RESPONSE)
            transport.close()
            return
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request head has the same time to arrive

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        cycle = self.cycle
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timeout, cycle)

    def _head_timeout(self, cycle: Any) -> None:
        """Close the connection if no new request head arrived since the timer was armed."""
        waiting = self.cycle is cycle and (cycle is None or cycle.response_complete)
        if waiting and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)


def make_server(app: Any, *, host: str = "127.0.0.1", port: int = 8000, head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S,
                keep_alive_s: float = DEFAULT_KEEP_ALIVE_S, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                log_level: str = "info") -> Any:
    """A ``uvicorn.Server`` for ``app`` (call ``.run()``, or ``await .serve()``).

    Parameters
    ----------
    head_timeout_s
        Seconds a new connection has to send its request line and headers.
    keep_alive_s
        Seconds an idle keep-alive connection is kept open between requests.
    max_connections
        Open connections at most; one more gets 503 and is closed at once.
    """
    import uvicorn

    from cultural_music.errors import check_positive

    for name, value in (("head_timeout_s", head_timeout_s), ("keep_alive_s", keep_alive_s),
                        ("max_connections", max_connections)):
        check_positive(name, "make_server", value)
    protocol = type("Guarded", (GuardedH11Protocol,), {"head_timeout_s": head_timeout_s,
                                                       "max_connections": int(max_connections)})
    config = uvicorn.Config(app, host=host, port=port, http=protocol, log_level=log_level, lifespan="on",
                            timeout_keep_alive=keep_alive_s)  # type: ignore[arg-type]  # a float works
    return uvicorn.Server(config)
