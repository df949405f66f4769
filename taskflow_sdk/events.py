"""Live task events from ``GET /api/v1/events`` that survive dropped connections.

:class:`EventStream` (sync) and :class:`AsyncEventStream` (async) connect lazily on first
iteration, decode frames with the one SSE decoder (:mod:`taskflow_sdk._sse`), and when the
connection drops they reconnect with ``Last-Event-ID`` set to the last event they delivered: the
server replays exactly what came after it, so nothing is missed, and :class:`EventCursor` drops
anything at or before that id, so nothing is delivered twice. A status error (401, 404, 422) ends
the stream with its exception; connection failures are retried with backoff and give up after
``max_reconnects`` attempts in a row.

Both are context managers; ``close()`` ends the iteration. They run on a driver (see
:mod:`taskflow_sdk._drivers`), not on a client. :class:`EventPump` and :class:`AsyncEventPump`
read a stream in the background for ``wait(stream=True)``, which asks them for the next event
with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import httpx

from taskflow_sdk._drivers import AsyncDriver, SyncDriver
from taskflow_sdk._flows import RequestSpec, connection_error
from taskflow_sdk._sse import SSEDecoder
from taskflow_sdk.errors import APIConnectionError, error_for_response
from taskflow_sdk.models import Event

__all__ = ["AsyncEventPump", "AsyncEventStream", "EventCursor", "EventPump", "EventStream"]

DEFAULT_MAX_RECONNECTS = 10
"""Failed connection attempts in a row after which a stream gives up."""
RECONNECT_MIN = 0.1
"""Seconds before the first reconnection (unless the server sent ``retry:``)."""
RECONNECT_MAX = 5.0
"""The longest pause between two reconnections."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses after which a stream reconnects instead of ending."""
PUMP_JOIN_SECONDS = 5.0
"""How long closing an :class:`EventPump` waits for its reader thread."""


def stream_position(event_id: str | None) -> tuple[int, int] | None:
    """A stream id ``<ms>-<seq>`` as a comparable tuple (``None`` if it is not one)."""
    if not event_id:
        return None
    ms, _, seq = event_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return None


class EventCursor:
    """Where a resuming stream stands: the last delivered id, the decoder, reconnect pacing.

    No I/O: both streams feed it bytes and ask it what to send and how long to wait.
    """

    def __init__(
        self,
        last_event_id: str | None,
        types: Sequence[str] | None = None,
        task_id: str | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> None:
        self.last_event_id = last_event_id
        self.types = list(types) if types else None
        self.task_id = task_id
        self.max_reconnects = max_reconnects
        self.failures = 0
        self.reconnects = 0
        self.decoder = SSEDecoder()

    def connected(self) -> None:
        """A connection answered 200: start a fresh frame."""
        self.decoder.reset()

    def feed(self, chunk: bytes) -> list[Event]:
        """Decode bytes; returns new events only (duplicates of what was delivered are dropped)."""
        out: list[Event] = []
        for frame in self.decoder.feed(chunk):
            try:
                body = json.loads(frame.data)
            except ValueError:
                body = {"type": frame.event, "data": frame.data}
            if not isinstance(body, dict):
                body = {"type": frame.event, "data": body}
            body.setdefault("id", frame.id)
            event = Event.model_validate(body)
            seen, pos = stream_position(self.last_event_id), stream_position(frame.id)
            if seen is not None and pos is not None and pos <= seen:
                continue
            if frame.id is not None:
                self.last_event_id = frame.id
            self.failures = 0
            out.append(event)
        return out

    def dropped(self, error: BaseException | httpx.Response | None) -> float:
        """The connection ended; the delay before reconnecting. Raises once too many attempts
        in a row have failed (``error`` is what the last one hit)."""
        self.failures += 1
        self.reconnects += 1
        if self.failures > self.max_reconnects:
            if isinstance(error, httpx.Response):
                raise error_for_response(error)
            if isinstance(error, BaseException):
                raise error
            raise APIConnectionError("the event stream kept closing without sending anything")
        if self.failures == 1:
            hinted = self.decoder.retry
            return min(hinted / 1000.0, RECONNECT_MAX) if hinted is not None else RECONNECT_MIN
        return min(RECONNECT_MIN * 2.0 ** (self.failures - 1), RECONNECT_MAX)


def _shutdown_socket(response: httpx.Response) -> None:
    """Shut the socket under a streaming response down, so a read blocked on it in another
    thread returns now rather than at the next heartbeat."""
    stream = response.extensions.get("network_stream")
    get_info = getattr(stream, "get_extra_info", None)
    if get_info is None:
        return
    with contextlib.suppress(Exception):
        sock = get_info("socket")
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)


def _check_status(response: httpx.Response) -> bool:
    """True when the stream may be read; False for a retriable status; raises otherwise."""
    if response.is_success:
        return True
    if response.status_code in RETRY_STATUSES:
        return False
    raise error_for_response(response)


