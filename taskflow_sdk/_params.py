"""Call arguments checked and shaped into what the server expects: task ids, submit bodies,
the filters of a listing, amounts of money. Pure functions; nothing here sends anything.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from taskflow_sdk.models import Task, TaskState

__all__ = [
    "HistoryQuery",
    "ListQuery",
    "batch_item",
    "check_usd",
    "new_idempotency_key",
    "submit_body",
    "task_id_of",
    "valid_id",
]


def new_idempotency_key() -> str:
    """A fresh key for one submit call (reused by that call's retries)."""
    return uuid.uuid4().hex


def task_id_of(task: Task | str) -> str:
    """The id of a task or an id."""
    return task.task_id if isinstance(task, Task) else str(task)


def valid_id(task_id: str) -> str:
    """``task_id``, refused (``ValueError``) when it could not be one path segment."""
    if not task_id or "/" in task_id:
        raise ValueError(f"not a task id: {task_id!r}")
    return task_id


def check_usd(value: float | None, name: str) -> float | None:
    """``value`` as a non-negative finite amount of USD, or ``None``; raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of USD or None, not {type(value).__name__}")
    amount = float(value)
    if not amount >= 0.0 or amount == float("inf"):
        raise ValueError(f"{name} must be a finite amount >= 0 (or None), not {value!r}")
    return amount


def submit_body(
    task_type: str,
    payload: Mapping[str, Any] | None,
    priority: str | None,
    max_retries: int | None,
    idempotency_key: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The JSON body of one submit (a fresh idempotency key when none is given)."""
    body: dict[str, Any] = {
        "task_type": task_type,
        "payload": dict(payload or {}),
        "idempotency_key": idempotency_key or new_idempotency_key(),
    }
    if priority is not None:
        body["priority"] = priority
    if max_retries is not None:
        body["max_retries"] = max_retries
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body


def batch_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """One ``submit_many`` item (shaped like ``submit``'s arguments) as a submit body."""
    if "task_type" not in item:
        raise ValueError("every submit_many item needs a task_type")
    return submit_body(
        str(item["task_type"]),
        item.get("payload"),
        item.get("priority"),
        item.get("max_retries"),
        item.get("idempotency_key"),
        item.get("metadata"),
    )


def _iso(value: datetime | date | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    return value.isoformat()


@dataclass(frozen=True)
class ListQuery:
    """Filters of ``list()``; builds each page's query string."""

    state: str | None = None
    task_type: str | None = None
    since: str | None = None
    until: str | None = None
    id_prefix: str | None = None
    sort_by: str = "created_at"
    sort_order: str = "desc"
    page_size: int = 100
    limit: int | None = None

    @classmethod
    def make(
        cls,
        *,
        state: TaskState | str | None,
        task_type: str | None,
        since: datetime | date | str | None,
        until: datetime | date | str | None,
        id_prefix: str | None,
        sort: str,
        page_size: int,
        limit: int | None,
    ) -> ListQuery:
        """Validate and normalise the arguments of ``list()``."""
        order = "desc" if sort.startswith("-") else "asc"
        name = sort.lstrip("-+") or "created_at"
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        return cls(
            state=str(TaskState(str(state).upper())) if state is not None else None,
            task_type=task_type,
            since=_iso(since),
            until=_iso(until),
            id_prefix=id_prefix or None,
            sort_by=name,
            sort_order=order,
            page_size=page_size,
            limit=limit,
        )

    def params(self, page: int) -> dict[str, Any]:
        """The query string of page ``page`` (1-based)."""
        return {
            "task_status": self.state,
            "task_type": self.task_type,
            "start_date": self.since,
            "end_date": self.until,
            "task_id": self.id_prefix,
            "sort_by": self.sort_by,
            "sort_order": self.sort_order,
            "page": page,
            "page_size": self.page_size,
        }

    def keep(self, task: Task) -> bool:
        """Whether a listed task matches (the server matches id substrings; this keeps only
        prefixes)."""
        return self.id_prefix is None or task.task_id.startswith(self.id_prefix)


TimeArg = datetime | date | float | int | str | None
"""A history time bound: a datetime (naive = UTC), a date, epoch seconds or ISO 8601 text."""


def _history_time(value: TimeArg, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a datetime, a date, epoch seconds or a string")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of epoch seconds, not {value!r}")
        return repr(float(value))
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _history_states(state: TaskState | str | Sequence[TaskState | str] | None) -> list[str]:
    if state is None:
        return []
    wanted = [state] if isinstance(state, str) else list(state)
    out: list[str] = []
    for item in wanted:
        for part in str(getattr(item, "value", item)).split(","):
            name = part.strip().upper()
            if not name:
                continue
            if name not in TaskState.__members__:
                states = ", ".join(TaskState.__members__)
                raise ValueError(f"state {part.strip()!r} is not a state: use one of {states}")
            out.append(name)
    return out


@dataclass(frozen=True)
class HistoryQuery:
    """Filters of ``history()`` and ``history_stats()``; builds their query string."""

    since: str | None = None
    until: str | None = None
    time_field: str = "created"
    task_type: str | None = None
    states: tuple[str, ...] = ()
    error_class: str | None = None
    batch: str | None = None
    min_cost: float | None = None
    max_cost: float | None = None

    @classmethod
    def make(
        cls,
        *,
        since: TimeArg,
        until: TimeArg,
        time_field: str,
        task_type: str | None,
        state: TaskState | str | Sequence[TaskState | str] | None,
        error_class: str | None,
        batch: str | None,
        min_cost: float | None,
        max_cost: float | None,
    ) -> HistoryQuery:
        """Check and normalise the arguments (``ValueError`` / ``TypeError`` for bad ones)."""
        if time_field not in ("created", "finished"):
            raise ValueError(f"time_field must be 'created' or 'finished', not {time_field!r}")
        return cls(
            since=_history_time(since, "since"),
            until=_history_time(until, "until"),
            time_field=time_field,
            task_type=task_type,
            states=tuple(_history_states(state)),
            error_class=error_class,
            batch=batch,
            min_cost=check_usd(min_cost, "min_cost"),
            max_cost=check_usd(max_cost, "max_cost"),
        )

    def params(self) -> dict[str, Any]:
        """The filters' query string (absent filters left out)."""
        out: dict[str, Any] = {
            "since": self.since,
            "until": self.until,
            "time_field": self.time_field,
            "task_type": self.task_type,
            "state": list(self.states) or None,
            "error_class": self.error_class,
            "batch": self.batch,
            "min_cost": self.min_cost,
            "max_cost": self.max_cost,
        }
        return {k: v for k, v in out.items() if v is not None}
