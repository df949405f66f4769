"""The reads of the task history: one task, a filtered list with keyset pagination, and stats.

:class:`HistoryQueries` wraps a :class:`~taskflow_server.history.db.HistoryDB`. Every statement
is a constant: filters add fixed SQL fragments (``task_type = %(task_type)s``) and pass their
values as parameters, and the two words a caller may choose that cannot be parameters (the
time column, ``created`` or ``finished``) pick one of two constant column names. Each filter
has an index in ``0001_history.sql`` (``tasks_created_idx`` serves the keyset walk on
``(created_at, id)``).

Errors: a value the history cannot answer for (an unknown state, a cursor from another query, a
range too long for hourly buckets) raises :class:`InvalidHistoryQuery`, whose message says what
to fix (the API answers 422); a database that does not answer, or fails, raises
:class:`HistoryDown` (the API answers 503). The schema is applied on first use (the migrations
are idempotent), so an API started before any recorder still answers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from taskflow_server.history.db import HistoryDB, migrations
from taskflow_server.states import STATES, TaskState

log = logging.getLogger(__name__)

__all__ = [
    "BUCKETS",
    "CONNECT_TIMEOUT",
    "FAILURE_STATES",
    "MAX_BUCKETS",
    "STATEMENT_TIMEOUT_MS",
    "HistoryDown",
    "HistoryFilter",
    "HistoryPage",
    "HistoryQueries",
    "InvalidHistoryQuery",
    "parse_time",
]

CONNECT_TIMEOUT = 5.0
"""Seconds a read waits for a pooled connection before it fails with :class:`HistoryDown`."""
STATEMENT_TIMEOUT_MS = 15_000
"""The longest a history statement may run (milliseconds)."""
MAX_BUCKETS = 2_000
"""The most buckets one stats answer holds (about 5 years of days, or 83 days of hours)."""
BUCKETS: dict[str, timedelta] = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
"""The bucket sizes stats offer."""
FAILURE_STATES: tuple[str, ...] = (TaskState.DLQ, TaskState.FAILED)
"""Tasks counted as failures (by their last error's class) in stats."""

TimeField = Literal["created", "finished"]
_TIME_COLUMNS: dict[str, str] = {"created": "created_at", "finished": "finished_at"}
_MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC)


class InvalidHistoryQuery(ValueError):
    """A history query that cannot be answered; the message says what to fix."""


class HistoryDown(RuntimeError):
    """The history database did not answer (or failed); the message says so, plainly."""


# --------------------------------------------------------------------------- values


def parse_time(
    value: datetime | float | int | str | None, name: str, *, end: bool
) -> datetime | None:
    """A time filter as an aware UTC datetime.

    Takes a datetime (naive = UTC), epoch seconds (a number, or a string of one), a date
    ``YYYY-MM-DD`` (``end`` makes it reach the day's last microsecond) or an ISO 8601 datetime.
    ``None`` or blank text is no bound; anything else raises :class:`InvalidHistoryQuery`.
    """
    if value is None:
        return None
    moment: datetime
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, bool):
        raise InvalidHistoryQuery(f"{name} must be a time, not {value!r}")
    elif isinstance(value, int | float):
        moment = _epoch(float(value), name, value)
    else:
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            moment = _iso(text, name, end=end)
        else:
            moment = _epoch(number, name, value)
    moment = moment.astimezone(UTC)
    if not _MIN_TIME <= moment <= _MAX_TIME:
        raise InvalidHistoryQuery(
            f"{name} {value!r} is out of range: use a time between 1970-01-01 and 9999-12-30"
        )
    return moment


def _epoch(number: float, name: str, raw: object) -> datetime:
    if not math.isfinite(number):
        raise InvalidHistoryQuery(f"{name} {raw!r} is not a time: send epoch seconds or ISO 8601")
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidHistoryQuery(
            f"{name} {raw!r} is out of range: use epoch seconds between 0 and 253402128000"
        ) from None


