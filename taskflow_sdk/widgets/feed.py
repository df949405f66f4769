"""The panel's live feed: an event reader and a pump, on threads (``Client``) or on the kernel's
event loop (``AsyncClient``).

The **reader** iterates ``client.events(last_event_id=...)`` and hands every event to the sink;
the SDK's stream reconnects by itself after a dropped connection, and when it gives up (a server
that stays down) the reader starts a new stream from the last event it saw, with backoff, so the
panel survives a server restart. The **pump** is the panel's only clock: it reads the snapshots
the :class:`RefreshPolicy` says are due, then redraws what changed, at most ``refresh_hz`` times
a second, however fast events arrive. Nothing polls per widget.

The sink (:class:`~taskflow_sdk.widgets.panel.ControlPanel`) does the pure work; this module
only moves data and keeps time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskflow_sdk.widgets.state import Want

__all__ = [
    "AsyncFeed",
    "FaultGuard",
    "FeedSink",
    "RefreshPolicy",
    "ThreadFeed",
    "fetcher",
    "is_async_client",
]

KINDS: tuple[Want, ...] = (
    Want.QUEUES,
    Want.WORKERS,
    Want.DLQ,
    Want.HEALTH,
    Want.OPENROUTER,
    Want.METRICS,
    Want.BATCHES,
)
"""Every snapshot the pump reads, in the order it reads them."""

SNAPSHOT_NAMES: dict[Want, str] = {
    Want.QUEUES: "queues",
    Want.WORKERS: "workers",
    Want.DLQ: "dlq",
    Want.HEALTH: "health",
    Want.OPENROUTER: "openrouter",
    Want.METRICS: "metrics",
    Want.BATCHES: "batches",
}
"""The :meth:`~taskflow_sdk.widgets.state.PanelState.apply_snapshot` kind of each snapshot."""

RECONNECT_MIN = 0.5
"""Seconds before starting a new event stream after one gave up (doubling each time)..."""
RECONNECT_MAX = 5.0
"""...up to this many."""
FAULT_RETRY = 0.5
"""Seconds the pump waits after an error of its own before it goes on."""
FAULT_SHOWN = 2.0
"""A fault stays in the header at least this long after the pump works again."""

logger = logging.getLogger("taskflow_sdk.widgets")


@dataclass
class RefreshPolicy:
    """When each snapshot is read (pure; times are ``time.monotonic()`` seconds).

    A snapshot that events made wanted is read at most once per ``busy_gap`` seconds; one nobody
    asked for is still read every ``idle_every`` seconds, because heartbeats and the upstream's
    state have no events of their own (the breaker has: its events ask for a workers read).
    """

    busy_gap: dict[Want, float] = field(
        default_factory=lambda: {
            Want.QUEUES: 0.5,
            Want.WORKERS: 1.0,
            Want.DLQ: 1.0,
            Want.HEALTH: 5.0,
            Want.OPENROUTER: 2.0,
            Want.METRICS: 5.0,
            Want.BATCHES: 1.0,
        }
    )
    idle_every: dict[Want, float] = field(
        default_factory=lambda: {
            Want.QUEUES: 5.0,
            Want.WORKERS: 2.0,
            Want.DLQ: 15.0,
            Want.HEALTH: 5.0,
            Want.OPENROUTER: 5.0,
            Want.METRICS: 30.0,
            Want.BATCHES: 3.0,
        }
    )
    last: dict[Want, float] = field(default_factory=dict)

    def due(self, wants: Want, now: float) -> list[Want]:
        """The snapshots to read now."""
        out = []
        for kind in KINDS:
            since = now - self.last.get(kind, -1e18)
            if (wants & kind and since >= self.busy_gap[kind]) or since >= self.idle_every[kind]:
                out.append(kind)
        return out

    def next_due(self, wants: Want, now: float) -> float:
        """Seconds until the next snapshot is due (0 when one is due now)."""
        best = float("inf")
        for kind in KINDS:
            last = self.last.get(kind, -1e18)
            wait = self.idle_every[kind]
            if wants & kind:
                wait = min(wait, self.busy_gap[kind])
            best = min(best, last + wait - now)
        return max(0.0, best)

    def mark(self, kind: Want, now: float) -> None:
        """Record that ``kind`` was read at ``now``."""
        self.last[kind] = now


class FeedSink(Protocol):
    """What the feed drives (the control panel implements it)."""

    def last_event_id(self) -> str | None:
        """Where a new stream should resume."""
        ...

    def ingest(self, event: Any) -> None:
        """Apply one event (cheap: no redraw)."""
        ...

    def feed_error(self, error: BaseException | None) -> None:
        """The stream failed (or ``None``: it connected)."""
        ...

    def feed_fault(self, error: BaseException | None) -> None:
        """Something inside the feed failed (``None``: it works again); the feed goes on."""
        ...

    def due_snapshots(self, now: float) -> list[Want]:
        """Snapshots to read now (claimed: the sink will not return them again at once)."""
        ...

    def batch_task_ids(self) -> list[str]:
        """Ids of the watched batches' unfinished tasks (what a BATCHES snapshot reads)."""
        ...

    def apply_snapshot(self, kind: Want, data: Any, read_at: float) -> None:
        """A snapshot arrived; ``read_at`` is the epoch time its request was sent."""
        ...

    def snapshot_failed(self, kind: Want, error: BaseException) -> None:
        """A snapshot call failed."""
        ...

    def render_due(self, now: float) -> float | None:
        """Redraw if due; returns seconds until the next redraw is due (None: nothing pending)."""
        ...

    def next_wake_in(self, now: float) -> float:
        """Seconds until the pump has something to do (a snapshot, a timeline tick)."""
        ...


