"""Live fan-out for SSE and WebSocket clients.

:class:`EventHub` is the one reader of the event log in an API process: a background task blocks
on ``XREAD`` and hands every batch to each subscriber's bounded buffer, so a thousand open streams
cost one Redis connection, not a thousand. A subscriber that falls behind is marked ``lagged``
and drops out; its stream then catches up from the log itself (the log is the source of truth,
the hub only saves round trips), so a slow client never blocks the others and never loses events.

:class:`StatsCache` shares one fetch of queue depths and state counts between every stream that
wants a snapshot within the same few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from taskflow_server.cancellation import cancel_and_wait
from taskflow_server.store.events import Event, EventLog
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import QueueDepths

log = logging.getLogger(__name__)


def parse_stream_id(value: str) -> tuple[int, int]:
    """A Redis stream id ``<ms>-<seq>`` (or ``<ms>``) as a comparable tuple; ValueError if not."""
    ms, _, seq = value.strip().partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise ValueError(
            f"{value!r} is not an event id (expected <ms>-<seq>, e.g. 1700000000000-0)"
        )
    return int(ms), int(seq or 0)


class Subscription:
    """One subscriber's buffer of events; filled by the hub, drained by one stream."""

    def __init__(self, hub: EventHub, max_buffered: int) -> None:
        self._hub = hub
        self._max = max_buffered
        self._buffer: list[Event] = []
        self._wakeup = asyncio.Event()
        self.lagged = False
        """True once the buffer overflowed: the events since then must be read from the log."""
        self.closed = False
        """True once the hub stopped (the server is shutting down)."""

    def _push(self, events: list[Event]) -> None:
        if self.lagged or self.closed:
            return
        if len(self._buffer) + len(events) > self._max:
            self.lagged = True
            self._buffer.clear()
        else:
            self._buffer.extend(events)
        self._wakeup.set()

    def _close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def get(self, wait_s: float) -> list[Event]:
        """Every buffered event, waiting up to ``wait_s`` s for one; [] on timeout or close.

        Check :attr:`closed` and :attr:`lagged` after an empty answer.
        """
        if not self._buffer and not self.closed and not self.lagged:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait_s)
        events, self._buffer = self._buffer, []
        return events

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        self._hub._unsubscribe(self)


class EventHub:
    """The single event-log reader of an API process.

    Args:
        events: the event log.
        block_ms: how long one ``XREAD`` waits for news (bounds shutdown latency).
        max_buffered: events a subscriber may hold before it is marked lagged.
    """

    def __init__(self, events: EventLog, *, block_ms: int = 1000, max_buffered: int = 10_000):
        self._events = events
        self._block_ms = block_ms
        self._max_buffered = max_buffered
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.position: str | None = None
        """The id of the last event the hub has read (None until it has started)."""

    def subscribe(self) -> Subscription:
        """A new subscription; it receives every event the hub reads from now on."""
        sub = Subscription(self, self._max_buffered)
        if self._stopping:
            sub._close()
        else:
            self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def start(self) -> None:
        """Start the reader task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="taskflow-event-hub")

    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                if self.position is None:
                    self.position = await self._events.last_id()
                batch = await self._events.read(
                    after=self.position, count=1000, block_ms=self._block_ms
                )
                delay = 0.2
            except (RedisError, OSError) as exc:
                log.warning("event hub: reading the event log failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if batch:
                self.position = batch[-1].id
                for sub in list(self._subs):
                    sub._push(batch)

    async def close(self) -> None:
        """Stop reading and close every subscription (their streams then end)."""
        self._stopping = True
        for sub in list(self._subs):
            sub._close()
        self._subs.clear()
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None


class ReplayPermit:
    """One turn at replaying the event log; :meth:`release` gives it back (once)."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = True

    @property
    def held(self) -> bool:
        """Whether the turn is still taken."""
        return self._held

    def release(self) -> None:
        """Give the turn back (idempotent)."""
        if self._held:
            self._held = False
            self._semaphore.release()


class ReplayGate:
    """Caps how many streams replay the event log at the same time.

    A replay reads the log page by page and yields to the event loop between pages, but a
    hundred of them at once still leave the loop little time for anything else (``/live``, the
    in-process worker). Streams beyond the cap wait for a turn.

    Args:
        limit: replays allowed at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Streams waiting for a turn."""
        return self._waiting

    async def acquire(self, wait_s: float | None = None) -> ReplayPermit | None:
        """A turn, waiting up to ``wait_s`` s for one (``None``: as long as it takes).

        Returns ``None`` when no turn came in time.
        """
        if self._semaphore.locked() and wait_s is not None and wait_s <= 0:
            return None
        self._waiting += 1
        try:
            if wait_s is None:
                await self._semaphore.acquire()
            else:
                try:
                    await asyncio.wait_for(self._semaphore.acquire(), wait_s)
                except TimeoutError:
                    return None
        finally:
            self._waiting -= 1
        return ReplayPermit(self._semaphore)


@dataclass(frozen=True)
class Snapshot:
    """Queue depths and state counts at one moment."""

    depths: QueueDepths
    counts: dict[str, int]
    workers_online: int
    taken_at: float

    def queue_depths(self) -> dict[str, int]:
        """Flat numeric depths (``primary`` is the sum over priorities), as v1 streams them."""
        d = self.depths
        return {
            "primary": d.primary,
            "retry": d.retry,
            "scheduled": d.scheduled,
            "dlq": d.dlq,
            "active": d.active,
        }


class StatsCache:
    """Shares one depths + counts fetch between callers that ask within ``max_age`` seconds."""

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._lock = asyncio.Lock()
        self._last: Snapshot | None = None

    async def snapshot(self, max_age: float = 0.1) -> Snapshot:
        """A snapshot no older than ``max_age`` seconds (raises when Redis does not answer)."""
        async with self._lock:
            last = self._last
            if last is not None and time.monotonic() - last.taken_at <= max_age:
                return last
            depths = await self._queue.depths()
            counts = await self._queue.counts()
            since_ms = int((time.time() - self._queue.settings.worker_stale_seconds) * 1000)
            workers_online = int(
                await self._queue.redis.zcount(self._queue.keys.workers, since_ms, "+inf")
            )
            self._last = Snapshot(depths, counts, workers_online, time.monotonic())
            return self._last


def snapshot_payload(kind: str, snap: Snapshot, retry_ratio: float, now_iso: str) -> dict[str, Any]:
    """The JSON of a v1 dashboard frame (``initial_status`` / ``queue_update``)."""
    return {
        "type": kind,
        "queue_depths": snap.queue_depths(),
        "primary_by_priority": dict(snap.depths.by_priority),
        "state_counts": dict(snap.counts),
        "retry_ratio": retry_ratio,
        "timestamp": now_iso,
    }
