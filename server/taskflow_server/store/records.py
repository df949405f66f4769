"""Typed views of what the store keeps: task records, new tasks, claims, queue depths.

These are read models: nothing here writes to Redis. ``store/queue.py`` owns every change.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

_last_ms = 0
_seq = 0


def new_task_id() -> str:
    """A time-ordered, URL-safe task id: 26 hex chars.

    12 of milliseconds, 4 of a per-process sequence within that millisecond (so ids made in one
    process sort in the order they were made), 10 random.
    """
    global _last_ms, _seq
    ms = int(time.time() * 1000)
    if ms <= _last_ms:
        ms, _seq = _last_ms, _seq + 1
        if _seq > 0xFFFF:
            ms, _seq = ms + 1, 0
    else:
        _seq = 0
    _last_ms = ms
    return f"{ms:012x}{_seq:04x}{os.urandom(5).hex()}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _json_list(value: str | None) -> list[dict[str, Any]]:
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []  # a malformed stored history is tolerated, not fatal
    return parsed if isinstance(parsed, list) else []


@dataclass(frozen=True)
class NewTask:
    """A task to submit. ``payload`` must already be validated for its task type."""

    task_type: str
    payload: dict[str, Any]
    lane: str = "local"
    priority: str = "default"
    max_retries: int | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class Submitted:
    """The outcome of one submit: ``created`` is False when an idempotency key matched."""

    task_id: str
    state: str
    created: bool


@dataclass(frozen=True)
class Claim:
    """A task a worker holds under a lease."""

    task_id: str
    task_type: str
    token: str
    retry_count: int
    lost_leases: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class QueueDepths:
    """How many ids wait in each structure."""

    by_priority: dict[str, int]
    retry: int
    scheduled: int
    dlq: int
    active: int

    @property
    def primary(self) -> int:
        """All primary queues together (every priority, every lane)."""
        return sum(self.by_priority.values())

    def as_dict(self) -> dict[str, Any]:
        """The v1 shape (``primary`` a number) plus the per-priority breakdown."""
        return {
            "primary": self.primary,
            "retry": self.retry,
            "scheduled": self.scheduled,
            "dlq": self.dlq,
            "active": self.active,
            "primary_by_priority": dict(self.by_priority),
        }


@dataclass(frozen=True)
class TaskRecord:
    """Everything the store knows about one task. Times are epoch seconds."""

    id: str
    task_type: str
    priority: str
    lane: str
    state: str
    retry_count: int
    max_retries: int
    last_error: str | None
    error_type: str | None
    retry_after: float | None
    created_at: float
    updated_at: float
    started_at: float | None
    completed_at: float | None
    scheduled_at: float | None
    dlq_at: float | None
    worker_id: str | None
    progress: float
    progress_message: str | None
    result: Any
    error_history: list[dict[str, Any]] = field(default_factory=list)
    state_history: list[dict[str, Any]] = field(default_factory=list)
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    lost_leases: int = 0
    cancel_requested: bool = False

    @classmethod
    def from_hash(cls, task_id: str, raw: dict[Any, Any]) -> TaskRecord:
        """Parse a task hash as stored by the scripts."""
        h = {_text(k): _text(v) for k, v in raw.items()}
        result_raw = h.get("result")
        result: Any = None
        if result_raw is not None:
            try:
                result = json.loads(result_raw)
            except ValueError:
                result = result_raw
        meta_raw = h.get("metadata")
        try:
            metadata = json.loads(meta_raw) if meta_raw else {}
        except ValueError:
            metadata = {}
        created = float(h.get("created_at") or 0.0)
        return cls(
            id=task_id,
            task_type=h.get("task_type", ""),
            priority=h.get("priority", "default"),
            lane=h.get("lane", "local"),
            state=h.get("state", "PENDING"),
            retry_count=int(h.get("retry_count") or 0),
            max_retries=int(h.get("max_retries") or 0),
            last_error=h.get("last_error") or None,
            error_type=h.get("error_type") or None,
            retry_after=_float(h.get("retry_after")),
            created_at=created,
            updated_at=float(h.get("updated_at") or created),
            started_at=_float(h.get("started_at")),
            completed_at=_float(h.get("completed_at")),
            scheduled_at=_float(h.get("scheduled_at")),
            dlq_at=_float(h.get("dlq_at")),
            worker_id=h.get("worker_id") or None,
            progress=float(h.get("progress") or 0.0),
            progress_message=h.get("progress_message") or None,
            result=result,
            error_history=_json_list(h.get("error_history")),
            state_history=_json_list(h.get("state_history"))
            or [{"state": "PENDING", "ts": created}],
            idempotency_key=h.get("idempotency_key") or None,
            metadata=metadata if isinstance(metadata, dict) else {},
            lost_leases=int(h.get("lost_leases") or 0),
            cancel_requested=h.get("cancel_requested") == "1",
        )
