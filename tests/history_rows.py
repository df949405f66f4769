"""Recorded tasks for the history read tests: rows written straight into a migrated database,
and the answers the history should give, computed from those rows in Python.

``sample_rows()`` is a deterministic mix over three UTC days (with a quiet day between two of
them): several types, states, error classes, batches and costs, and runs of tasks created at the
same microsecond, so keyset pagination has ties to get right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from taskflow_server.history.db import HistoryDB

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
"""The first day of :func:`sample_rows`."""

TASK_COLUMNS = (
    "id",
    "task_type",
    "lane",
    "priority",
    "state",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "attempts",
    "retry_count",
    "max_retries",
    "error_class",
    "error_message",
    "provider",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "idempotency_key",
    "batch",
    "metadata",
    "result",
    "result_ref",
    "last_event_id",
)


async def migrated(url: str) -> None:
    """Apply the history schema to the (empty) database at ``url``."""
    db = HistoryDB(url)
    await db.open()
    try:
        await db.migrate()
    finally:
        await db.close()


def task_row(task_id: str, created_at: datetime, **fields: Any) -> dict[str, Any]:
    """A full ``tasks`` row with plain defaults (a COMPLETED summarize task); ``fields`` win."""
    row: dict[str, Any] = {
        "id": task_id,
        "task_type": "summarize",
        "lane": "llm",
        "priority": "default",
        "state": "COMPLETED",
        "created_at": created_at,
        "started_at": created_at + timedelta(seconds=1),
        "finished_at": created_at + timedelta(seconds=3),
        "updated_at": created_at + timedelta(seconds=3),
        "attempts": 1,
        "retry_count": 0,
        "max_retries": 3,
        "error_class": None,
        "error_message": None,
        "provider": "openrouter",
        "model": "test/model",
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost_usd": Decimal("0.001"),
        "idempotency_key": None,
        "batch": None,
        "metadata": {},
        "result": None,
        "result_ref": None,
        "last_event_id": f"{int(created_at.timestamp() * 1000)}-0",
    }
    row.update(fields)
    return row


async def insert_rows(
    url: str,
    tasks: Sequence[dict[str, Any]],
    events: Iterable[dict[str, Any]] = (),
    attempts: Iterable[dict[str, Any]] = (),
) -> None:
    """Write ``tasks`` (full rows, see :func:`task_row`), ``task_events`` and ``attempts``."""
    import psycopg

    names = ", ".join(TASK_COLUMNS)
    marks = ", ".join(f"%({c})s" for c in TASK_COLUMNS)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.cursor() as cur:
            rows = []
            for task in tasks:
                row = dict(task)
                row["metadata"] = json.dumps(row["metadata"])
                row["result"] = None if row["result"] is None else json.dumps(row["result"])
                rows.append(row)
            if rows:
                await cur.executemany(f"INSERT INTO tasks ({names}) VALUES ({marks})", rows)
            for e in events:
                await cur.execute(
                    "INSERT INTO task_events (event_id, task_id, type, old_state, state, at, data)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        e["event_id"],
                        e["task_id"],
                        e["type"],
                        e.get("old_state"),
                        e.get("state"),
                        e["at"],
                        json.dumps(e.get("data", {})),
                    ),
                )
            for a in attempts:
                await cur.execute(
                    "INSERT INTO attempts (task_id, attempt, worker_id, started_at, ended_at,"
                    " outcome, error_class, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        a["task_id"],
                        a["attempt"],
                        a.get("worker_id"),
                        a.get("started_at"),
                        a.get("ended_at"),
                        a["outcome"],
                        a.get("error_class"),
                        a.get("error"),
                    ),
                )
        await conn.commit()


_TYPES = ("summarize", "pdfxtract", "demo.sleep")
_ERRORS = ("timeout", "rate_limited", "invalid_input")


def sample_rows() -> list[dict[str, Any]]:
    """60 recorded tasks over days 0, 1 and 3 after :data:`DAY0` (day 2 is empty)."""
    rows: list[dict[str, Any]] = []
    for n in range(60):
        day = (0, 1, 3)[n % 3]
        # Every fourth task shares its creation time with the one before: keyset ties.
        minute = n - 1 if n % 4 == 3 else n
        created = DAY0 + timedelta(days=day, hours=n % 5, minutes=minute)
        state = "COMPLETED"
        error_class = None
        if n % 7 == 0:
            state, error_class = "DLQ", _ERRORS[n % 3]
        elif n % 11 == 0:
            state = "CANCELLED"
        elif n % 13 == 0:
            state = "PENDING"
        run_seconds = 1 + (n * 37) % 23
        open_task = state == "PENDING"
        rows.append(
            task_row(
                f"t{n:03d}",
                created,
                task_type=_TYPES[n % 3],
                state=state,
                error_class=error_class,
                error_message=f"{error_class} on try {n}" if error_class else None,
                started_at=None if open_task else created + timedelta(seconds=2),
                finished_at=None if open_task else created + timedelta(seconds=2 + run_seconds),
                cost_usd=Decimal(n % 9) / Decimal(1000),
                prompt_tokens=10 * n,
                completion_tokens=n,
                batch="alpha" if n % 2 == 0 else "beta",
            )
        )
    return rows


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    pos = fraction * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def duration(row: dict[str, Any]) -> float | None:
    """finished - started in seconds, when the row has both."""
    if row["started_at"] is None or row["finished_at"] is None:
        return None
    return float((row["finished_at"] - row["started_at"]).total_seconds())


def newest_first(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Ids in the history list's order: ``(created_at, id)`` descending."""
    return [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]
