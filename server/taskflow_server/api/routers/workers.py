"""Worker routes: heartbeats (v1 shape) and the shared circuit breaker.

There is one breaker per upstream and it lives in Redis, so opening or resetting it through the
API reaches every worker at once (v1 broadcast to Celery workers and reached only some). Each
worker's ``circuit_breaker`` in ``GET /api/v1/workers/`` is that shared breaker as the worker
sees it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body

from taskflow_server.api.body import CheckedJsonRoute
from taskflow_server.api.deps import ApiContext, ContextDep
from taskflow_server.api.schemas import (
    BreakerAction,
    BreakerActionResult,
    BreakerView,
    OpenBreakerRequest,
    WorkerDetail,
    WorkersStatus,
)
from taskflow_server.api.views import utcnow
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.ratelimit import RateLimiter

router = APIRouter(prefix="/api/v1/workers", tags=["workers"], route_class=CheckedJsonRoute)

BREAKER_NAME = "openrouter"
"""The upstream whose breaker these routes show and control."""


def _breaker(ctx: ApiContext) -> CircuitBreaker:
    return CircuitBreaker(ctx.redis, ctx.keys, BREAKER_NAME, ctx.settings)


def _view(status: dict[str, Any]) -> BreakerView:
    state = str(status.get("state") or "closed").lower().replace("_", "-")
    note_parts = []
    if status.get("hold"):
        # A hold (spent credits, key limit or budget, a long cool-down): say so plainly.
        note_parts.append(f"LLM work on hold: {status['hold']}")
    elif status.get("reason"):
        note_parts.append(str(status["reason"]))
    if status.get("seconds_to_half_open") is not None:
        note_parts.append(f"half-open in {float(status['seconds_to_half_open']):.0f} s")
    if status.get("held"):
        held = "until lifted or reset" if status.get("hold") else "held open until reset"
        note_parts.append(held)
    return BreakerView(
        state=state,
        fail_count=int(status.get("failure_count") or 0),
        success_count=int(status.get("success_count") or 0),
        note="; ".join(note_parts) or f"shared {BREAKER_NAME} breaker",
        hold=status.get("hold"),
    )


def _num(value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


@router.get("", response_model=WorkersStatus, summary="Workers and their heartbeats (v1)")
async def get_workers(ctx: ContextDep) -> WorkersStatus:
    """Every worker seen recently: healthy when its heartbeat is younger than
    ``worker_stale_seconds``. ``overall_status`` is healthy only when all are (and one exists)."""
    breaker_status = await _breaker(ctx).status()
    view = _view(breaker_status)
    now = time.time()
    stale_after = ctx.settings.worker_stale_seconds
    details: list[WorkerDetail] = []
    for info in await ctx.queue.workers():
        last = _num(info.get("last_seen"), float)
        age = max(0.0, now - last) if last is not None else None
        healthy = age is not None and age < stale_after
        worker_id = str(info.get("id"))
        active_tasks = info.get("active_tasks")
        details.append(
            WorkerDetail(
                worker_id=worker_id,
                worker_name=str(info.get("name") or worker_id),
                status="healthy" if healthy else "stale",
                circuit_breaker=view,
                last_heartbeat=last,
                heartbeat_age=round(age, 3) if age is not None else None,
                active=_num(info.get("active"), int) or 0,
                completed=_num(info.get("completed"), int) or 0,
                failed=_num(info.get("failed"), int) or 0,
                concurrency=_num(info.get("concurrency"), int) or 0,
                host=str(info["host"]) if info.get("host") else None,
                pid=_num(info.get("pid"), int),
                started=_num(info.get("started"), float),
                active_tasks=active_tasks if isinstance(active_tasks, list) else [],
            )
        )
    total = len(details)
    healthy_count = sum(1 for d in details if d.status == "healthy")
    states: dict[str, int] = {}
    for d in details:
        states[d.circuit_breaker.state] = states.get(d.circuit_breaker.state, 0) + 1
    return WorkersStatus(
        overall_status="healthy" if total and healthy_count == total else "degraded",
        total_workers=total,
        healthy_workers=healthy_count,
        stale_workers=total - healthy_count,
        circuit_breaker_states=states,
        circuit_breaker=breaker_status,
        worker_details=details,
        timestamp=utcnow(),
    )


async def _action_result(ctx: ApiContext, verb: str) -> BreakerAction:
    status = await _breaker(ctx).status()
    state = _view(status).state
    workers = await ctx.queue.workers()
    results = [
        BreakerActionResult(worker_id=str(w.get("id")), status="success", state=state)
        for w in workers
    ]
    return BreakerAction(
        message=f"the shared {BREAKER_NAME} breaker is {state}: every worker reads it from "
        f"Redis ({len(results)} worker(s) running); {verb}",
        successful_workers=len(results),
        successful_resets=len(results) if verb == "reset" else None,
        successful_opens=len(results) if verb == "opened" else None,
        breaker=status,
        results=results,
        timestamp=utcnow(),
    )


@router.get(
    "/circuit-breaker",
    response_model=dict[str, Any],
    summary="The shared circuit breaker's state",
)
async def breaker_state(ctx: ContextDep) -> dict[str, Any]:
    """State (closed, open, half-open), failure counts, time to half-open, reason."""
    status = await _breaker(ctx).status()
    return {**status, "state": _view(status).state}


@router.post(
    "/reset-circuit-breaker",
    response_model=BreakerAction,
    summary="Close the shared circuit breaker",
)
async def reset_breaker(ctx: ContextDep) -> BreakerAction:
    """Close the breaker and clear its counters, end any hold and the shared 429 cool-down:
    every worker resumes claiming and calling at once (an operator's "go")."""
    await _breaker(ctx).reset()
    await RateLimiter(ctx.redis, ctx.keys, BREAKER_NAME).clear_cooldown()
    return await _action_result(ctx, "reset")


@router.post(
    "/open-circuit-breaker",
    response_model=BreakerAction,
    summary="Open the shared circuit breaker",
)
async def open_breaker(
    ctx: ContextDep,
    body: Annotated[OpenBreakerRequest | None, Body()] = None,
) -> BreakerAction:
    """Hold the breaker open until reset: workers stop claiming LLM tasks (they wait PENDING;
    no retry is spent)."""
    reason = body.reason if body is not None else OpenBreakerRequest().reason
    await _breaker(ctx).open(reason)
    return await _action_result(ctx, "opened")