def _iso(text: str, name: str, *, end: bool) -> datetime:
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1, microseconds=-1) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidHistoryQuery(
            f"{name} {text!r} is not a time: use epoch seconds, YYYY-MM-DD or an ISO 8601 "
            "datetime such as 2026-05-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _cost(value: float | Decimal | str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise InvalidHistoryQuery(f"{name} {value!r} is not an amount of USD") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidHistoryQuery(f"{name} must be a finite amount of USD >= 0, not {value!r}")
    return amount


def _text(value: str | None, name: str) -> str | None:
    """A text filter; PostgreSQL text cannot hold NUL, so one is refused here (not a 503)."""
    if not value:
        return None
    if "\x00" in value:
        raise InvalidHistoryQuery(f"{name} contains a NUL character: remove it")
    return value


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class HistoryFilter:
    """The filters list and stats share (build it with :meth:`make`, which checks them).

    ``time_field`` says which time ``since``/``until`` bound (and stats bucket by): when the
    task was created (default) or finished (tasks still open have no finish time and are left
    out then). Both bounds are inclusive.
    """

    since: datetime | None = None
    until: datetime | None = None
    time_field: TimeField = "created"
    task_type: str | None = None
    states: tuple[str, ...] = ()
    error_class: str | None = None
    batch: str | None = None
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None

    @classmethod
    def make(
        cls,
        *,
        since: datetime | float | str | None = None,
        until: datetime | float | str | None = None,
        time_field: str = "created",
        task_type: str | None = None,
        state: str | Sequence[str] | None = None,
        error_class: str | None = None,
        batch: str | None = None,
        min_cost: float | Decimal | str | None = None,
        max_cost: float | Decimal | str | None = None,
    ) -> HistoryFilter:
        """Check and normalise the filters; raises :class:`InvalidHistoryQuery`."""
        if time_field not in _TIME_COLUMNS:
            raise InvalidHistoryQuery(f"time_field {time_field!r} is not one of created, finished")
        start = parse_time(since, "since", end=False)
        stop = parse_time(until, "until", end=True)
        if start and stop and start > stop:
            raise InvalidHistoryQuery(
                f"since ({start.isoformat()}) is after until ({stop.isoformat()}): swap them"
            )
        wanted = [state] if isinstance(state, str) else list(state or [])
        states: list[str] = []
        for raw in wanted:
            for part in str(raw).split(","):
                name = part.strip().upper()
                if not name:
                    continue
                if name not in STATES:
                    raise InvalidHistoryQuery(
                        f"state {part.strip()!r} is not a state: use one of {', '.join(STATES)}"
                    )
                states.append(name)
        low, high = _cost(min_cost, "min_cost"), _cost(max_cost, "max_cost")
        if low is not None and high is not None and low > high:
            raise InvalidHistoryQuery(f"min_cost ({low}) is above max_cost ({high})")
        return cls(
            since=start,
            until=stop,
            time_field=time_field,  # type: ignore[arg-type]
            task_type=_text(task_type, "task_type"),
            states=tuple(dict.fromkeys(states)),
            error_class=_text(error_class, "error_class"),
            batch=_text(batch, "batch"),
            min_cost=low,
            max_cost=high,
        )

    @property
    def column(self) -> str:
        """The time column the range and the buckets use (a constant, never user text)."""
        return _TIME_COLUMNS[self.time_field]

    def where(self) -> tuple[list[str], dict[str, Any]]:
        """Constant SQL conditions and their parameters."""
        col = self.column
        parts: list[str] = []
        params: dict[str, Any] = {}
        if self.time_field == "finished":
            parts.append("finished_at IS NOT NULL")
        if self.since is not None:
            parts.append(f"{col} >= %(since)s")
            params["since"] = self.since
        if self.until is not None:
            parts.append(f"{col} <= %(until)s")
            params["until"] = self.until
        if self.task_type is not None:
            parts.append("task_type = %(task_type)s")
            params["task_type"] = self.task_type
        if self.states:
            parts.append("state = ANY(%(states)s)")
            params["states"] = list(self.states)
        if self.error_class is not None:
            parts.append("error_class = %(error_class)s")
            params["error_class"] = self.error_class
        if self.batch is not None:
            parts.append("batch = %(batch)s")
            params["batch"] = self.batch
        if self.min_cost is not None:
            parts.append("cost_usd >= %(min_cost)s")
            params["min_cost"] = self.min_cost
        if self.max_cost is not None:
            parts.append("cost_usd <= %(max_cost)s")
            params["max_cost"] = self.max_cost
        return parts, params

    def fingerprint(self) -> str:
        """A short digest of the filters: a cursor carries it, so it cannot page another query."""
        text = json.dumps(
            [
                self.since.isoformat() if self.since else None,
                self.until.isoformat() if self.until else None,
                self.time_field,
                self.task_type,
                list(self.states),
                self.error_class,
                self.batch,
                str(self.min_cost) if self.min_cost is not None else None,
                str(self.max_cost) if self.max_cost is not None else None,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _where_sql(parts: list[str]) -> str:
    return " WHERE " + " AND ".join(parts) if parts else ""


# --------------------------------------------------------------------------- cursors


@dataclass(frozen=True)
class _Cursor:
    created_at: datetime
    task_id: str
    fingerprint: str


def encode_cursor(created_at: datetime, task_id: str, fingerprint: str) -> str:
    """The opaque cursor after the row ``(created_at, task_id)`` of a query."""
    raw = json.dumps({"c": created_at.isoformat(), "i": task_id, "f": fingerprint})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> _Cursor:
    """The position a cursor names; :class:`InvalidHistoryQuery` for one that is damaged or
    was made by a query with other filters."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = _Cursor(datetime.fromisoformat(data["c"]), str(data["i"]), str(data["f"]))
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidHistoryQuery(
            "cursor is not one this server made: send the next_cursor of the previous page "
            "unchanged, or leave it out for the first page"
        ) from None
    if "\x00" in position.task_id:
        raise InvalidHistoryQuery("cursor is damaged: send next_cursor unchanged")
    if position.fingerprint != fingerprint:
        raise InvalidHistoryQuery(
            "cursor belongs to a query with other filters: keep the filters of the first page "
            "when you follow next_cursor, or leave cursor out to start again"
        )
    if position.created_at.tzinfo is None:
        position = _Cursor(position.created_at.replace(tzinfo=UTC), position.task_id, fingerprint)
    return position


# --------------------------------------------------------------------------- results


@dataclass
class HistoryPage:
    """One page of the history list, newest first, and the cursor of the next page
    (``None`` on the last one)."""

    tasks: list[dict[str, Any]]
    next_cursor: str | None
    limit: int


@dataclass
class _Bucket:
    start: datetime
    tasks: int = 0
    states: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    timed: int = 0
    duration_p50_seconds: float | None = None
    duration_p95_seconds: float | None = None
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


_LIST_COLUMNS = (
    "id, task_type, lane, priority, state, created_at, started_at, finished_at, updated_at,"
    " EXTRACT(EPOCH FROM finished_at - started_at)::float8 AS duration_seconds,"
    " attempts, retry_count, max_retries, error_class, error_message, provider, model,"
    " prompt_tokens, completion_tokens, cost_usd, idempotency_key, batch, metadata"
)


def _list_item(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["task_id"] = item.pop("id")
    item["cost_usd"] = _number(item.get("cost_usd"))
    return item


# --------------------------------------------------------------------------- queries


class HistoryQueries:
    """The history reads the API serves.

    Args:
        db: the history database (its pool is opened and closed by whoever made it).
        connect_timeout: seconds to wait for a pooled connection.
        migrate: apply the schema on first use (the default; the migrations are idempotent).
    """

    def __init__(
        self, db: HistoryDB, *, connect_timeout: float = CONNECT_TIMEOUT, migrate: bool = True
    ) -> None:
        self.db = db
        self.connect_timeout = connect_timeout
        self._schema_ready = not migrate
        self._schema_lock = asyncio.Lock()

    async def _ensure_schema(self) -> None:
        """Apply the migrations once, when the tables are not there yet (checked on a
        connection taken with :attr:`connect_timeout`, so a database that is down fails fast)."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            version = 0
            async with self.db.pool.connection(timeout=self.connect_timeout) as conn:
                cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
                row = await cur.fetchone()
                if row and row[0]:
                    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                    row = await cur.fetchone()
                    version = int(row[0]) if row else 0
            if version < max((m.version for m in migrations()), default=0):
                await self.db.migrate()
            self._schema_ready = True

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Any]:
        """A connection in a read-only snapshot transaction, with a statement timeout; every
        database error leaves as :class:`HistoryDown`."""
        import psycopg

        try:
            await self._ensure_schema()
            pool = self.db.pool
            async with pool.connection(timeout=self.connect_timeout) as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                await conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (str(STATEMENT_TIMEOUT_MS),),
                )
                yield conn
        except psycopg.errors.QueryCanceled:
            log.warning("history: a query ran past %d ms", STATEMENT_TIMEOUT_MS)
            raise HistoryDown(
                f"the history query took longer than {STATEMENT_TIMEOUT_MS // 1000} s: narrow "
                "since/until or add filters"
            ) from None
        except psycopg.OperationalError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            log.warning("history: PostgreSQL did not answer: %s: %s", type(exc).__name__, first)
            raise HistoryDown(
                "the history database (PostgreSQL) did not answer or refused the connection; "
                "try again shortly (the server log says why)"
            ) from None
        except psycopg.Error as exc:
            log.warning("history: the database failed: %r", exc)
            raise HistoryDown(
                f"the history database failed ({type(exc).__name__}); the server log has details"
            ) from None

    # ----------------------------------------------------------------- one task

    async def get_task(self, task_id: str) -> dict[str, Any] | None:
        """The recorded task in the shape of ``GET /api/v1/tasks/{id}`` (``source:
        "history"``), built from its row, its state changes and its attempts; ``None`` when
        the history has no such task."""
        return (await self.get_tasks([task_id])).get(task_id)

    async def get_tasks(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """:meth:`get_task` for several ids at once (three queries in all), by id; ids the
        history does not have are left out."""
        from psycopg.rows import dict_row

        ids = [i for i in task_ids if "\x00" not in i]  # no task id holds one (nor can text)
        if not ids:
            return {}
        async with self._read() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM tasks WHERE id = ANY(%s)", (ids,))
            rows = await cur.fetchall()
            if not rows:
                return {}
            found = [row["id"] for row in rows]
            await cur.execute(
                "SELECT task_id, event_id, type, old_state, state, at, data FROM task_events"
                " WHERE task_id = ANY(%s) ORDER BY at, event_id",
                (found,),
            )
            events = await cur.fetchall()
            await cur.execute(
                "SELECT task_id, attempt, worker_id, started_at, ended_at, outcome, error_class,"
                " error FROM attempts WHERE task_id = ANY(%s) ORDER BY attempt",
                (found,),
            )
            attempts = await cur.fetchall()
        by_task: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
            tid: ([], []) for tid in found
        }
        for ev in events:
            by_task[ev.pop("task_id")][0].append(ev)
        for at in attempts:
            by_task[at.pop("task_id")][1].append(at)
        return {row["id"]: task_view(row, *by_task[row["id"]]) for row in rows}

    async def get_states(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Where the recorded tasks among ``task_ids`` stand, in one query: ``state``,
        ``updated_at`` (a datetime), ``retry_count`` and ``progress`` (1.0 once finished), by
        id. What a client waiting on tasks the store has already let go polls."""
        from psycopg.rows import dict_row

        ids = [i for i in task_ids if "\x00" not in i]
        if not ids:
            return {}
        async with self._read() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, state, updated_at, retry_count, finished_at FROM tasks"
                " WHERE id = ANY(%s)",
                (ids,),
            )
            rows = await cur.fetchall()
        return {
            row["id"]: {
                "task_id": row["id"],
                "state": row["state"],
                "updated_at": row["updated_at"],
                "retry_count": row["retry_count"],
                "progress": 1.0 if row["finished_at"] is not None else 0.0,
            }
            for row in rows
        }

    # ----------------------------------------------------------------- list

    async def list(
        self, filters: HistoryFilter, *, limit: int, cursor: str | None = None
    ) -> HistoryPage:
        """Recorded tasks matching ``filters``, newest first (by ``(created_at, id)``), at most
        ``limit`` of them after ``cursor``."""
        from psycopg.rows import dict_row

        if limit < 1:
            raise InvalidHistoryQuery(f"limit must be at least 1, not {limit}")
        fingerprint = filters.fingerprint()
        parts, params = filters.where()
        if cursor:
            after = decode_cursor(cursor, fingerprint)
            parts.append("(created_at, id) < (%(after_at)s, %(after_id)s)")
            params["after_at"] = after.created_at
            params["after_id"] = after.task_id
        params["limit"] = limit + 1
        sql = (
            f"SELECT {_LIST_COLUMNS} FROM tasks{_where_sql(parts)}"
            " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        )
        async with self._read() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params)
            rows = await cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        following = None
        if more and rows:
            last = rows[-1]
            following = encode_cursor(last["created_at"], last["id"], fingerprint)
        return HistoryPage([_list_item(r) for r in rows], following, limit)

    # ----------------------------------------------------------------- stats

    async def stats(self, filters: HistoryFilter, *, bucket: str = "day") -> dict[str, Any]:
        """Per-bucket counts by state, failures by error class, p50/p95 durations
        (finished - started, over the tasks that have both) and cost, for tasks matching
        ``filters``, bucketed (UTC) by ``filters.time_field``. Empty buckets between the
        first and the last (or ``since``/``until`` when given) are filled with zeros."""
        step = BUCKETS.get(bucket)
        if step is None:
            raise InvalidHistoryQuery(f"bucket {bucket!r} is not one of day, hour")
        if filters.since and filters.until:
            _check_span(_floor(filters.since, bucket), _floor(filters.until, bucket), step, bucket)
        col = filters.column
        parts, params = filters.where()
        params["unit"] = bucket
        where = _where_sql(parts)
        trunc = f"date_trunc(%(unit)s, {col}, 'UTC')"
        totals_sql = (
            f"SELECT {trunc} AS b, count(*) AS tasks,"
            " count(finished_at - started_at) AS timed,"
            " percentile_cont(0.5) WITHIN GROUP"
            " (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at)) AS p50,"
            " percentile_cont(0.95) WITHIN GROUP"
            " (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at)) AS p95,"
            " coalesce(sum(cost_usd), 0) AS cost,"
            " coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
            " coalesce(sum(completion_tokens), 0) AS completion_tokens"
            f" FROM tasks{where} GROUP BY 1 ORDER BY 1"
        )
        states_sql = f"SELECT {trunc} AS b, state, count(*) AS n FROM tasks{where} GROUP BY 1, 2"
        failed_where = _where_sql([*parts, "state = ANY(%(failed)s)"])
        failures_sql = (
            f"SELECT {trunc} AS b, coalesce(error_class, 'unknown') AS error_class,"
            f" count(*) AS n FROM tasks{failed_where} GROUP BY 1, 2"
        )
        async with self._read() as conn:
            totals = await (await conn.execute(totals_sql, params)).fetchall()
            states = await (await conn.execute(states_sql, params)).fetchall()
            failures = await (
                await conn.execute(failures_sql, {**params, "failed": list(FAILURE_STATES)})
            ).fetchall()
        found: dict[datetime, _Bucket] = {}
        for b, tasks, timed, p50, p95, cost, prompt, completion in totals:
            found[b] = _Bucket(
                start=b.astimezone(UTC),
                tasks=int(tasks),
                timed=int(timed),
                duration_p50_seconds=_number(p50),
                duration_p95_seconds=_number(p95),
                cost_usd=float(cost),
                prompt_tokens=int(prompt),
                completion_tokens=int(completion),
            )
        for b, state, n in states:
            found[b].states[state] = int(n)
        for b, error_class, n in failures:
            found[b].failures[error_class] = int(n)
        buckets = _fill(found, filters, bucket, step)
        return {
            "bucket": bucket,
            "time_field": filters.time_field,
            "since": filters.since,
            "until": filters.until,
            "buckets": [asdict(b) for b in buckets],
        }


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC)
    if bucket == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _check_span(first: datetime, last: datetime, step: timedelta, bucket: str) -> None:
    count = int((last - first) / step) + 1
    if count > MAX_BUCKETS:
        wider = " or use bucket=day" if bucket == "hour" else ""
        raise InvalidHistoryQuery(
            f"the range spans {count} {bucket} buckets; one answer holds at most {MAX_BUCKETS}: "
            f"narrow since/until{wider}"
        )


def _steps(first: datetime, last: datetime, step: timedelta) -> Iterator[datetime]:
    at = first
    while at <= last:
        yield at
        at += step


def _fill(
    found: dict[datetime, _Bucket], filters: HistoryFilter, bucket: str, step: timedelta
) -> list[_Bucket]:
    """Every bucket from the first to the last (widened to since/until), zeros where empty."""
    by_start = {b.start: b for b in found.values()}
    starts = sorted(by_start)
    first = _floor(filters.since, bucket) if filters.since else (starts[0] if starts else None)
    last = _floor(filters.until, bucket) if filters.until else (starts[-1] if starts else None)
    if first is None or last is None:
        return []
    if starts:
        first, last = min(first, starts[0]), max(last, starts[-1])
    _check_span(first, last, step, bucket)
    return [by_start.get(at) or _Bucket(start=at) for at in _steps(first, last, step)]


# --------------------------------------------------------------------------- the task view


def _result_text(task_type: str, result: Any) -> str | None:
    if result is None:
        return None
    if isinstance(result, str):
        return result
    if isinstance(result, dict) and task_type == "summarize":
        summary = result.get("summary")
        if isinstance(summary, str):
            return summary
    return json.dumps(result, ensure_ascii=False, default=str)


_TRANSITIONS = {"FAILED": TaskState.SCHEDULED.value}
"""How an attempt's recorded outcome reads as the store's ``state_transition`` (a FAILED
attempt is one after which a retry was scheduled)."""


def _failed_attempts(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attempts that ended on an error, with the time they ended."""
    return [
        a
        for a in attempts
        if (a.get("error_class") or a.get("error")) and (a.get("ended_at") or a.get("started_at"))
    ]


def _state_history(
    row: dict[str, Any], events: list[dict[str, Any]], attempts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The state changes as the store keeps them: the recorded events' states, a FAILED entry
    where an attempt ended on an error (the store writes one; the event log does not), and the
    creation first when no event recorded it."""
    entries: list[tuple[datetime, int, str]] = [
        (e["at"], 1, e["state"]) for e in events if e.get("state")
    ]
    entries += [
        (a.get("ended_at") or a["started_at"], 0, TaskState.FAILED.value)
        for a in _failed_attempts(attempts)
    ]
    entries.sort(key=lambda e: (e[0], e[1]))
    history = [{"state": state, "timestamp": at} for at, _, state in entries]
    if not history or history[0]["timestamp"] > row["created_at"]:
        first = events[0].get("old_state") if events and events[0].get("old_state") else None
        history.insert(0, {"state": first or TaskState.PENDING, "timestamp": row["created_at"]})
    return history


def _error_history(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per attempt that ended on an error, shaped like the store's
    ``error_history`` (plus the attempt's number and worker)."""
    out = []
    for a in _failed_attempts(attempts):
        when = a.get("ended_at") or a.get("started_at")
        outcome = str(a["outcome"])
        out.append(
            {
                "timestamp": when.isoformat().replace("+00:00", "Z") if when else None,
                "error": a.get("error"),
                "error_type": a.get("error_class"),
                "retry_count": max(0, int(a["attempt"]) - 1),
                "state_transition": f"ACTIVE -> {_TRANSITIONS.get(outcome, outcome)}",
                "attempt": a["attempt"],
                "worker_id": a.get("worker_id"),
            }
        )
    return out


def task_view(
    row: dict[str, Any], events: list[dict[str, Any]], attempts: list[dict[str, Any]]
) -> dict[str, Any]:
    """A recorded task as the fields of the API's ``TaskDetail`` (plus ``source``,
    ``result_ref`` and the recorded usage), from its ``tasks`` row, its ``task_events`` and its
    ``attempts``."""
    state = row["state"] if row["state"] in STATES else TaskState.FAILED
    finished = row.get("finished_at")
    last_worker = next((a.get("worker_id") for a in reversed(attempts) if a.get("worker_id")), None)
    result = row.get("result")
    return {
        "task_id": row["id"],
        "state": state,
        "task_type": row["task_type"],
        "priority": row["priority"] if row["priority"] in ("high", "default", "low") else "default",
        "lane": row["lane"],
        "content": None,
        "result": _result_text(row["task_type"], result),
        "result_data": result,
        "retry_count": row["retry_count"],
        "max_retries": row["max_retries"],
        "last_error": row.get("error_message"),
        "error_type": row.get("error_class"),
        "retry_after": None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "started_at": row.get("started_at"),
        "completed_at": finished if state == TaskState.COMPLETED else None,
        "scheduled_at": None,
        "dlq_at": finished if state == TaskState.DLQ else None,
        "worker_id": last_worker,
        "progress": 1.0 if state == TaskState.COMPLETED else 0.0,
        "progress_message": None,
        "error_history": _error_history(attempts),
        "state_history": _state_history(row, events, attempts),
        "idempotency_key": row.get("idempotency_key"),
        "metadata": row.get("metadata") or {},
        "cancel_requested": False,
        "lost_leases": 0,
        "source": "history",
        "result_ref": row.get("result_ref"),
        "usage": {
            "provider": row.get("provider"),
            "model": row.get("model"),
            "prompt_tokens": row.get("prompt_tokens"),
            "completion_tokens": row.get("completion_tokens"),
            "cost_usd": _number(row.get("cost_usd")),
            "attempts": row.get("attempts"),
        },
    }
