"""The recorder: follows the event log as a consumer group and writes the history to PostgreSQL.

Any number of processes run one (``taskflow-server`` and ``taskflow-worker`` do when
``TASKFLOW_DATABASE_URL`` is set); they share the work through the consumer group ``history`` on
``{tf}:events``. One :meth:`Recorder.step`:

1. takes over entries another recorder read but never acknowledged and that have sat idle
   longer than ``claim_idle_ms`` (``XAUTOCLAIM``, looked for every quarter of that: that
   recorder died), or else reads new entries (``XREADGROUP``) in one ``MULTI`` with ``XINFO``,
   which shows whether the stream dropped entries (it is capped at ``events_maxlen``) before
   the group read them;
2. reads, in one round trip, the current record of every task those events settle (a task
   still queued or running at its newest event is written from its events alone, and read once
   it completes, retries, dead-letters or is cancelled);
3. writes events, tasks and attempts in one PostgreSQL transaction, idempotently:
   ``task_events`` by event id (``ON CONFLICT DO NOTHING``), ``tasks`` by task id with a guard on
   ``(updated_at, revision)`` so a row never goes back to an older version, ``attempts`` by
   ``(task_id, attempt)`` and only while the attempt is open;
4. acknowledges the entries (``XACK``) and gives the finished tasks it stored a short life in
   Redis: their score in ``{tf}:finished`` becomes "recorded ``recorded_ttl_seconds`` ago minus
   ``result_ttl_seconds``", so the retention sweep (``sweep.lua``, unchanged) deletes them
   ``recorded_ttl_seconds`` after they were recorded. ``ZADD XX LT`` only ever shortens a life
   and never brings back an id the sweep or a retry removed.

Delivery is at least once: an entry is acknowledged only after its transaction committed, so a
recorder that dies or loses PostgreSQL leaves its entries pending, and either it (on recovery)
or another recorder (after ``claim_idle_ms``) writes them again, changing nothing the second
time. Events the stream trimmed before anyone read them are detected and the tasks that may have
finished in that gap are recorded from their Redis records (``{tf}:finished`` and ``{tf}:dlq``
by score), with a warning saying how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import DatabaseError, DataError, IntegrityError, InterfaceError
from psycopg.types.json import Jsonb
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from taskflow_server.config import Settings
from taskflow_server.history.db import HistoryDB
from taskflow_server.states import TaskState
from taskflow_server.store.events import Event, parse_entry
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import TaskRecord

log = logging.getLogger(__name__)

GROUP = "history"
"""The consumer group every recorder reads the event log through."""

CLAIM_IDLE_MS = 20_000
"""How long an entry may sit unacknowledged with another recorder before it is taken over.

A live recorder re-reads its own pending entries at every retry (at most ``BACKOFF_MAX`` plus a
connection timeout apart), which resets their idle time, so only a dead recorder's entries age
past this."""

RESULT_LIMIT_BYTES = 256 * 1024
"""A result larger than this (as JSON) is not copied into ``tasks.result``; ``result_ref`` says
so."""

BACKOFF_MAX = 5.0
"""The longest pause between two tries while PostgreSQL or Redis is down."""

CONNECT_TIMEOUT = 5.0
"""How long one batch waits for a database connection before it counts as an outage."""

FINISHED_STATES = (TaskState.COMPLETED.value, TaskState.CANCELLED.value)
"""States whose tasks sit in ``{tf}:finished`` (the retention sweep's set)."""

# Each statement takes the whole batch as one JSON array (``jsonb_to_recordset``): one round
# trip and one parameter per table instead of a statement per row. Times travel as epoch seconds.
_TASK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"), ("task_type", "text"), ("lane", "text"), ("priority", "text"),
    ("state", "text"), ("created_at", "float8"), ("started_at", "float8"),
    ("finished_at", "float8"), ("updated_at", "float8"), ("attempts", "integer"),
    ("retry_count", "integer"), ("max_retries", "integer"), ("error_class", "text"),
    ("error_message", "text"), ("provider", "text"), ("model", "text"),
    ("prompt_tokens", "bigint"), ("completion_tokens", "bigint"), ("cost_usd", "numeric"),
    ("idempotency_key", "text"), ("batch", "text"), ("metadata", "jsonb"), ("result", "jsonb"),
    ("result_ref", "text"), ("last_event_id", "text"), ("revision", "integer"),
)  # fmt: skip


