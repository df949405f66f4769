"""Typed views of what the store keeps: task records, new tasks, claims, queue depths.

These are read models: nothing here writes to Redis. ``store/queue.py`` owns every change.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskflow_server.states import TaskState

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


def _json_list(value: str | None) -> list[dict[str, Any]]:
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return []  # a malformed stored history is tolerated, not fatal
    return parsed if isinstance(parsed, list) else []


def sid_seconds(sid: str) -> float | None:
    """The creation time (epoch seconds) held in a submitted-stream entry id ``<ms>-<seq>``.

    A task hash keeps that id as ``sid``; ``None`` when it is not a stream id.
    """
    ms, dash, _ = sid.partition("-")
    if not dash or not (ms.isascii() and ms.isdigit()):
        return None
    return int(ms) / 1000


class _Lenient:
    """Reads a task hash field by field; a field that does not parse gets a default and a note.

    A hash written by an older version or by another Redis client must not make a read fail:
    :attr:`problems` says what was replaced, and the API shows it.
    """

    def __init__(self, raw: dict[Any, Any]) -> None:
        self.problems: list[str] = []
        self.h: dict[str, str] = {}
        for key, value in raw.items():
            name = self._decode(key, "a field name")
            self.h[name] = self._decode(value, name)

    def _decode(self, value: Any, name: str) -> str:
        if not isinstance(value, bytes):
            return str(value)
        try:
            return value.decode()
        except UnicodeDecodeError:
            self.problems.append(f"{name}: not UTF-8 (undecodable bytes shown as U+FFFD)")
            return value.decode(errors="replace")

    def number(self, name: str, default: float, kind: type[float] | type[int] = float) -> Any:
        """Field ``name`` as ``kind``; ``default`` when absent, empty or unreadable."""
        raw = self.h.get(name)
        if not raw:
            return default
        try:
            return kind(raw)
        except (ValueError, OverflowError):
            self.problems.append(f"{name}: {raw[:40]!r} is not a number")
            return default

    def optional(self, name: str) -> float | None:
        """Field ``name`` as a float, or ``None``."""
        value: float | None = self.number(name, None, float)  # type: ignore[arg-type]
        return value

    def json(self, name: str) -> Any:
        """Field ``name`` as JSON; its raw text when it is not JSON (``None`` when absent)."""
        raw = self.h.get(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except RecursionError:
            self.problems.append(f"{name}: nested too deep to read")
            return None
        except ValueError:
            return raw


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
    traceparent: str | None = None  # W3C trace context of the submit, when tracing is on


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
    traceparent: str | None = None  # the submit's W3C trace context, when it had one


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
    problems: tuple[str, ...] = ()
    """Fields of the stored hash that could not be read and were replaced (empty: none)."""

    @classmethod
    def from_hash(cls, task_id: str, raw: dict[Any, Any]) -> TaskRecord:
        """Parse a task hash as stored by the scripts; never raises on a damaged field."""
        r = _Lenient(raw)
        h = r.h
        result = r.json("result")
        metadata = r.json("metadata") if h.get("metadata") else {}
        created = r.number("created_at", 0.0)
        record = cls(
            id=task_id,
            task_type=h.get("task_type", ""),
            priority=h.get("priority", "default"),
            lane=h.get("lane", "local"),
            state=h.get("state", TaskState.PENDING.value),
            retry_count=r.number("retry_count", 0, int),
            max_retries=r.number("max_retries", 0, int),
            last_error=h.get("last_error") or None,
            error_type=h.get("error_type") or None,
            retry_after=r.optional("retry_after"),
            created_at=created,
            updated_at=r.number("updated_at", created),
            started_at=r.optional("started_at"),
            completed_at=r.optional("completed_at"),
            scheduled_at=r.optional("scheduled_at"),
            dlq_at=r.optional("dlq_at"),
            worker_id=h.get("worker_id") or None,
            progress=r.number("progress", 0.0),
            progress_message=h.get("progress_message") or None,
            result=result,
            error_history=_json_list(h.get("error_history")),
            state_history=_json_list(h.get("state_history"))
            or [{"state": TaskState.PENDING.value, "ts": created}],
            idempotency_key=h.get("idempotency_key") or None,
            metadata=metadata if isinstance(metadata, dict) else {},
            lost_leases=r.number("lost_leases", 0, int),
            cancel_requested=h.get("cancel_requested") == "1",
            problems=tuple(r.problems),
        )
        return record


STATE_FIELDS: tuple[str, ...] = ("sid", "state", "updated_at", "retry_count", "progress")
"""The task hash fields :class:`TaskStateView` is read from (``sid`` holds the creation time)."""


@dataclass(frozen=True)
class TaskStateView:
    """Where a task stands, for a client polling many tasks: no payload, no result, no history.

    Read from :data:`STATE_FIELDS` of the task hash alone (the submitted stream is not touched).
    Times are epoch seconds; ``updated_at`` is the creation time until the first transition.
    """

    id: str
    state: str
    updated_at: float
    retry_count: int
    progress: float

    @classmethod
    def from_fields(cls, task_id: str, values: Sequence[Any]) -> TaskStateView | None:
        """Parse the values of :data:`STATE_FIELDS`, in that order (as HMGET returns them).

        ``None`` when the task is unknown (no ``sid``, like every other read); a field that does
        not parse gets its default, so this never raises on a damaged hash.
        """
        raw = {k: v for k, v in zip(STATE_FIELDS, values, strict=True) if v is not None}
        if "sid" not in raw:
            return None
        r = _Lenient(raw)
        created = sid_seconds(r.h["sid"]) or 0.0
        return cls(
            id=task_id,
            state=r.h.get("state", TaskState.PENDING.value),
            updated_at=r.number("updated_at", created),
            retry_count=r.number("retry_count", 0, int),
            progress=r.number("progress", 0.0),
        )
