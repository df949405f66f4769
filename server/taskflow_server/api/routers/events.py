"""Live events: ``GET /api/v1/events`` (SSE over the event log) and ``WS /ws/stats``.

``/api/v1/events`` sends every event of the log as an unnamed ``data:`` frame whose ``id:`` is the
event's stream id. A client that reconnects with ``Last-Event-ID`` (browsers do it by themselves;
``?last_event_id=`` works too) gets exactly the events after that id, in order, then the live
ones: the stream first catches up from the log, then follows the hub, skipping what it already
sent. If the log was trimmed past the client's id, an ``events_lost`` frame says so first.

Catching up reads the log in pages of :data:`CATCH_UP_BATCH` and gives the event loop a turn
every :data:`YIELD_EVERY` events, and at most ``replay_max_concurrent`` streams catch up at once
(:class:`~taskflow_server.api.hub.ReplayGate`): a resume over the cap waits up to
``replay_wait_seconds`` for a turn, then gets 503 with ``Retry-After``. A stream without a
``Last-Event-ID`` starts live and never waits.

``/ws/stats`` sends a stats snapshot every 2 s (``?interval=`` changes it) to each client from its
own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, WebSocket
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect

from taskflow_server.api.auth import websocket_refusal, websocket_subprotocol
from taskflow_server.api.deps import ApiContext, ContextDep, get_context
from taskflow_server.api.hub import ReplayPermit, Snapshot, parse_stream_id
from taskflow_server.api.sse import HEARTBEAT_SECONDS, EventStreamResponse, sse_comment, sse_frame
from taskflow_server.api.views import iso, utcnow
from taskflow_server.store.events import Event

log = logging.getLogger(__name__)

stream_router = APIRouter(prefix="/api/v1", tags=["events"])
ws_router = APIRouter(tags=["events"])

CATCH_UP_BATCH = 500
"""Events read from the log per page while a stream catches up."""

YIELD_EVERY = 100
"""A catching-up stream gives the event loop a turn after this many events."""

REPLAY_RETRY_AFTER_S = 2
"""The ``Retry-After`` of a 503 to a replay that found no turn within the wait."""

STATS_INTERVAL = 2.0
"""Seconds between two ``/ws/stats`` snapshots by default."""


class _Filter:
    def __init__(self, task_id: str | None, types: str | None) -> None:
        self.task_id = task_id or None
        self.types = {t.strip() for t in types.split(",") if t.strip()} if types else None

    def __call__(self, event: Event) -> bool:
        if self.task_id is not None and event.task_id != self.task_id:
            return False
        return self.types is None or event.type in self.types


def _frame(event: Event) -> bytes:
    body: dict[str, Any] = event.as_dict()
    when = iso(event.ts)
    body["timestamp"] = when.isoformat().replace("+00:00", "Z") if when else None
    return sse_frame(body, event_id=event.id)


async def _event_frames(
    ctx: ApiContext, after: str | None, wanted: _Filter, permit: ReplayPermit | None
) -> AsyncGenerator[bytes, None]:
    """The stream: catch up from the log after ``after`` (holding ``permit``), then live."""
    sub = ctx.hub.subscribe()
    live_from = ctx.hub.position  # read with the subscription: every later event reaches `sub`
    try:
        yield b"retry: 3000\n\n"
        if after is None:
            after = live_from or await ctx.events.last_id()
        elif after not in ("0", "0-0"):
            first = await ctx.events.first_id()
            if first is not None and parse_stream_id(first) > parse_stream_id(after):
                yield sse_frame(
                    {
                        "type": "events_lost",
                        "message": f"the event log no longer holds the events after {after}; "
                        f"resuming from its oldest event {first}",
                        "oldest_id": first,
                    }
                )
        cursor = parse_stream_id(after)
        lagged = False
        while True:
            # Catch up from the log (the source of truth), then follow the hub.
            if lagged:
                permit = await ctx.replays.acquire()  # a lagged stream waits for its turn
            try:
                async for event in _replay(ctx, cursor):
                    cursor = parse_stream_id(event.id)
                    if wanted(event):
                        yield _frame(event)
            finally:
                if permit is not None:
                    permit.release()
                permit = None
            while True:
                live = await sub.get(HEARTBEAT_SECONDS)
                if sub.closed:
                    return
                if sub.lagged:
                    sub.close()
                    sub = ctx.hub.subscribe()
                    lagged = True
                    break  # back to catching up from the log
                if not live:
                    yield sse_comment()
                    continue
                for event in live:
                    position = parse_stream_id(event.id)
                    if position <= cursor:
                        continue
                    cursor = position
                    if wanted(event):
                        yield _frame(event)
    finally:
        sub.close()
        if permit is not None:
            permit.release()


async def _replay(ctx: ApiContext, cursor: tuple[int, int]) -> AsyncIterator[Event]:
    """Every event of the log after ``cursor``, in pages, yielding to the loop in between.

    A page is :data:`CATCH_UP_BATCH` entries; every :data:`YIELD_EVERY` events (and after each
    page) the loop gets a turn, so a replay of the whole log never holds it for long.
    """
    while True:
        batch = await ctx.events.read(after=_id(cursor), count=CATCH_UP_BATCH)
        for n, event in enumerate(batch, start=1):
            cursor = parse_stream_id(event.id)
            yield event
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        if len(batch) < CATCH_UP_BATCH:
            return
        await asyncio.sleep(0)


class _ReplayBody:
    """The body iterator of a stream that holds a replay turn.

    The turn goes back when the stream ends, when the response closes the iterator (even one
    that never started: a client gone before the first frame), or, as a last resort, when the
    iterator is garbage-collected.
    """

    def __init__(self, frames: AsyncGenerator[bytes, None], permit: ReplayPermit) -> None:
        self._frames = frames
        self._permit = permit
        loop = asyncio.get_running_loop()
        weakref.finalize(self, _release_soon, loop, permit)

    def __aiter__(self) -> _ReplayBody:
        return self

    async def __anext__(self) -> bytes:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        """Give the turn back and close the frames."""
        self._permit.release()
        await self._frames.aclose()


def _release_soon(loop: asyncio.AbstractEventLoop, permit: ReplayPermit) -> None:
    if permit.held:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits any more
            loop.call_soon_threadsafe(permit.release)


def _id(cursor: tuple[int, int]) -> str:
    return f"{cursor[0]}-{cursor[1]}"


@stream_router.get(
    "/events",
    response_class=EventStreamResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "SSE: one unnamed frame per event, `id:` = the event's stream id.",
        },
        422: {"description": "The Last-Event-ID is not an event id."},
        503: {"description": "Too many streams are replaying the event log; retry later."},
    },
    summary="Every task event, live, resumable (SSE)",
)
async def stream_events(
    ctx: ContextDep,
    last_event_id: Annotated[
        str | None,
        Query(max_length=64, description="Resume after this event id (the header wins)."),
    ] = None,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=64)
    ] = None,
    task_id: Annotated[
        str | None, Query(max_length=200, description="Only events of this task.")
    ] = None,
    types: Annotated[
        str | None,
        Query(max_length=500, description="Comma-separated event types, e.g. task_created."),
    ] = None,
) -> EventStreamResponse:
    """Frames carry ``{id, type, task_id, state, old_state, ts, timestamp, ...}``; types are
    task_created, task_state_changed, task_progress, task_cancel_requested, task_deleted,
    task_expired, and breaker_state_changed (the circuit breaker's ``state``/``old_state``, with
    ``breaker`` and ``reason``, no ``task_id``). A ``: ping`` comment comes every 15 s when
    nothing happens.

    A resume (``Last-Event-ID``) waits for a replay turn while ``replay_max_concurrent`` other
    streams are catching up; after ``replay_wait_seconds`` without one it is answered 503 with
    ``Retry-After``."""
    after = last_event_id_header or last_event_id
    if after is not None:
        after = after.strip() or None
    if after is not None and after not in ("0", "0-0"):
        try:
            position = parse_stream_id(after)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if max(position) >= 2**64:  # Redis stream ids are two unsigned 64-bit numbers
            raise HTTPException(
                422,
                f"{after!r} is out of range: each part of an event id is at most 2**64-1 "
                "(send the id of the last event you received)",
            )
    wanted = _Filter(task_id, types)
    if after is None:
        return EventStreamResponse(_event_frames(ctx, after, wanted, None))
    permit = await ctx.replays.acquire(ctx.settings.replay_wait_seconds)
    if permit is None:
        raise HTTPException(
            503,
            f"{ctx.replays.limit} event streams are replaying the event log already "
            "(TASKFLOW_REPLAY_MAX_CONCURRENT); reconnect after Retry-After seconds",
            headers={"Retry-After": str(REPLAY_RETRY_AFTER_S)},
        )
    try:
        return EventStreamResponse(_ReplayBody(_event_frames(ctx, after, wanted, permit), permit))
    except BaseException:
        permit.release()
        raise


def _stats_message(snap: Snapshot, retry_ratio: float) -> dict[str, Any]:
    by_priority = snap.depths.by_priority
    counts = snap.counts
    return {
        "type": "stats",
        "queue_depths": snap.queue_depths(),
        "primary_by_priority": dict(by_priority),
        "state_counts": dict(counts),
        "retry_ratio": retry_ratio,
        "workers_online": snap.workers_online,
        # Flat names other queue dashboards read.
        "queued_high": by_priority.get("high", 0),
        "queued_default": by_priority.get("default", 0),
        "queued_low": by_priority.get("low", 0),
        "active_tasks": counts.get("ACTIVE", 0),
        "failed_tasks": counts.get("DLQ", 0),
        "success_tasks": counts.get("COMPLETED", 0),
        "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
    }


@ws_router.websocket("/ws/stats")
async def ws_stats(websocket: WebSocket) -> None:
    """A stats snapshot every ``interval`` seconds (default 2, 0.2..60) until the client leaves.

    Auth: ``Authorization: Bearer``, the subprotocol pair ``bearer, <token>`` (answered with
    ``bearer``) or ``?token=`` when the server has a token; a refused handshake gets HTTP 401.
    """
    ctx = get_context(websocket)
    reason = websocket_refusal(websocket)
    if reason is not None:
        await _deny(websocket, 401, reason)
        return
    try:
        interval = float(websocket.query_params.get("interval", STATS_INTERVAL))
    except ValueError:
        interval = -1.0
    if not 0.2 <= interval <= 60.0:
        await _deny(websocket, 422, "interval must be a number of seconds from 0.2 to 60")
        return
    await websocket.accept(subprotocol=websocket_subprotocol(websocket))
    gone = asyncio.Event()

    async def watch() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        while not gone.is_set() and not ctx.stopping.is_set():
            try:
                snap = await ctx.stats.snapshot(max_age=min(1.0, interval / 2))
                message = _stats_message(snap, ctx.settings.retry_share)
            except (RedisError, OSError):
                message = {
                    "type": "error",
                    "message": "the task store (Redis) did not answer; retrying",
                    "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
                }
            try:
                await websocket.send_json(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                break
            await _wait_any(gone, ctx.stopping, wait_s=interval)
        if not gone.is_set():
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.close(code=1001 if ctx.stopping.is_set() else 1000)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _wait_any(*events: asyncio.Event, wait_s: float) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def _deny(websocket: WebSocket, status: int, detail: str) -> None:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    try:
        await websocket.send_denial_response(
            JSONResponse({"detail": detail}, status_code=status, headers=headers)
        )
    except RuntimeError:  # the server cannot send an HTTP response to a WebSocket handshake
        await websocket.close(code=1008, reason=detail[:120])
