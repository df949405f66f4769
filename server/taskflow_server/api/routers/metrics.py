"""``GET /metrics``: the Prometheus text exposition, read from Redis on every scrape.

Everything comes from the store (see :mod:`taskflow_server.observability.metrics`), so every API
process answers the same numbers, work done by ``taskflow-worker`` processes included. The route
is guarded like ``/api``: with ``TASKFLOW_API_TOKEN`` set a scrape needs
``Authorization: Bearer <token>`` (Prometheus: ``authorization: {credentials: <token>}``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from taskflow_server.api.deps import ContextDep
from taskflow_server.observability.metrics import CONTENT_TYPE, render
from taskflow_server.observability.scrape import read_snapshot

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics (text format)",
)
async def get_metrics(ctx: ContextDep) -> Response:
    """Queue depths, tasks per state, finished tasks, durations and waits, retries and
    dead letters, breaker, limiter, upstream calls, tokens and cost, workers, event log, blobs
    and Redis memory, in the Prometheus text format (``docs/observability.md``)."""
    snap = await read_snapshot(ctx.redis, ctx.keys, ctx.settings, queue=ctx.queue)
    return Response(render(snap), media_type=CONTENT_TYPE)
