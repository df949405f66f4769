"""Live events: ``GET /api/v1/events`` (SSE over the event log) and ``WS /ws/stats``.

``/api/v1/events`` sends every event of the log as an unnamed ``data:`` frame whose ``id:`` is the
event's stream id. A client that reconnects with ``Last-Event-ID`` (browsers do it by themselves;
``?last_event_id=`` works too) gets exactly the events after that id, in order, then the live
ones: the stream first catches up from the log, then follows the hub, skipping what it already
sent. If the log was trimmed past the client's id, an ``events_lost`` frame says so first.

``/ws/stats`` sends a stats snapshot every 2 s (``?interval=`` changes it) to each client from its
own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, WebSocket
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect

from taskflow_server.api.auth import websocket_refusal
from taskflow_server.api.deps import ApiContext, ContextDep, get_context
from taskflow_server.api.hub import Snapshot, parse_stream_id
from taskflow_server.api.sse import HEARTBEAT_SECONDS, EventStreamResponse, sse_comment, sse_frame
from taskflow_server.api.views import iso, utcnow
from taskflow_server.store.events import Event

log = logging.getLogger(__name__)

stream_router = APIRouter(prefix="/api/v1", tags=["events"])
ws_router = APIRouter(tags=["events"])

CATCH_UP_BATCH = 500
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
    ctx: ApiContext, after: str | None, wanted: _Filter
) -> AsyncIterator[bytes]:
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
        while True:
            # Catch up from the log (the source of truth), then follow the hub.
            while True:
                batch = await ctx.events.read(after=_id(cursor), count=CATCH_UP_BATCH)
                for event in batch:
                    cursor = parse_stream_id(event.id)
                    if wanted(event):
                        yield _frame(event)
                if len(batch) < CATCH_UP_BATCH:
                    break
            while True:
                live = await sub.get(HEARTBEAT_SECONDS)
                if sub.closed:
                    return
                if sub.lagged:
                    sub.close()
                    sub = ctx.hub.subscribe()
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
    nothing happens."""
    after = last_event_id_header or last_event_id
    if after is not None:
        after = after.strip() or None
    if after is not None and after not in ("0", "0-0"):
        try:
            parse_stream_id(after)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    return EventStreamResponse(_event_frames(ctx, after, _Filter(task_id, types)))


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

    Auth: ``Authorization: Bearer`` or ``?token=`` when the server has a token; a refused
    handshake gets HTTP 401.
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
    await websocket.accept()
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