def _select(columns: tuple[tuple[str, str], ...]) -> str:
    """``SELECT <columns> FROM jsonb_to_recordset(%s)``, epoch seconds made timestamptz."""
    exprs = []
    for name, kind in columns:
        if kind == "float8":
            exprs.append(f"to_timestamp(r.{name})")
        elif kind == "jsonb":
            exprs.append(f"nullif(r.{name}, 'null'::jsonb)")
        else:
            exprs.append(f"r.{name}")
    spec = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"SELECT {', '.join(exprs)} FROM jsonb_to_recordset(%s) AS r({spec})"


_UPSERT_TASKS = (
    f"INSERT INTO tasks ({', '.join(c for c, _ in _TASK_COLUMNS)}) {_select(_TASK_COLUMNS)}"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c, _ in _TASK_COLUMNS[1:])
    + ", recorded_at = now()"
    " WHERE (tasks.updated_at, tasks.revision) < (EXCLUDED.updated_at, EXCLUDED.revision)"
)

# Tasks whose Redis record is gone: what their newest event says, over a row only when newer.
_GONE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"), ("task_type", "text"), ("state", "text"), ("created_at", "float8"),
    ("updated_at", "float8"), ("finished_at", "float8"), ("error_class", "text"),
    ("last_event_id", "text"), ("revision", "integer"),
)  # fmt: skip
_UPSERT_GONE_TASKS = (
    f"INSERT INTO tasks ({', '.join(c for c, _ in _GONE_COLUMNS)}) {_select(_GONE_COLUMNS)}"
    " ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at,"
    " finished_at = coalesce(EXCLUDED.finished_at, tasks.finished_at),"
    " error_class = coalesce(EXCLUDED.error_class, tasks.error_class),"
    " last_event_id = EXCLUDED.last_event_id, revision = 0, recorded_at = now()"
    " WHERE (tasks.updated_at, tasks.revision) < (EXCLUDED.updated_at, 0)"
)

_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "text"), ("task_id", "text"), ("type", "text"), ("old_state", "text"),
    ("state", "text"), ("at", "float8"), ("data", "jsonb"),
)  # fmt: skip
_INSERT_EVENTS = (
    f"INSERT INTO task_events ({', '.join(c for c, _ in _EVENT_COLUMNS)})"
    f" {_select(_EVENT_COLUMNS)} ON CONFLICT (event_id) DO NOTHING"
)

_ATTEMPT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("task_id", "text"), ("attempt", "integer"), ("worker_id", "text"),
    ("started_at", "float8"), ("ended_at", "float8"), ("outcome", "text"),
    ("error_class", "text"), ("error", "text"),
)  # fmt: skip
_UPSERT_ATTEMPTS = (
    f"INSERT INTO attempts ({', '.join(c for c, _ in _ATTEMPT_COLUMNS)})"
    f" {_select(_ATTEMPT_COLUMNS)}"
    " ON CONFLICT (task_id, attempt) DO UPDATE SET"
    " worker_id = coalesce(EXCLUDED.worker_id, attempts.worker_id),"
    " started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,"
    " outcome = EXCLUDED.outcome, error_class = EXCLUDED.error_class, error = EXCLUDED.error"
    " WHERE attempts.ended_at IS NULL"
)


# ------------------------------------------------------------------------------ pure mapping