def is_async_client(client: Any) -> bool:
    """True for an ``AsyncClient`` (its calls are coroutines)."""
    return inspect.iscoroutinefunction(getattr(client, "queues", None))


def fetcher(
    client: Any,
    kind: Want,
    *,
    days: int,
    dlq_limit: int,
    batch_ids: Callable[[], list[str]] = list,
) -> Callable[[], Any]:
    """The SDK call that reads snapshot ``kind`` (a coroutine function for an AsyncClient);
    ``batch_ids`` gives the task ids a BATCHES snapshot asks about."""
    calls: dict[Want, Callable[[], Any]] = {
        Want.BATCHES: lambda: client.statuses(batch_ids()),
        Want.QUEUES: lambda: client.queues(),
        Want.WORKERS: lambda: client.workers(),
        Want.DLQ: lambda: client.dlq(dlq_limit),
        Want.HEALTH: lambda: client.health(),
        Want.OPENROUTER: lambda: client.openrouter.status(),
        Want.METRICS: lambda: client.openrouter.metrics(days=days),
    }
    return calls[kind]


class _Feed:
    """What both feeds hold: the client, the sink, and which snapshot call reads what."""

    def __init__(self, client: Any, sink: FeedSink, *, days: int, dlq_limit: int) -> None:
        self._client = client
        self._sink = sink
        self._days = days
        self._dlq_limit = dlq_limit
        self._stream: Any = None

    @property
    def connected(self) -> bool:
        """True while an event stream is connected (events arrive as they happen)."""
        return _stream_connected(self._stream)

    def _fetch(self, kind: Want) -> Callable[[], Any]:
        return fetcher(
            self._client,
            kind,
            days=self._days,
            dlq_limit=self._dlq_limit,
            batch_ids=self._sink.batch_task_ids,
        )