class EventStream(Iterator[Event]):
    """Task events as an iterator, for :class:`~taskflow_sdk.Client` (see module docs).

    Attributes:
        last_event_id: the id of the last event delivered (pass it to ``events()`` to resume).
    """

    def __init__(
        self, driver: SyncDriver, spec: Callable[[str | None], RequestSpec], cursor: EventCursor
    ) -> None:
        self._driver = driver
        self._spec = spec
        self._cursor = cursor
        self._buffer: deque[Event] = deque()
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.connected = threading.Event()
        """Set once a connection has delivered its first bytes (the server is subscribed)."""

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event delivered."""
        return self._cursor.last_event_id

    @property
    def reconnects(self) -> int:
        """How many times the stream reconnected."""
        return self._cursor.reconnects

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopIteration
            if self._chunks is None:
                self._connect()
                continue
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._drop(None)
                continue
            except httpx.TransportError as exc:
                if self._closed:
                    raise StopIteration from None
                self._drop(exc)
                continue
            self.connected.set()
            self._buffer.extend(self._cursor.feed(chunk))
        return self._buffer.popleft()

    def _connect(self) -> None:
        spec = self._spec(self._cursor.last_event_id)
        try:
            response = self._driver.open_stream(spec)
        except httpx.TransportError as exc:
            self._sleep(self._cursor.dropped(connection_error(exc, self._driver.config)))
            return
        if not _check_status(response):
            response.read()
            response.close()
            self._sleep(self._cursor.dropped(response))
            return
        with self._lock:
            if self._closed:
                response.close()
                return
            self._response = response
        self._cursor.connected()
        self._chunks = response.iter_raw()

    def _drop(self, error: BaseException | httpx.Response | None) -> None:
        self._close_response()
        if self._closed:
            return
        if isinstance(error, httpx.TransportError):
            error = connection_error(error, self._driver.config)
        self._sleep(self._cursor.dropped(error))

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._closed and time.monotonic() < deadline:
            time.sleep(min(0.05, deadline - time.monotonic()))

    def _close_response(self, interrupt: bool = False) -> None:
        with self._lock:
            response, self._response, self._chunks = self._response, None, None
        if response is not None:
            if interrupt:
                _shutdown_socket(response)
            response.close()

    def close(self) -> None:
        """End the stream; safe from another thread (a read blocked there returns at once)."""
        self._closed = True
        self._close_response(interrupt=True)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEventStream(AsyncIterator[Event]):
    """Task events as an async iterator, for :class:`~taskflow_sdk.AsyncClient` (see module
    docs).

    Attributes:
        last_event_id: the id of the last event delivered (pass it to ``events()`` to resume).
    """

    def __init__(
        self, driver: AsyncDriver, spec: Callable[[str | None], RequestSpec], cursor: EventCursor
    ) -> None:
        self._driver = driver
        self._spec = spec
        self._cursor = cursor
        self._buffer: deque[Event] = deque()
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._closed = False
        self.connected = asyncio.Event()
        """Set once a connection has delivered its first bytes (the server is subscribed)."""

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event delivered."""
        return self._cursor.last_event_id

    @property
    def reconnects(self) -> int:
        """How many times the stream reconnected."""
        return self._cursor.reconnects

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            if self._chunks is None:
                await self._connect()
                continue
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                await self._drop(None)
                continue
            except httpx.TransportError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                await self._drop(exc)
                continue
            self.connected.set()
            self._buffer.extend(self._cursor.feed(chunk))
        return self._buffer.popleft()

    async def _connect(self) -> None:
        spec = self._spec(self._cursor.last_event_id)
        try:
            response = await self._driver.open_stream(spec)
        except httpx.TransportError as exc:
            await asyncio.sleep(self._cursor.dropped(connection_error(exc, self._driver.config)))
            return
        if not _check_status(response):
            await response.aread()
            await response.aclose()
            await asyncio.sleep(self._cursor.dropped(response))
            return
        if self._closed:
            await response.aclose()
            return
        self._response = response
        self._cursor.connected()
        self._chunks = response.aiter_raw()

    async def _drop(self, error: BaseException | httpx.Response | None) -> None:
        await self._close_response()
        if self._closed:
            return
        if isinstance(error, httpx.TransportError):
            error = connection_error(error, self._driver.config)
        await asyncio.sleep(self._cursor.dropped(error))

    async def _close_response(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            await response.aclose()

    async def aclose(self) -> None:
        """End the stream."""
        self._closed = True
        await self._close_response()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class EventPump:
    """Reads an :class:`EventStream` on a daemon thread into a queue, so that a caller can wait
    for the next event with a timeout (:meth:`next`). ``close()`` ends the stream and the
    thread."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self._inbox: queue.Queue[Event | BaseException] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, name="taskflow-events", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        try:
            for event in self.stream:
                self._inbox.put(event)
        except Exception as exc:
            self._inbox.put(exc)

    def wait_connected(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the stream to connect; whether it did."""
        return self.stream.connected.wait(timeout=seconds)

    def next(self, seconds: float) -> Event | BaseException | None:
        """The next event, the exception that ended the stream, or ``None`` after ``seconds``."""
        try:
            return self._inbox.get(timeout=max(0.0, seconds))
        except queue.Empty:
            return None

    def close(self) -> None:
        """End the stream and wait (briefly) for the reader thread."""
        self.stream.close()
        self._reader.join(timeout=PUMP_JOIN_SECONDS)


class AsyncEventPump:
    """Reads an :class:`AsyncEventStream` in a background task into a queue, so that a caller
    can await the next event with a timeout (:meth:`next`). ``await aclose()`` ends both."""

    def __init__(self, stream: AsyncEventStream) -> None:
        self.stream = stream
        self._inbox: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._reader = asyncio.create_task(self._pump(), name="taskflow-events")

    async def _pump(self) -> None:
        try:
            async for event in self.stream:
                self._inbox.put_nowait(event)
        except Exception as exc:
            self._inbox.put_nowait(exc)

    async def wait_connected(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the stream to connect; whether it did."""
        try:
            await asyncio.wait_for(self.stream.connected.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def next(self, seconds: float) -> Event | BaseException | None:
        """The next event, the exception that ended the stream, or ``None`` after ``seconds``."""
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout=max(0.0, seconds))
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        """Stop the reader task and end the stream."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self.stream.aclose()