IN_FLIGHT_STATES = frozenset({TaskState.PENDING.value, TaskState.ACTIVE.value})
"""A task whose newest event in a batch leaves it in one of these is written from its events
alone (state and times): its record is read once it settles (completed, retried, dead-lettered,
cancelled), so a burst reads each record about once instead of once per batch it appears in."""


def _in_flight(events: Sequence[Event]) -> set[str]:
    """The tasks whose newest state change in ``events`` leaves them queued or running."""
    newest: dict[str, Event] = {}
    for ev in events:
        if ev.task_id is not None:
            newest[ev.task_id] = ev
    return {
        tid
        for tid, ev in newest.items()
        if ev.type in ("task_created", "task_state_changed") and ev.state in IN_FLIGHT_STATES
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_id(value: str) -> tuple[int, int]:
    """A stream id ``<ms>-<seq>`` as a tuple that sorts like the stream (bad ids sort first)."""
    ms, _, seq = value.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def clean(value: Any) -> Any:
    """``value`` with every string made storable in PostgreSQL (no NUL, valid UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800")
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Infinity; jsonb refuses them
    return value


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is None or math.isfinite(number) else None


def batch_of(metadata: dict[str, Any]) -> str | None:
    """The batch or run a task belongs to, from its metadata (``batch``, ``run`` or ``*_id``)."""
    for key in ("batch", "batch_id", "run", "run_id"):
        value = metadata.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            text: str = clean(str(value))
            return text[:200]
    return None


@dataclass
class AttemptRow:
    """One attempt of a task, as ``attempts`` stores it."""

    attempt: int
    started_at: float
    ended_at: float | None = None
    outcome: str = TaskState.ACTIVE.value
    error_class: str | None = None
    error: str | None = None
    worker_id: str | None = None


def attempts_of(record: TaskRecord) -> list[AttemptRow]:
    """The attempts of a task, from its state history, with each failure's error matched in.

    Each ACTIVE entry starts an attempt; the entry after it says how it ended: COMPLETED,
    CANCELLED, PENDING (handed back or its lease lost: ``REQUEUED``), DLQ (poison), or FAILED
    followed by SCHEDULED (``FAILED``: a retry was scheduled) or DLQ. An error of
    ``error_history`` belongs to the attempt that ended when it was written.
    """
    rows: list[AttemptRow] = []
    current: AttemptRow | None = None
    failed = False
    for entry in record.state_history:
        state = str(entry.get("state", ""))
        ts = _float_or_none(entry.get("ts"))
        if ts is None:
            continue
        if state == TaskState.ACTIVE.value:
            if current is not None and current.ended_at is None:
                current.ended_at, current.outcome = ts, "REQUEUED"
            current = AttemptRow(attempt=len(rows) + 1, started_at=ts)
            rows.append(current)
            failed = False
            continue
        if current is None:
            continue
        if state == TaskState.FAILED.value:
            current.ended_at, current.outcome, failed = ts, "FAILED", True
            continue
        if failed:
            current.outcome = TaskState.DLQ.value if state == TaskState.DLQ.value else "FAILED"
        else:
            current.ended_at = ts
            current.outcome = "REQUEUED" if state == TaskState.PENDING.value else state
        current, failed = None, False
    for err in record.error_history:
        at = _float_or_none(err.get("timestamp"))
        if at is None:
            continue
        match = min(
            (r for r in rows if r.ended_at is not None and abs(r.ended_at - at) < 0.002),
            key=lambda r: abs((r.ended_at or 0.0) - at),
            default=None,
        )
        if match is not None:
            match.error_class = clean(str(err.get("error_type") or "")) or None
            match.error = clean(str(err.get("error") or ""))[:4000] or None
    if rows and record.worker_id:
        rows[-1].worker_id = record.worker_id  # the hash names the last claimer
    return rows


def _finished_at(record: TaskRecord) -> float | None:
    if record.state == TaskState.COMPLETED.value:
        return record.completed_at or record.updated_at
    if record.state == TaskState.DLQ.value:
        return record.dlq_at or record.updated_at
    if record.state == TaskState.CANCELLED.value:
        return record.updated_at
    return None


def task_row(record: TaskRecord, last_event_id: str) -> dict[str, Any]:
    """The ``tasks`` row of a Redis record (JSON-ready: times in epoch seconds)."""
    result = record.result
    provider = model = None
    prompt_tokens = completion_tokens = None
    cost: float | None = None
    if isinstance(result, dict):
        provider = result.get("provider") if isinstance(result.get("provider"), str) else None
        model = result.get("model") if isinstance(result.get("model"), str) else None
        usage = result.get("usage")
        if isinstance(usage, dict):
            prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
            completion_tokens = _int_or_none(usage.get("completion_tokens"))
            cost = _float_or_none(usage.get("cost"))
    stored: Any = None
    ref: str | None = None
    if result is not None:
        size = len(json.dumps(result, separators=(",", ":"), default=str))
        if size > RESULT_LIMIT_BYTES:
            ref = (
                f"redis:{record.id}: result of {size} bytes not copied (over the "
                f"{RESULT_LIMIT_BYTES}-byte limit); it stays in Redis until the task expires"
            )
        else:
            stored = clean(result)
    attempts = sum(1 for e in record.state_history if e.get("state") == TaskState.ACTIVE.value)
    return {
        "id": record.id,
        "task_type": clean(record.task_type) or "unknown",
        "lane": clean(record.lane),
        "priority": clean(record.priority),
        "state": clean(record.state),
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": _finished_at(record),
        "updated_at": record.updated_at,
        "attempts": attempts,
        "retry_count": record.retry_count,
        "max_retries": record.max_retries,
        "error_class": clean(record.error_type) if record.error_type else None,
        "error_message": clean(record.last_error)[:4000] if record.last_error else None,
        "provider": clean(provider) if provider else None,
        "model": clean(model) if model else None,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": cost,
        "idempotency_key": clean(record.idempotency_key) if record.idempotency_key else None,
        "batch": batch_of(record.metadata),
        "metadata": clean(record.metadata),
        "result": stored,
        "result_ref": ref,
        "last_event_id": last_event_id,
        "revision": max(1, len(record.state_history)),
    }


def attempt_rows(
    task_id: str, record: TaskRecord, claimers: dict[tuple[str, int], str]
) -> list[dict[str, Any]]:
    """The ``attempts`` rows of a record; ``claimers`` maps (task, claim ms) to a worker id
    (from the claim events of the batch), for attempts before the last one."""
    rows = []
    for a in attempts_of(record):
        worker = claimers.get((task_id, round(a.started_at * 1000))) or a.worker_id
        rows.append(
            {
                "task_id": task_id,
                "attempt": a.attempt,
                "worker_id": clean(worker) if worker else None,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "outcome": a.outcome,
                "error_class": a.error_class,
                "error": a.error,
            }
        )
    return rows


async def write_rows(
    conn: Any,
    *,
    events: Sequence[dict[str, Any]] = (),
    tasks: Sequence[dict[str, Any]] = (),
    gone: Sequence[dict[str, Any]] = (),
    attempts: Sequence[dict[str, Any]] = (),
) -> None:
    """Write rows in one transaction on ``conn`` (an async psycopg connection), idempotently."""
    async with conn.transaction(), conn.cursor() as cur:
        for sql, rows in (
            (_INSERT_EVENTS, events),
            (_UPSERT_TASKS, tasks),
            (_UPSERT_GONE_TASKS, gone),
            (_UPSERT_ATTEMPTS, attempts),
        ):
            if rows:
                await cur.execute(sql, (Jsonb(list(rows)),))


# ------------------------------------------------------------------------------ the recorder


@dataclass
class _Batch:
    """What one step read: entries to write, and event-log gaps (ms ranges) to reconcile."""

    entries: list[tuple[str, dict[Any, Any]]] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)


class Recorder:
    """Writes the event log to the history database; see the module docstring.

    Args:
        redis: the store's client (``decode_responses=False``).
        keys: the key builder (its prefix names the event log).
        db: the history database (its pool is used, not owned).
        settings: ``history_batch``, ``recorded_ttl_seconds``, ``result_ttl_seconds``.
        consumer: this recorder's name in the group, unique per process.
        group: the consumer group (all recorders of a deployment share one).
        claim_idle_ms: take over another recorder's entries idle longer than this.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        db: HistoryDB,
        settings: Settings,
        *,
        consumer: str,
        group: str = GROUP,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.db = db
        self.settings = settings
        self.consumer = consumer
        self.group = group
        self.claim_idle_ms = claim_idle_ms
        self.queue = TaskQueue(redis, keys, settings)
        self.recorded = 0
        """Events written since this recorder started."""
        self.reconciled = 0
        """Tasks recorded from Redis because their events were trimmed before being read."""
        self._group_ready = False
        self._own_pending = False
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._gaps: list[tuple[int, int]] = []
        self._written: dict[str, tuple[int, str]] = {}
        """Task id -> (updated_at ms, state) of the row this recorder last wrote."""

    # -------------------------------------------------------------------- Redis side

    async def ensure_group(self) -> None:
        """Create the consumer group at the start of the log (and the stream) unless it exists."""
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.keys.events, self.group, id="0", mkstream=True)
            log.info("history: created consumer group %r on the event log", self.group)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _read(self, block_ms: int) -> _Batch:
        """Own unacknowledged entries after a failure; else a takeover plus new entries."""
        n = self.settings.history_batch
        key = self.keys.events
        out = _Batch()
        if self._own_pending:
            reply: Any = await self.redis.xreadgroup(self.group, self.consumer, {key: "0"}, count=n)
            self._take(reply, out)
            if out.entries or out.lost_ids:
                return self._with_lost_gap(out)
            self._own_pending = False
        if time.monotonic() >= self._next_claim:
            # Entries another recorder read and never acknowledged, idle long enough: it died.
            claimed: Any = await self.redis.xautoclaim(
                key, self.group, self.consumer, self.claim_idle_ms, self._claim_cursor, count=n
            )
            self._claim_cursor = _text(claimed[0])
            self._take([[key, claimed[1]]], out)
            if len(claimed) > 2:
                out.lost_ids += [_text(x) for x in claimed[2] or []]
            if self._claim_cursor == "0-0" and not out.entries:
                self._next_claim = time.monotonic() + self.claim_idle_ms / 4000
            if out.entries or out.lost_ids:
                self._own_pending = True
                return self._with_lost_gap(out)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
            pipe.xreadgroup(self.group, self.consumer, {key: ">"}, count=n)
            stream_info, groups, fresh = await pipe.execute()
        new = _Batch()
        self._take(fresh, new)
        gap = _trim_gap(_pairs(stream_info), groups, self.group, new.entries)
        if gap is not None:
            out.gaps.append(gap)
        out.entries += new.entries
        if not out.entries and not out.lost_ids and block_ms > 0:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, {key: ">"}, count=n, block=block_ms
            )
            self._take(reply, out)
        return self._with_lost_gap(out)

    @staticmethod
    def _with_lost_gap(out: _Batch) -> _Batch:
        """Add the time span of entries read but trimmed since (their events are gone)."""
        if out.lost_ids:
            ms = [stream_id(i)[0] for i in out.lost_ids]
            out.gaps.append((min(ms), max(ms)))
        return out

    @staticmethod
    def _take(reply: Any, out: _Batch) -> None:
        """Add the entries of an XREADGROUP-shaped reply to ``out`` (trimmed ones as lost)."""
        for _stream, entries in reply or []:
            for eid, fields in entries or []:
                if fields:
                    out.entries.append((_text(eid), _pairs(fields)))
                elif eid is not None:
                    out.lost_ids.append(_text(eid))

    async def _ack(self, ids: list[str], finished: list[str]) -> None:
        """Acknowledge ``ids`` and start the short life of the ``finished`` tasks just recorded."""
        score: float | None = None
        if finished:
            seconds, micros = await self.redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            shift = (self.settings.result_ttl_seconds - self.settings.recorded_ttl_seconds) * 1000
            score = now_ms - shift
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(ids), 1000):
                pipe.xack(self.keys.events, self.group, *ids[start : start + 1000])
            if score is not None:
                for start in range(0, len(finished), 1000):
                    chunk = finished[start : start + 1000]
                    pipe.zadd(self.keys.finished, dict.fromkeys(chunk, score), xx=True, lt=True)
            await pipe.execute()

    # -------------------------------------------------------------------- PostgreSQL side

    async def _write(
        self,
        events: list[Event],
        records: dict[str, TaskRecord | None],
        in_flight: Sequence[str] = (),
    ) -> None:
        """Write one batch in one transaction: ``records`` as read from Redis (None: gone), and
        the ``in_flight`` tasks (queued or running at their newest event here) from their
        events alone; their full row follows with the event that settles them."""
        last_event: dict[str, str] = {}
        claimers: dict[tuple[str, int], str] = {}
        task_types: dict[str, str] = {}
        created: dict[str, float] = {}
        event_rows: dict[str, dict[str, Any]] = {}
        for ev in events:
            if ev.task_id is None:
                continue
            last_event[ev.task_id] = ev.id
            if ev.state == TaskState.ACTIVE.value and ev.data.get("worker_id"):
                claimers[(ev.task_id, round(ev.ts * 1000))] = str(ev.data["worker_id"])
            if ev.type == "task_created":
                created[ev.task_id] = ev.ts
                if ev.data.get("task_type"):
                    task_types[ev.task_id] = str(ev.data["task_type"])
            event_rows[ev.id] = {
                "event_id": ev.id,
                "task_id": clean(ev.task_id),
                "type": clean(ev.type),
                "old_state": clean(ev.old_state) if ev.old_state else None,
                "state": clean(ev.state) if ev.state else None,
                "at": ev.ts,
                "data": clean(ev.data),
            }
        task_rows: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        for task_id, record in records.items():
            if record is not None:
                task_rows.append(task_row(record, last_event[task_id]))
                attempts += attempt_rows(task_id, record, claimers)
        # Tasks Redis no longer holds (deleted, expired): the newest state their events give.
        from_events = set(in_flight) | {tid for tid, r in records.items() if r is None}
        newest: dict[str, Event] = {}
        for ev in events:
            if ev.task_id in from_events and ev.state:
                newest[ev.task_id] = ev
        gone = [
            {
                "id": task_id,
                "task_type": clean(task_types.get(task_id, "unknown")),
                "state": clean(ev.state or ""),
                "created_at": created.get(task_id, ev.ts),
                "updated_at": ev.ts,
                "finished_at": ev.ts
                if ev.state in (*FINISHED_STATES, TaskState.DLQ.value)
                else None,
                "error_class": clean(str(ev.data["error_type"]))
                if ev.data.get("error_type")
                else None,
                "last_event_id": ev.id,
                "revision": 0,
            }
            for task_id, ev in newest.items()
        ]
        async with self.db.pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            await write_rows(
                conn,
                events=list(event_rows.values()),
                tasks=task_rows,
                gone=gone,
                attempts=attempts,
            )

    def _to_read(self, events: list[Event]) -> list[str]:
        """The tasks of ``events`` whose Redis record must be read: all but those whose row this
        recorder already wrote from a record at least as new as every event of theirs here.

        An event is covered when it is older than the row's ``updated_at``, or of the same
        millisecond with the row's state (two transitions in one millisecond differ in state).
        """
        covered: dict[str, bool] = {}
        for ev in events:
            if ev.task_id is None:
                continue
            seen = self._written.get(ev.task_id)
            ms = round(ev.ts * 1000)
            ok = seen is not None and (ms < seen[0] or (ms == seen[0] and ev.state == seen[1]))
            covered[ev.task_id] = covered.get(ev.task_id, True) and ok
        return [tid for tid, ok in covered.items() if not ok]

    def _remember(self, records: dict[str, TaskRecord | None]) -> None:
        """Note the rows just committed (bounded: forgotten wholesale past 200,000 tasks)."""
        if len(self._written) > 200_000:
            self._written.clear()
        for tid, record in records.items():
            if record is None:
                self._written.pop(tid, None)
            else:
                self._written[tid] = (round(record.updated_at * 1000), record.state)

    async def _record_records(self, ids: list[str], mark: str) -> list[str]:
        """Record the current Redis records of ``ids`` (no events); returns the finished ones."""
        found = dict(zip(ids, await self.queue.get_many(ids), strict=True))
        records = {tid: r for tid, r in found.items() if r is not None}
        if not records:
            return []
        tasks = [task_row(r, mark) for r in records.values()]
        attempts = [row for tid, r in records.items() for row in attempt_rows(tid, r, {})]
        async with self.db.pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            await write_rows(conn, tasks=tasks, attempts=attempts)
        return [tid for tid, r in records.items() if r.state in FINISHED_STATES]

    async def _reconcile(self) -> None:
        """Record every task that finished or was dead-lettered inside a gap of the event log.

        A gap stays queued until it is fully recorded, so an outage in the middle repeats it.
        """
        while self._gaps:
            lo, hi = self._gaps[0]
            ids: list[str] = []
            for zset in (self.keys.finished, self.keys.dlq):
                ids += [_text(x) for x in await self.redis.zrangebyscore(zset, lo, hi)]
            ids = list(dict.fromkeys(ids))
            size = self.settings.history_batch
            for start in range(0, len(ids), size):
                finished = await self._record_records(ids[start : start + size], f"{hi}-0")
                await self._ack([], finished)
            self._gaps.pop(0)
            self.reconciled += len(ids)
            log.warning(
                "history: the event log dropped events before they were recorded (it keeps "
                "about %d); recorded %d task(s) that finished between %s and %s from their "
                "Redis records instead (their individual events are not in task_events)",
                self.settings.events_maxlen,
                len(ids),
                _iso(lo),
                _iso(hi),
            )

    # -------------------------------------------------------------------- the loop

    async def step(self, block_ms: int = 0) -> int:
        """Process one batch (taken-over entries and new ones); returns the events recorded.

        Raises what PostgreSQL or Redis raised; the batch then stays pending and the next step
        writes it again.
        """
        await self.ensure_group()
        try:
            batch = await self._read(block_ms)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted (FLUSHDB): start over
                self._group_ready = False
            raise
        if batch.entries:
            self._own_pending = True  # until acknowledged
        self._gaps += batch.gaps
        if self._gaps:
            await self._reconcile()
        ids = [eid for eid, _ in batch.entries] + batch.lost_ids
        if not batch.entries:
            if ids:
                await self._ack(ids, [])
            return 0
        events = [parse_entry(eid, fields) for eid, fields in batch.entries]
        task_ids = self._to_read(events)
        in_flight = _in_flight(events)
        to_read = [tid for tid in task_ids if tid not in in_flight]
        records = dict(zip(to_read, await self.queue.get_many(to_read), strict=True))
        await self._write(events, records, [tid for tid in task_ids if tid in in_flight])
        self._remember(records)
        finished = [
            tid for tid, r in records.items() if r is not None and r.state in FINISHED_STATES
        ]
        await self._ack(ids, finished)
        self._own_pending = False
        self.recorded += len(events)
        return len(events)

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000) -> None:
        """Record until ``stop`` is set, riding out PostgreSQL and Redis outages.

        An outage is logged once when it starts and once when it ends; in between the batch
        stays pending (nothing is lost) and is retried with a growing pause (at most
        :data:`BACKOFF_MAX`). A batch in flight when ``stop`` is set is finished first.
        """
        down_since: float | None = None
        failures = 0
        while not stop.is_set():
            try:
                await self.step(block_ms=block_ms)
            except (DataError, IntegrityError) as exc:
                # A row the database refuses (not an outage): record what can be, never stall.
                log.exception("history: the database refused a batch (%s)", type(exc).__name__)
                await self._write_one_by_one()
                continue
            except (DatabaseError, InterfaceError, RedisError, OSError) as exc:
                failures += 1
                if down_since is None:
                    down_since = time.monotonic()
                    what = "Redis" if isinstance(exc, RedisError | OSError) else "PostgreSQL"
                    first_line = (str(exc).strip().splitlines() or [""])[0]
                    log.error(
                        "history: %s is unavailable (%s: %s); the events stay in the log and "
                        "are recorded when it is back (retrying every %.0f s at most)",
                        what,
                        type(exc).__name__,
                        first_line,
                        BACKOFF_MAX,
                    )
                self._own_pending = True
                await _sleep_or_stop(stop, min(BACKOFF_MAX, 0.2 * 2 ** min(failures, 5)))
                continue
            if down_since is not None:
                log.warning(
                    "history: recording again after %.1f s (%d failed tries)",
                    time.monotonic() - down_since,
                    failures,
                )
                down_since, failures = None, 0

    async def _write_one_by_one(self) -> None:
        """Write this recorder's pending entries one per transaction, acknowledging even those
        the database refuses (logged), so one bad row cannot stall the history."""
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.keys.events: "0"}, count=self.settings.history_batch
        )
        for _stream, entries in reply or []:
            for eid, fields in entries:
                event_id = _text(eid)
                if fields:
                    ev = parse_entry(event_id, _pairs(fields))
                    records = {}
                    if ev.task_id:
                        records[ev.task_id] = (await self.queue.get_many([ev.task_id]))[0]
                    try:
                        await self._write([ev], records)
                    except (DataError, IntegrityError):
                        log.exception("history: event %s could not be recorded; skipped", event_id)
                await self.redis.xack(self.keys.events, self.group, event_id)
        self._own_pending = False