class ThreadFeed(_Feed):
    """The feed for a sync ``Client``: a reader thread and a pump thread (both daemons)."""

    def __init__(self, client: Any, sink: FeedSink, *, days: int, dlq_limit: int) -> None:
        super().__init__(client, sink, days=days, dlq_limit=dlq_limit)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        """True until :meth:`stop`, while both threads are alive."""
        return (
            bool(self._threads)
            and not self._stop.is_set()
            and all(t.is_alive() for t in self._threads)
        )

    def start(self, connect_timeout: float = 2.0) -> None:
        """Start both threads; wait up to ``connect_timeout`` seconds for the stream to
        connect, so that work submitted right after sees its events."""
        self._threads = [
            threading.Thread(target=self._read, name="taskflow-panel-events", daemon=True),
            threading.Thread(target=self._pump, name="taskflow-panel-pump", daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + connect_timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            connected = getattr(self._stream, "connected", None)
            if isinstance(connected, threading.Event) and connected.wait(0.05):
                return
            time.sleep(0.01)

    def wake(self) -> None:
        """Ask the pump to look again now (after an action)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """End the stream and both threads."""
        self._stop.set()
        self._wake.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def _read(self) -> None:
        backoff = RECONNECT_MIN
        while not self._stop.is_set():
            try:
                stream = self._client.events(last_event_id=self._sink.last_event_id())
                self._stream = stream
                if self._stop.is_set():  # stop() may have looked before the assignment
                    break
                for event in stream:
                    self._sink.ingest(event)
                    self._wake.set()
                    backoff = RECONNECT_MIN
                    if self._stop.is_set():
                        break
            except Exception as exc:  # the stream gave up: the server is down or refused us
                if not self._stop.is_set():
                    _tell(self._sink.feed_error, exc)
                    self._wake.set()
            finally:
                stream, self._stream = self._stream, None
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    def _pump(self) -> None:
        guard = FaultGuard(self._sink)
        while not self._stop.is_set():
            try:
                self._pump_once()
            except Exception as exc:  # a bug or a surprise: say so, wait a little, go on
                guard.failed(exc)
                self._stop.wait(FAULT_RETRY)
            else:
                guard.worked()

    def _pump_once(self) -> None:
        """Read the snapshots that are due, redraw, then sleep until there is work."""
        sink = self._sink
        for kind in sink.due_snapshots(time.monotonic()):
            if self._stop.is_set():
                return
            read_at = time.time()
            try:
                data = self._fetch(kind)()
            except Exception as exc:
                sink.snapshot_failed(kind, exc)
            else:
                sink.apply_snapshot(kind, data, read_at)
            sink.render_due(time.monotonic())  # a slow snapshot must not hold redraws
        until_render = sink.render_due(time.monotonic())
        wait = sink.next_wake_in(time.monotonic())
        if until_render is not None:
            # A redraw is pending: sleep until it is due, not on every event's wake-up.
            self._stop.wait(min(wait, until_render))
        else:
            self._wake.wait(wait)
        self._wake.clear()


class AsyncFeed(_Feed):
    """The feed for an ``AsyncClient``: two tasks on the running loop (the kernel's)."""

    YIELD_EVERY = 64
    """Events read between two explicit yields to the loop (keeps the kernel answering)."""

    def __init__(self, client: Any, sink: FeedSink, *, days: int, dlq_limit: int) -> None:
        super().__init__(client, sink, days=days, dlq_limit=dlq_limit)
        self._stopped = False
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        """True until :meth:`stop`, while both tasks are alive."""
        return bool(self._tasks) and not self._stopped and not any(t.done() for t in self._tasks)

    def start(self) -> None:
        """Start both tasks on the running loop (raises RuntimeError when none runs)."""
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._tasks = [
            self.loop.create_task(self._read(), name="taskflow-panel-events"),
            self.loop.create_task(self._pump(), name="taskflow-panel-pump"),
        ]

    def wake(self) -> None:
        """Ask the pump to look again now (safe from any thread)."""
        loop, wake = self.loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        if _on_loop(loop):
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    def stop(self) -> None:
        """Cancel both tasks (the stream's connection closes with them)."""
        self._stopped = True
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        for task in self._tasks:
            if _on_loop(loop):
                task.cancel()
            else:
                loop.call_soon_threadsafe(task.cancel)

    async def _read(self) -> None:
        backoff = RECONNECT_MIN
        while not self._stopped:
            stream = self._client.events(last_event_id=self._sink.last_event_id())
            self._stream = stream
            try:
                count = 0
                async for event in stream:
                    self._sink.ingest(event)
                    assert self._wake is not None
                    self._wake.set()
                    backoff = RECONNECT_MIN
                    count += 1
                    if count % self.YIELD_EVERY == 0:
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _tell(self._sink.feed_error, exc)
                if self._wake is not None:
                    self._wake.set()
            finally:
                self._stream = None
                with contextlib.suppress(Exception):
                    await stream.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    async def _pump(self) -> None:
        guard = FaultGuard(self._sink)
        while not self._stopped:
            try:
                await self._pump_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or a surprise: say so, wait a little, go on
                guard.failed(exc)
                await asyncio.sleep(FAULT_RETRY)
            else:
                guard.worked()

    async def _pump_once(self) -> None:
        """Read the snapshots that are due, redraw, then sleep until there is work."""
        sink = self._sink
        assert self._wake is not None
        for kind in sink.due_snapshots(time.monotonic()):
            read_at = time.time()
            try:
                data = await self._fetch(kind)()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                sink.snapshot_failed(kind, exc)
            else:
                sink.apply_snapshot(kind, data, read_at)
            sink.render_due(time.monotonic())  # a slow snapshot must not hold redraws
        until_render = sink.render_due(time.monotonic())
        wait = sink.next_wake_in(time.monotonic())
        if until_render is not None:
            await asyncio.sleep(min(wait, until_render))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
        self._wake.clear()


class FaultGuard:
    """Tells the sink when the pump fails and, once it has worked again for
    :data:`FAULT_SHOWN` seconds, that it recovered; logs each new kind of failure once."""

    def __init__(self, sink: FeedSink) -> None:
        self._sink = sink
        self._since: float | None = None
        self._logged: set[str] = set()

    def failed(self, error: BaseException) -> None:
        """The pump's last round raised ``error``."""
        self._since = time.monotonic()
        kind = type(error).__name__
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning("control panel feed: %s (it goes on)", kind, exc_info=error)
        _tell(self._sink.feed_fault, error)

    def worked(self) -> None:
        """The pump's last round went through."""
        if self._since is not None and time.monotonic() - self._since >= FAULT_SHOWN:
            self._since = None
            _tell(self._sink.feed_fault, None)


def _tell(call: Callable[[Any], None], value: Any) -> None:
    """Report to the sink; a sink that fails here must not end the feed's thread."""
    try:
        call(value)
    except Exception:
        logger.exception("control panel: reporting to the panel failed")


def _stream_connected(stream: Any) -> bool:
    """Whether the SDK stream ``stream`` (or None) has connected: its ``connected`` is a
    ``threading.Event`` or an ``asyncio.Event``."""
    flag = getattr(stream, "connected", None)
    return flag is not None and bool(flag.is_set())


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
