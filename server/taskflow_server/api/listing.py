"""The task listing's query planner: which tasks a page of ``GET /api/v1/tasks`` shows, and how
they are found in the store.

Both listing routes (full detail and summaries) take the same query string, :class:`ListingQuery`,
and call :func:`run_listing`. It checks the query (raising :class:`InvalidListing`, which the
routes answer with a 422 carrying its message), then picks one of three plans:

* **exact id** - ``task_id`` names an existing task that passes the state and type filters: a
  page of one, whatever the page asked for (as v1 did).
* **index page** - no filter but dates, sorted by ``created_at``: the page comes straight from
  the creation-time index (:meth:`TaskQueue.list_ids`), with an exact total.
* **scan** - a state, type or id-substring filter, or a sort on another field: the most recent
  :data:`SCAN_LIMIT` tasks of the date range are read newest first, :data:`SCAN_CHUNK` at a time,
  reading only the few fields filters and sorts need (:meth:`TaskQueue.peek_many`); the matches
  are sorted (missing values last in either order) and paged. ``scan_limited`` says the range
  held more than the scan read, so totals then cover only its most recent tasks.

Only the page's own tasks are then read in full, with their payloads. Nothing here needs an HTTP
request: the planner takes a :class:`TaskQueue`, so tests call it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import TypeAdapter, ValidationError

from taskflow_server.api.schemas import SortField
from taskflow_server.states import TaskState
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import TaskRecord

SCAN_LIMIT = 20_000
"""Filtered listings look at most at this many of the most recent tasks in the date range."""

SCAN_CHUNK = 1_000
"""Ids a scan reads per round trip."""

MIN_DATE = datetime(1, 1, 1, tzinfo=UTC).timestamp()
"""The earliest time a date filter takes (epoch seconds)."""

MAX_DATE = datetime(9999, 12, 31, tzinfo=UTC).timestamp() - 0.001
"""The latest time a date filter takes: the last moment of 9999-12-30 (a whole-day end date
must still be a datetime one day later)."""

_PRIORITY_RANK = {"high": 0, "default": 1, "low": 2}
_DATETIME = TypeAdapter(datetime)
_TIME_FIELDS = ("created_at", "updated_at", "completed_at")


class InvalidListing(ValueError):
    """The listing query cannot be answered; the message says what to fix (a 422)."""


# --------------------------------------------------------------------------- the query string

StatusQuery = Annotated[TaskState | None, Query(description="Only tasks in this state (v1 name).")]
StatusAliasQuery = Annotated[
    TaskState | None, Query(description="Same as task_status (the v1 dashboard sends this).")
]
TypeQuery = Annotated[str | None, Query(max_length=100, description="Only this task type.")]
QueueQuery = Annotated[str | None, Query(max_length=50, description="Accepted and ignored (v1).")]
DateQuery = Annotated[
    str | None,
    Query(max_length=40, description="YYYY-MM-DD (whole day) or ISO 8601; naive means UTC."),
]
TaskIdQuery = Annotated[
    str | None,
    Query(max_length=200, description="An exact id, else a case-insensitive id substring."),
]
SortQuery = Annotated[SortField, Query(description="The field to sort by.")]
OrderQuery = Annotated[str, Query(pattern="^(asc|desc)$", description="asc or desc.")]
PageQuery = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number.")]
SizeQuery = Annotated[int, Query(ge=1, description="Items per page (at most max_page_size).")]


@dataclass
class ListingQuery:
    """The filters, sort and page of a task listing: the query string both listing routes take."""

    task_status: StatusQuery = None
    status: StatusAliasQuery = None
    task_type: TypeQuery = None
    queue: QueueQuery = None
    start_date: DateQuery = None
    end_date: DateQuery = None
    task_id: TaskIdQuery = None
    sort_by: SortQuery = "created_at"
    sort_order: OrderQuery = "desc"
    page: PageQuery = 1
    page_size: SizeQuery = 20


ListingDep = Annotated[ListingQuery, Depends()]
"""A route parameter of this type receives the listing query string."""


# --------------------------------------------------------------------------- checks


def parse_when(value: str | None, name: str, *, end: bool) -> float | None:
    """A date (``YYYY-MM-DD``, whole day) or ISO datetime (naive = UTC) as epoch seconds.

    ``end`` makes a whole day reach to its last millisecond. ``None`` for an absent or blank
    value; :class:`InvalidListing` for text that is not a date or lies outside
    [:data:`MIN_DATE`, :data:`MAX_DATE`].
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end:
                moment += timedelta(days=1)
        else:
            moment = _DATETIME.validate_python(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        stamp = moment.timestamp() - (0.001 if end and len(text) == 10 else 0.0)
    except (ValueError, ValidationError):
        raise InvalidListing(
            f"{name} {value!r} is not a date: use YYYY-MM-DD or an ISO 8601 datetime "
            "(e.g. 2024-05-31T12:00:00Z)"
        ) from None
    except OverflowError:
        stamp = math.inf
    if not MIN_DATE <= stamp <= MAX_DATE:
        raise InvalidListing(
            f"{name} {value!r} is out of range: use a date between 0001-01-01 and 9999-12-30"
        )
    return stamp


def _state_filter(
    max_page_size: int, page_size: int, task_status: str | None, status: str | None
) -> str | None:
    """The one state filter of the two v1 names, after checking the page size."""
    if page_size > max_page_size:
        raise InvalidListing(
            f"page_size {page_size} is over the maximum of {max_page_size} (TASKFLOW_MAX_PAGE_SIZE)"
        )
    if task_status and status and task_status != status:
        raise InvalidListing(
            f"task_status={task_status} and status={status} disagree: send one of them"
        )
    state = task_status or status
    return str(state) if state else None


# --------------------------------------------------------------------------- plans


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def sort_key(sort_by: str, peek: dict[str, str | None]) -> tuple[int, Any]:
    """(missing-last flag, value) of a peeked task; missing times sort after present ones.

    Priorities sort by urgency (high first), ``retry_count`` as a number, the rest as text.
    """
    raw = peek.get(sort_by)
    if sort_by in _TIME_FIELDS:
        number = _float(raw)
        return (0, number) if number is not None else (1, 0.0)
    if sort_by == "retry_count":
        return (0, int(raw or 0))
    if sort_by == "priority":
        return (0, _PRIORITY_RANK.get(raw or "default", 1))
    return (0, raw or "")


@dataclass(frozen=True)
class Page:
    """One page of tasks, in order, and what the listing knows about the rest."""

    records: list[TaskRecord]
    total: int
    """Tasks that match (of those scanned, when ``limited``)."""
    page: int
    size: int
    limited: bool
    """The scan stopped at :data:`SCAN_LIMIT`: the range holds more tasks than it read."""

    @property
    def total_pages(self) -> int:
        """``ceil(total / size)``; 0 when nothing matched."""
        return math.ceil(self.total / self.size) if self.size else 0


async def find_page(
    queue: TaskQueue,
    *,
    state: str | None,
    task_type: str | None,
    task_id: str | None,
    start: float | None,
    end: float | None,
    sort_by: str,
    desc: bool,
    page: int,
    size: int,
) -> Page:
    """The tasks of one page (see the module docstring for the three plans).

    ``start`` and ``end`` bound the creation time (epoch seconds, inclusive); ``task_id`` is an
    exact id or, failing that, a case-insensitive substring of ids.
    """

    def wanted(peek: dict[str, str | None]) -> bool:
        return (state is None or peek.get("state") == state) and (
            task_type is None or peek.get("task_type") == task_type
        )

    needle = task_id.strip() if task_id else None
    if needle:
        exact = await queue.get(needle)
        if (
            exact is not None
            and (state is None or exact.state == state)
            and (task_type is None or exact.task_type == task_type)
        ):
            return Page([exact], 1, 1, 1, False)  # v1: an exact id match is a page of one

    if not (state or task_type or needle) and sort_by == "created_at":
        offset = (page - 1) * size
        ids, total = await queue.list_ids(
            start=start, end=end, desc=desc, offset=offset, limit=size
        )
        records = [r for r in await queue.get_many(ids) if r is not None]
        return Page(records, total, page, size, False)

    lowered = needle.lower() if needle else None
    matches: list[tuple[tuple[int, Any], str]] = []
    scanned = 0
    limited = False
    async for ids in queue.iter_ids(start=start, end=end, desc=True, chunk=SCAN_CHUNK):
        if scanned >= SCAN_LIMIT:
            limited = True  # the range holds more than the scan may read
            break
        ids = ids[: SCAN_LIMIT - scanned]
        scanned += len(ids)
        candidates = [i for i in ids if lowered in i.lower()] if lowered else ids
        if candidates:
            for cid, peek in zip(candidates, await queue.peek_many(candidates), strict=True):
                if peek is not None and wanted(peek):
                    matches.append((sort_key(sort_by, peek), cid))
    if sort_by == "created_at":
        if not desc:
            matches.reverse()  # scanned newest first
    else:
        matches.sort(key=lambda m: m[0], reverse=desc)
        if desc:  # keep missing values last in both orders
            matches.sort(key=lambda m: m[0][0])
    offset = (page - 1) * size
    page_ids = [cid for _, cid in matches[offset : offset + size]]
    records = [r for r in await queue.get_many(page_ids) if r is not None]
    return Page(records, len(matches), page, size, limited)


@dataclass(frozen=True)
class Listing:
    """A listing's page, the state filter it applied, and the payload of each task on it."""

    page: Page
    state: str | None
    payloads: list[dict[str, Any] | None]
    """One per record of ``page``, in the same order (``None`` when unreadable)."""

    def page_fields(self) -> dict[str, Any]:
        """The paging fields both list responses share."""
        return {
            "page": self.page.page,
            "page_size": self.page.size,
            "total_items": self.page.total,
            "total_pages": self.page.total_pages,
            "status": self.state,
            "scan_limited": self.page.limited,
        }


async def run_listing(queue: TaskQueue, q: ListingQuery, *, max_page_size: int) -> Listing:
    """Check the query, find its page and read the page's payloads.

    Raises :class:`InvalidListing` for a page size over ``max_page_size``, two state filters
    that disagree, a date that is not one, or a start after the end.
    """
    state = _state_filter(max_page_size, q.page_size, q.task_status, q.status)
    start = parse_when(q.start_date, "start_date", end=False)
    end = parse_when(q.end_date, "end_date", end=True)
    if start is not None and end is not None and start > end:
        raise InvalidListing("start_date is after end_date")
    found = await find_page(
        queue,
        state=state,
        task_type=q.task_type or None,
        task_id=q.task_id,
        start=start,
        end=end,
        sort_by=q.sort_by,
        desc=q.sort_order == "desc",
        page=q.page,
        size=q.page_size,
    )
    payloads = await queue.payloads_many([r.id for r in found.records])
    return Listing(found, state, payloads)