def _pairs(fields: Any) -> dict[Any, Any]:
    """A stream entry's fields (or an XINFO reply) as a dict, from a flat list or a dict."""
    if isinstance(fields, dict):
        return fields
    if not fields:
        return {}
    items = list(fields)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _trim_gap(
    info: dict[Any, Any], groups: Iterable[Any], group: str, new: list[tuple[str, Any]]
) -> tuple[int, int] | None:
    """The ms range of events the stream trimmed before ``group`` read them, if any.

    Read in the same ``MULTI`` as the new entries: the group had read up to ``last-delivered``;
    the stream started at ``first-entry``. When the group is behind the stream's start and the
    stream ever dropped entries (``entries-added`` > ``length``), the events between are gone.
    """
    first = info.get("first-entry")
    if not first:
        return None
    first_id = _text(first[0])
    last = None
    for g in groups or []:
        g = _pairs(g)
        if _text(g.get("name", b"")) == group:
            last = _text(g.get("last-delivered-id", b"0-0"))
    if last is None:
        return None
    added, length = info.get("entries-added"), info.get("length")
    dropped = last != "0-0" if added is None else int(added) > int(length or 0)
    if not dropped or stream_id(last) >= stream_id(first_id):
        return None
    upto = new[0][0] if new else first_id
    return stream_id(last)[0], stream_id(upto)[0]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
