"""History routes: recorded tasks from PostgreSQL, listed and summed up per day or hour.

``GET /api/v1/history`` lists recorded tasks newest first, filtered by time range (creation or
finish), type, state, error class, batch and cost, a page at a time: each page carries
``next_cursor``, sent back as ``cursor`` (with the same filters) for the next one, so pages
never skip or repeat a task however many are recorded meanwhile. ``GET /api/v1/history/stats``
sums the same selection up per UTC day or hour.

History is off unless the server has ``TASKFLOW_DATABASE_URL``: both routes then answer 404
with a message saying how to turn it on, and the header ``X-Taskflow-History: off`` (what the
SDK reads to raise ``HistoryDisabledError``). A PostgreSQL that does not answer is a 503 and a
bad filter a 422 (both by the app's exception handlers, :mod:`taskflow_server.api.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from taskflow_server.api.deps import ContextDep
from taskflow_server.api.schemas import ErrorResponse, HistoryPageModel, HistoryStatsModel
from taskflow_server.history.queries import HistoryFilter, HistoryQueries

router = APIRouter(prefix="/api/v1/history", tags=["history"])

HISTORY_HEADER = "X-Taskflow-History"
"""Set to ``off`` on the 404 of a server without history."""

HISTORY_OFF = (
    "history is off on this server: set TASKFLOW_DATABASE_URL=postgresql://user@host:5432/db "
    "(or taskflow-server --database-url) and restart it to record finished tasks in "
    "PostgreSQL and query them here"
)
"""The 404 message of the history routes when history is off."""

HISTORY_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "History is off (no TASKFLOW_DATABASE_URL): the message says how to "
        "turn it on.",
        "headers": {
            HISTORY_HEADER: {"description": "`off`", "schema": {"type": "string"}},
        },
    },
    503: {"model": ErrorResponse, "description": "PostgreSQL did not answer (or failed)."},
}


def history_off() -> HTTPException:
    """The 404 of a server without history."""
    return HTTPException(404, HISTORY_OFF, headers={HISTORY_HEADER: "off"})


async def history_queries(ctx: ContextDep) -> HistoryQueries:
    """The history reads; 404 (how to turn it on) when history is off."""
    if ctx.history is None:
        raise history_off()
    return ctx.history


HistoryDep = Annotated[HistoryQueries, Depends(history_queries)]
"""A route parameter of this type receives the history reads (404 when history is off)."""

TimeQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        description="Epoch seconds, YYYY-MM-DD (a whole day) or ISO 8601 (naive = UTC); inclusive.",
    ),
]


@dataclass
class HistoryParams:
    """The filters both history routes take."""

    since: TimeQuery = None
    until: TimeQuery = None
    time_field: Annotated[
        Literal["created", "finished"],
        Query(description="Which time since/until bound and stats bucket by."),
    ] = "created"
    task_type: Annotated[str | None, Query(max_length=100, description="Only this type.")] = None
    state: Annotated[
        list[str] | None,
        Query(
            max_length=20,
            description="Only these states (repeat the parameter, or separate with commas).",
        ),
    ] = None
    error_class: Annotated[
        str | None, Query(max_length=100, description="Only tasks whose last error is this class.")
    ] = None
    batch: Annotated[
        str | None, Query(max_length=200, description="Only the tasks of this batch or run.")
    ] = None
    min_cost: Annotated[float | None, Query(ge=0, description="Cost at least (USD).")] = None
    max_cost: Annotated[float | None, Query(ge=0, description="Cost at most (USD).")] = None

    def filters(self) -> HistoryFilter:
        """The checked filters (``InvalidHistoryQuery``, a 422 saying what to fix, if not)."""
        return HistoryFilter.make(
            since=self.since,
            until=self.until,
            time_field=self.time_field,
            task_type=self.task_type,
            state=self.state,
            error_class=self.error_class,
            batch=self.batch,
            min_cost=self.min_cost,
            max_cost=self.max_cost,
        )


ParamsDep = Annotated[HistoryParams, Depends()]


@router.get(
    "",
    response_model=HistoryPageModel,
    responses=HISTORY_ERRORS,
    summary="Recorded tasks, newest first (keyset pages)",
)
async def list_history(
    ctx: ContextDep,
    history: HistoryDep,
    params: ParamsDep,
    cursor: Annotated[
        str | None,
        Query(max_length=1000, description="The previous page's next_cursor (same filters)."),
    ] = None,
    limit: Annotated[
        int,
        Query(ge=1, le=100_000, description="Tasks per page (capped at max_page_size)."),
    ] = 100,
) -> HistoryPageModel:
    """A page of recorded tasks matching the filters, ordered by ``(created_at, id)``
    descending; follow ``next_cursor`` until it is null."""
    filters = params.filters()
    size = min(limit, ctx.settings.max_page_size)
    page = await history.list(filters, limit=size, cursor=cursor)
    return HistoryPageModel.model_validate(
        {"tasks": page.tasks, "next_cursor": page.next_cursor, "limit": page.limit}
    )


@router.get(
    "/stats",
    response_model=HistoryStatsModel,
    responses=HISTORY_ERRORS,
    summary="Recorded tasks per day or hour: states, failures, durations, cost",
)
async def history_stats(
    history: HistoryDep,
    params: ParamsDep,
    bucket: Annotated[Literal["day", "hour"], Query(description="Bucket size (UTC).")] = "day",
) -> HistoryStatsModel:
    """Per bucket: tasks by state, DLQ/FAILED tasks by error class, p50/p95 of finished -
    started, cost and tokens; empty buckets in the range are zeros."""
    filters = params.filters()
    stats = await history.stats(filters, bucket=bucket)
    return HistoryStatsModel.model_validate(stats)
