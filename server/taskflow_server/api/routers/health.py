"""Health routes (no auth): ``/``, ``/health`` (always 200), ``/live``, ``/ready``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from taskflow_server import __version__
from taskflow_server.api.deps import ContextDep
from taskflow_server.api.schemas import (
    ComponentStatus,
    HealthStatus,
    ServiceInfo,
    SimpleStatus,
)
from taskflow_server.api.views import utcnow

router = APIRouter(tags=["health"])


@router.get("/", response_model=ServiceInfo, summary="What this server is")
async def info(ctx: ContextDep) -> ServiceInfo:
    """Name, version and where the docs and health routes are."""
    return ServiceInfo(
        name="AsyncTaskFlow",
        version=__version__,
        docs="/docs",
        openapi="/openapi.json",
        health="/health",
        auth_required=bool(ctx.settings.api_token),
        offline=ctx.settings.offline,
    )


@router.get("/live", response_model=SimpleStatus, summary="Liveness")
async def live() -> SimpleStatus:
    """200 ``{status: "alive"}`` while the process serves requests."""
    return SimpleStatus(status="alive")


@router.get(
    "/ready",
    response_model=SimpleStatus,
    responses={503: {"model": SimpleStatus, "description": "Redis does not answer."}},
    summary="Readiness",
)
async def ready(ctx: ContextDep) -> SimpleStatus | JSONResponse:
    """200 ``{status: "ready"}`` when Redis answers, else 503."""
    try:
        await ctx.queue.ping()
    except (RedisError, OSError) as exc:
        body = SimpleStatus(status="not_ready", detail=f"Redis does not answer: {exc}")
        return JSONResponse(body.model_dump(), status_code=503)
    return SimpleStatus(status="ready")


@router.get("/health", response_model=HealthStatus, summary="Component health (always 200)")
async def health(ctx: ContextDep) -> HealthStatus:
    """Redis latency and worker heartbeats. Always 200; ``status`` tells healthy or not."""
    components: dict[str, ComponentStatus] = {}
    redis_ok = True
    try:
        latency = await ctx.queue.ping()
        components["redis"] = ComponentStatus(status="healthy", latency_ms=round(latency, 3))
    except (RedisError, OSError) as exc:
        redis_ok = False
        components["redis"] = ComponentStatus(status="unhealthy", error=str(exc))
    if redis_ok:
        components["workers"] = await _workers_component(ctx)
    else:
        components["workers"] = ComponentStatus(status="unknown", error="Redis does not answer")
    notes = []
    if ctx.settings.offline:
        notes.append("offline LLM provider (no OPENROUTER_API_KEY)")
    if not ctx.settings.redis_url:
        notes.append("embedded store")
    if redis_ok and components["workers"].status == "none":
        notes.append("no worker is running: tasks wait PENDING until one starts")
    return HealthStatus(
        status="healthy" if redis_ok else "unhealthy",
        components=components,
        note="; ".join(notes) or "all components answer",
        timestamp=utcnow(),
    )


async def _workers_component(ctx: ContextDep) -> ComponentStatus:
    try:
        workers = await ctx.queue.workers()
    except (RedisError, OSError) as exc:
        return ComponentStatus(status="unknown", error=str(exc))
    now = time.time()
    stale_after = ctx.settings.worker_stale_seconds
    healthy = sum(1 for w in workers if now - _float(w.get("last_seen")) < stale_after)
    total = len(workers)
    status = "none" if total == 0 else ("healthy" if healthy == total else "degraded")
    return ComponentStatus(status=status, total=total, healthy=healthy, stale=total - healthy)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
