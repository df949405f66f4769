"""Slow-client guards for uvicorn: a deadline for request heads and a cap on open connections.

Why a protocol subclass, and not uvicorn settings alone (checked against uvicorn 0.55 with h11,
the HTTP implementation installed here):

* uvicorn arms its keep-alive timer only after a response, and drops it at the first byte of the
  next request; h11 has no head timeout. So a client that connects and sends its request head a
  few bytes at a time (slowloris), or sends nothing at all, holds its connection forever.
* ``limit_concurrency`` counts open connections, but uvicorn looks at it only once a request
  head is complete (it then answers that request 503). Connections that never finish their
  head are never refused or closed, so they still use up file descriptors.

:func:`guarded_h11_protocol` returns a small subclass of uvicorn's ``H11Protocol``, passed as
``uvicorn.Config(http=...)``. It adds a timer per connection, armed when the connection opens
and whenever a new request head starts arriving, and cancelled once h11 has parsed a complete
head; when it fires first, the client gets ``408`` and the connection is closed. A connection
that would take the server over ``max_connections`` (HTTP and WebSocket together) gets ``503``
with ``Retry-After`` and is closed at once, before it can hold anything. Request bodies and
responses are not timed here: routes bound their own reads, and streams are meant to be long.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

FD_RESERVE = 320
"""File descriptors kept free for everything but client connections (Redis pool, files...)."""

WARN_EVERY_S = 10.0
"""The least time between two log lines about refused or timed-out connections."""


def _raw_response(status: str, body: str, extra: str = "") -> bytes:
    """A complete ``Connection: close`` response, written before any request was parsed."""
    data = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(data)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode() + data


_HEAD_TIMEOUT_RESPONSE = _raw_response(
    "408 Request Timeout", "the request head did not arrive within header_timeout"
)
_OVER_CAPACITY_RESPONSE = _raw_response(
    "503 Service Unavailable",
    "too many connections: the server holds max_connections already",
    "retry-after: 1\r\n",
)


class _Throttled:
    """Counts an occurrence and logs a warning at most every :data:`WARN_EVERY_S` seconds."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._count = 0
        self._last = 0.0

    def hit(self) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= WARN_EVERY_S:
            log.warning("%d connection(s) %s", self._count, self._what)
            self._count = 0
            self._last = now


_timed_out = _Throttled("closed: the request head did not arrive within header_timeout")
_refused = _Throttled("refused: the server already holds max_connections connections")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection cap.

    Use :func:`guarded_h11_protocol` to get a subclass with the limits set.
    """

    header_timeout: float = 10.0
    """Seconds a request head may take, from the connection or from its first byte."""

    max_connections: int = 1000
    """The most connections (HTTP and WebSocket) the server holds at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse the connection when over the cap, else start the head deadline."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            _refused.hit()
            transport.write(_OVER_CAPACITY_RESPONSE)
            transport.close()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does, then arm the deadline while a head is incomplete."""
        super().data_received(data)
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            # A complete head was parsed (a request runs, or the connection was upgraded).
            self._cancel_head_timer()
        elif self._head_timer is None:
            # Part of a new head is buffered: it must be complete within header_timeout.
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline, then clean up as uvicorn does."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:
            return  # closed already, or upgraded to a WebSocket
        if self.conn.their_state is not h11.IDLE:
            return  # the head arrived; a request is running
        _timed_out.hit()
        transport.write(_HEAD_TIMEOUT_RESPONSE)
        transport.close()


def connection_cap(configured: int) -> int:
    """``configured``, lowered to what the process's open-file limit leaves for clients.

    Each connection is a file descriptor; past the soft ``RLIMIT_NOFILE`` the server can no
    longer accept anyone (nor open Redis connections), so the cap keeps :data:`FD_RESERVE` free.
    """
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return configured
    if soft == resource.RLIM_INFINITY:
        return configured
    room = max(16, int(soft) - FD_RESERVE)
    if configured > room:
        log.warning(
            "max_connections=%d is above what the open-file limit (%d) leaves for clients; "
            "using %d (raise `ulimit -n` to allow more)",
            configured,
            soft,
            room,
        )
        return room
    return configured


def guarded_h11_protocol(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with these limits, for ``uvicorn.Config(http=)``.

    Args:
        header_timeout: seconds a request head may take before the connection is closed (408).
        max_connections: connections held at once; further ones get 503 and are closed. Lowered
            to fit the open-file limit (see :func:`connection_cap`).
    """
    attrs = {"header_timeout": header_timeout, "max_connections": connection_cap(max_connections)}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attrs)
