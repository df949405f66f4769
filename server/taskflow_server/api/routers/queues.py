"""Queue routes: status, the v1 dashboard's status stream, queue contents and the DLQ.

``GET /api/v1/queues/status/stream`` speaks the v1 dashboard's dialect: unnamed ``data:`` frames
whose JSON ``type`` is ``initial_status`` (on connect), ``queue_update`` (a full snapshot after
changes, at most :data:`MAX_UPDATES_PER_SECOND` a second, driven by the event log) or
``heartbeat`` (every 15 s). ``queue_depths`` always carries the four numeric keys the dashboard
calls ``toLocaleString()`` on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from redis.exceptions import RedisError

from taskflow_server.api.deps import ApiContext, ContextDep
from taskflow_server.api.hub import snapshot_payload
from taskflow_server.api.schemas import (
    BlobUsageModel,
    PriorityDepths,
    QueueDepthsModel,
    QueueName,
    QueueStatus,
    StateCounts,
    TaskDetail,
)
from taskflow_server.api.sse import HEARTBEAT_SECONDS, EventStreamResponse, sse_frame
from taskflow_server.api.views import task_detail, utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/queues", tags=["queues"])
stream_router = APIRouter(prefix="/api/v1/queues", tags=["queues", "events"])

MAX_UPDATES_PER_SECOND = 4.0
"""The most ``queue_update`` frames one status stream sends per second."""

LimitQuery = Annotated[int, Query(ge=1, le=1000, description="At most this many items.")]


def _now_iso() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")


async def queue_status(ctx: ApiContext) -> QueueStatus:
    """Depths and counts, read from the store."""
    depths = await ctx.queue.depths()
    counts = await ctx.queue.counts()
    blobs = await ctx.blobs.usage()
    return QueueStatus(
        queues=QueueDepthsModel(
            primary=depths.primary,
            retry=depths.retry,
            scheduled=depths.scheduled,
            dlq=depths.dlq,
            active=depths.active,
            primary_by_priority=PriorityDepths(**depths.by_priority),
        ),
        states=StateCounts(**counts),
        retry_ratio=ctx.settings.retry_share,
        blobs=BlobUsageModel(count=blobs.count, bytes=blobs.bytes, max_bytes=blobs.max_bytes),
    )


@router.get("/status", response_model=QueueStatus, summary="Queue depths and state counts")
async def get_status(ctx: ContextDep) -> QueueStatus:
    """``queues.primary`` is the sum over priorities (a number, as in v1); the per-priority
    split is in ``queues.primary_by_priority``. ``states`` has every state. ``blobs`` (not in
    v1) counts the uploaded files the store holds, their bytes and the quota."""
    return await queue_status(ctx)


@router.get("/dlq", response_model=list[TaskDetail], summary="Dead-lettered tasks")
async def get_dlq(ctx: ContextDep, limit: LimitQuery = 100) -> list[TaskDetail]:
    """The DLQ, oldest first, as full task details."""
    ids = await ctx.queue.queue_ids("dlq", limit)
    records = [r for r in await ctx.queue.get_many(ids) if r is not None]
    payloads = await ctx.queue.payloads_many([r.id for r in records])
    return [task_detail(r, p) for r, p in zip(records, payloads, strict=True)]


@router.get(
    "/{name}/tasks",
    response_model=list[str],
    summary="Ids waiting in one queue, in the order they will be taken",
)
async def get_queue_tasks(
    name: Annotated[QueueName, Path(description="primary, retry, scheduled, dlq or active.")],
    ctx: ContextDep,
    limit: LimitQuery = 10,
) -> list[str]:
    """Task ids in queue order (the scheduled set by due time). 422 for an unknown name."""
    return await ctx.queue.queue_ids(name, limit)


async def _status_frames(ctx: ApiContext) -> AsyncIterator[bytes]:
    sub = ctx.hub.subscribe()
    ratio = ctx.settings.retry_share
    min_gap = 1.0 / MAX_UPDATES_PER_SECOND
    try:
        yield await _snapshot_frame(ctx, "initial_status", ratio)
        last_update = time.monotonic()
        last_beat = last_update
        while True:
            wait = max(0.0, HEARTBEAT_SECONDS - (time.monotonic() - last_beat))
            batch = await sub.get(wait)
            if sub.closed:
                return
            changed = bool(batch) or sub.lagged
            if sub.lagged:
                sub.close()
                sub = ctx.hub.subscribe()
            if changed:
                # Coalesce: wait out the gap since the last update, then send one snapshot
                # that covers everything that happened meanwhile.
                pause = min_gap - (time.monotonic() - last_update)
                if pause > 0:
                    await asyncio.sleep(pause)
                await sub.get(0)  # drop what the snapshot below already covers
                yield await _snapshot_frame(ctx, "queue_update", ratio)
                last_update = time.monotonic()
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                yield sse_frame({"type": "heartbeat", "timestamp": _now_iso()})
                last_beat = time.monotonic()
    finally:
        sub.close()


async def _snapshot_frame(ctx: ApiContext, kind: str, ratio: float) -> bytes:
    try:
        snap = await ctx.stats.snapshot(max_age=0.05)
    except (RedisError, OSError) as exc:
        log.warning("queue status stream: the store did not answer: %s", exc)
        body: dict[str, Any] = {
            "type": "error",
            "message": "the task store (Redis) did not answer; retrying",
            "timestamp": _now_iso(),
        }
        return sse_frame(body)
    return sse_frame(snapshot_payload(kind, snap, ratio, _now_iso()))


@stream_router.get(
    "/status/stream",
    response_class=EventStreamResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "SSE, unnamed frames: initial_status, queue_update, heartbeat.",
        }
    },
    summary="Live queue status for the v1 dashboard (SSE)",
)
async def stream_status(ctx: ContextDep) -> EventStreamResponse:
    """An ``initial_status`` snapshot, then a ``queue_update`` snapshot after changes (at most
    four a second) and a ``heartbeat`` every 15 s. Frames are unnamed (``data:`` only)."""
    return EventStreamResponse(_status_frames(ctx))
