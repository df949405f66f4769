"""OpenRouter routes: the key's status and daily call metrics, from the shared monitor.

The monitor (``taskflow_server.llm.monitor.OpenRouterMonitor``, owned by the LLM provider of
:class:`~taskflow_server.services.Services`) caches the upstream key status in Redis for every
process; this router only asks it. When the monitor cannot be loaded the routes
answer 503 with the reason rather than failing the whole API.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Protocol, cast

from fastapi import APIRouter, HTTPException, Query

from taskflow_server.api.body import CheckedJsonRoute
from taskflow_server.api.deps import ApiContext, ContextDep
from taskflow_server.api.schemas import (
    BudgetUpdate,
    BudgetView,
    ErrorResponse,
    OpenRouterMetrics,
    OpenRouterStatus,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/openrouter", tags=["openrouter"], route_class=CheckedJsonRoute)

_MONITOR_KEY = "openrouter_monitor"
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "The monitor is not available."}
}


class Monitor(Protocol):
    """What the routes need from the OpenRouter monitor."""

    async def status(self, force_refresh: bool = False) -> dict[str, Any]:
        """The key's service state (cached)."""
        ...

    async def metrics(self, days: int = 7) -> dict[str, Any]:
        """Daily call metrics for the last ``days`` days."""
        ...

    async def budget(self) -> dict[str, Any]:
        """Today's cost against the daily budget."""
        ...

    async def set_budget(self, daily_usd: float | None) -> dict[str, Any]:
        """Set the daily budget for every process."""
        ...


def _monitor(ctx: ApiContext) -> Monitor:
    """The process's monitor: the LLM provider's own (it shares the client, breaker and
    limiter the workers use), built on first use."""
    existing = ctx.extras.get(_MONITOR_KEY)
    if existing is not None:
        return cast(Monitor, existing)
    try:
        monitor = ctx.services.monitor
        if monitor is None:
            from taskflow_server.llm.monitor import OpenRouterMonitor

            monitor = OpenRouterMonitor(ctx.redis, ctx.keys, ctx.settings, None)
    except ImportError as exc:
        log.warning("the OpenRouter monitor cannot be loaded: %s", exc)
        raise HTTPException(
            503, f"the OpenRouter monitor is not available in this build ({exc})"
        ) from None
    ctx.extras[_MONITOR_KEY] = monitor
    return cast(Monitor, monitor)


@router.get(
    "/status",
    response_model=OpenRouterStatus,
    responses=UNAVAILABLE,
    summary="The OpenRouter key's state (cached 60 s)",
)
async def get_status(
    ctx: ContextDep,
    force_refresh: Annotated[bool, Query(description="Ask OpenRouter now, not the cache.")] = False,
) -> OpenRouterStatus:
    """``status`` is active, api_key_missing, api_key_invalid, credits_exhausted,
    rate_limited or error; ``circuit_breaker_open`` and ``consecutive_failures`` come along."""
    data = await _monitor(ctx).status(force_refresh=force_refresh)
    return OpenRouterStatus.model_validate(data)


@router.get(
    "/metrics",
    response_model=OpenRouterMetrics,
    responses=UNAVAILABLE,
    summary="Daily OpenRouter call metrics",
)
async def get_metrics(
    ctx: ContextDep,
    days: Annotated[int, Query(ge=1, le=30, description="How many days back.")] = 7,
) -> OpenRouterMetrics:
    """Calls, successes, failures, tokens, cost and seconds per state, per day."""
    data = await _monitor(ctx).metrics(days=days)
    return OpenRouterMetrics.model_validate(data)


@router.get(
    "/budget",
    response_model=BudgetView,
    responses=UNAVAILABLE,
    summary="Today's upstream cost against the daily budget",
)
async def get_budget(ctx: ContextDep) -> BudgetView:
    """The daily budget (``TASKFLOW_BUDGET_USD`` or the last ``PUT``), today's cost (UTC) and
    whether LLM work is held because the budget is spent."""
    return BudgetView.model_validate(await _monitor(ctx).budget())


@router.put(
    "/budget",
    response_model=BudgetView,
    responses=UNAVAILABLE,
    summary="Set the daily budget for every process",
)
async def put_budget(ctx: ContextDep, update: BudgetUpdate) -> BudgetView:
    """Set (or with ``null`` remove) the daily cap on upstream cost. Raising it above today's
    cost lifts a budget hold: one probe task goes first, then work resumes."""
    return BudgetView.model_validate(await _monitor(ctx).set_budget(update.daily_usd))
