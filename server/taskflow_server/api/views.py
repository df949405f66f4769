"""Turn store records into API models (v1 shapes), without touching Redis.

The task hash keeps epoch seconds and structured JSON; the v1 API shows ISO 8601 timestamps with a
``Z``, ``result`` as a string and ``content`` as the task's input. These pure functions do that
translation so every router shows a task the same way.

A stored task may hold what the API cannot send (a lone surrogate, JSON nested past what the
serializer takes, a field another Redis client wrote as garbage). :func:`task_detail` and
:func:`task_summary` never raise on such a task: the unreadable parts are replaced by
:data:`UNREADABLE` (or an empty value) and ``error`` says which, so one bad task never fails a
listing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

from taskflow_server.api.body import json_problem, printable_text
from taskflow_server.api.schemas import StateChange, TaskDetail, TaskStateItem, TaskSummary
from taskflow_server.states import STATES, TaskState
from taskflow_server.store.keys import PRIORITIES
from taskflow_server.store.records import TaskRecord, TaskStateView

log = logging.getLogger(__name__)

UNREADABLE = "<unreadable: see error>"
"""What a stored value the API cannot render shows instead."""

_TEXT_ATTRS = (
    "task_type",
    "lane",
    "last_error",
    "error_type",
    "worker_id",
    "progress_message",
    "idempotency_key",
)
_JSON_ATTRS: dict[str, Any] = {
    "metadata": {},
    "result": UNREADABLE,
    "error_history": [],
    "state_history": [],
}
_TIME_ATTRS = (
    "created_at",
    "updated_at",
    "retry_after",
    "started_at",
    "completed_at",
    "scheduled_at",
    "dlq_at",
)

CONTENT_PREVIEW_CHARS = 2000
"""The most characters of a non-text payload shown as ``content``."""

_TEXT_FIELDS = ("content", "text")


def iso(ts: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime (serialised with a ``Z``); ``None`` stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def _must_iso(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _time_ok(ts: float | None) -> bool:
    if ts is None:
        return True
    try:
        datetime.fromtimestamp(ts, UTC)
    except (ValueError, OverflowError, OSError):
        return False
    return True


def payload_text(payload: dict[str, Any] | None) -> str | None:
    """The input text of a text task (``content`` or ``text`` field), if it has one."""
    if not payload:
        return None
    for name in _TEXT_FIELDS:
        value = payload.get(name)
        if isinstance(value, str):
            return value
    return None


def describe_content(record: TaskRecord, payload: dict[str, Any] | None) -> str | None:
    """What ``content`` shows: the text for text tasks, a description of a file, else JSON."""
    text = payload_text(payload)
    if text is not None:
        return text
    if payload is None:
        return None
    blob = payload.get("blob")
    if isinstance(blob, str):
        name = payload.get("filename") or record.metadata.get("filename") or "upload"
        size = record.metadata.get("file_size")
        size_text = f"{size} bytes, " if isinstance(size, int) else ""
        issue = payload.get("issue_date")
        issue_text = f", issue {issue}" if issue else ""
        return f"PDF {name} ({size_text}sha256 {blob[:16]}){issue_text}"
    encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    if len(encoded) > CONTENT_PREVIEW_CHARS:
        return encoded[: CONTENT_PREVIEW_CHARS - 1] + "…"
    return encoded


def content_length(record: TaskRecord, payload: dict[str, Any] | None) -> int:
    """Characters of input text, or bytes of an uploaded file, or the payload's JSON length."""
    text = payload_text(payload)
    if text is not None:
        return len(text)
    size = record.metadata.get("file_size")
    if isinstance(size, int):
        return size
    if payload is None:
        return 0
    return len(json.dumps(payload, separators=(",", ":"), default=str))


def result_text(record: TaskRecord) -> str | None:
    """The v1 ``result`` string: the summary for summarize, the JSON text of anything else."""
    result = record.result
    if result is None:
        return None
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        summary = result.get("summary")
        if record.task_type == "summarize" and isinstance(summary, str):
            return summary
    return json.dumps(result, ensure_ascii=False, default=str)


def _history(entries: list[dict[str, Any]]) -> list[StateChange]:
    out: list[StateChange] = []
    for entry in entries:
        state = entry.get("state")
        ts = entry.get("ts", entry.get("timestamp"))
        if isinstance(state, str) and isinstance(ts, int | float) and _time_ok(float(ts)):
            out.append(StateChange(state=state, timestamp=_must_iso(float(ts))))
    return out


def _errors(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in entries:
        item = dict(entry)
        ts = item.get("timestamp")
        if isinstance(ts, int | float) and _time_ok(float(ts)):
            item["timestamp"] = _must_iso(float(ts)).isoformat().replace("+00:00", "Z")
        out.append(item)
    return out


def _repair(
    record: TaskRecord, payload: dict[str, Any] | None
) -> tuple[TaskRecord, dict[str, Any] | None, list[str]]:
    """The record and payload with every part that cannot be rendered replaced, and why."""
    problems = list(record.problems)
    fixes: dict[str, Any] = {}
    for name, placeholder in _JSON_ATTRS.items():
        problem = json_problem(getattr(record, name))
        if problem:
            problems.append(f"{name}: {problem}")
            fixes[name] = placeholder
    for name in _TEXT_ATTRS:
        value = getattr(record, name)
        cleaned = printable_text(value)
        if cleaned != value:
            problems.append(f"{name}: it holds a lone UTF-16 surrogate (shown escaped)")
            fixes[name] = cleaned
    for name in _TIME_ATTRS:
        value = getattr(record, name)
        if not _time_ok(value):
            problems.append(f"{name}: {value!r} is not a time")
            fixes[name] = 0.0 if name in ("created_at", "updated_at") else None
    if record.state not in STATES:
        shown = printable_text(record.state[:40])
        problems.append(f"state: {shown!r} is not a state (shown as FAILED)")
        fixes["state"] = TaskState.FAILED
    if record.priority not in PRIORITIES:
        problems.append(f"priority: {printable_text(record.priority[:40])!r} is not a priority")
        fixes["priority"] = "default"
    if not math.isfinite(record.progress):
        problems.append("progress: not a finite number")
        fixes["progress"] = 0.0
    payload_problem = json_problem(payload)
    if payload_problem:
        problems.append(f"payload: {payload_problem}")
        payload = {"content": UNREADABLE}
    if fixes:
        record = dataclasses.replace(record, **fixes)
    return record, payload, problems


def _error_text(problems: list[str]) -> str:
    return "the stored task could not be read in full; placeholders replace: " + "; ".join(problems)


def _unreadable_detail(record: TaskRecord, exc: Exception) -> TaskDetail:
    """The last resort: a task whose fields could not be shown at all."""
    log.warning("task %s cannot be shown: %r", record.id, exc)
    epoch = _must_iso(0.0)
    return TaskDetail(
        task_id=printable_text(record.id) or "",
        state=TaskState.FAILED,
        task_type=UNREADABLE,
        priority="default",
        lane=UNREADABLE,
        content=UNREADABLE,
        result=None,
        retry_count=0,
        max_retries=0,
        last_error=None,
        error_type=None,
        retry_after=None,
        created_at=epoch,
        updated_at=epoch,
        started_at=None,
        completed_at=None,
        scheduled_at=None,
        dlq_at=None,
        worker_id=None,
        progress=0.0,
        progress_message=None,
        error_history=[],
        state_history=[],
        idempotency_key=None,
        metadata={},
        cancel_requested=False,
        lost_leases=0,
        error=f"the stored task could not be read: {type(exc).__name__}",
    )


def task_detail(record: TaskRecord, payload: dict[str, Any] | None) -> TaskDetail:
    """The full v1 TaskDetail of a record (``payload`` supplies ``content``).

    Never raises: unreadable parts become placeholders named in ``error``.
    """
    try:
        fixed, payload, problems = _repair(record, payload)
        detail = _task_detail(fixed, payload)
    except Exception as exc:  # a damaged record must not fail the whole response
        return _unreadable_detail(record, exc)
    if problems:
        detail.error = _error_text(problems)
    return detail


def task_summary(record: TaskRecord, payload: dict[str, Any] | None) -> TaskSummary:
    """A summary row: no content, no result; ``content_length`` and ``has_result`` instead.

    Never raises: unreadable parts become placeholders named in ``error``.
    """
    try:
        fixed, payload, problems = _repair(record, payload)
        summary = _task_summary(fixed, payload)
    except Exception as exc:  # a damaged record must not fail the whole response
        detail = _unreadable_detail(record, exc)
        return TaskSummary(
            **detail.model_dump(include=set(TaskSummary.model_fields) - {"content_length"}),
            content_length=0,
            has_result=False,
        )
    if problems:
        summary.error = _error_text(problems)
    return summary


def task_state_item(view: TaskStateView) -> TaskStateItem:
    """The polling view of a task. Never raises: like :func:`task_detail`, a state no version
    writes shows as FAILED, a time that is not one as the epoch, and a non-finite progress as 0.
    """
    state = TaskState(view.state) if view.state in STATES else TaskState.FAILED
    updated = view.updated_at if _time_ok(view.updated_at) else 0.0
    progress = view.progress if math.isfinite(view.progress) else 0.0
    return TaskStateItem(
        task_id=view.id,
        state=state,
        updated_at=_must_iso(updated),
        retry_count=view.retry_count,
        progress=progress,
    )


def _task_detail(record: TaskRecord, payload: dict[str, Any] | None) -> TaskDetail:
    return TaskDetail(
        task_id=record.id,
        state=record.state,  # type: ignore[arg-type]  # the store only writes known states
        task_type=record.task_type,
        priority=record.priority,  # type: ignore[arg-type]
        lane=record.lane,
        content=describe_content(record, payload),
        result=result_text(record),
        result_data=record.result,
        retry_count=record.retry_count,
        max_retries=record.max_retries,
        last_error=record.last_error,
        error_type=record.error_type,
        retry_after=iso(record.retry_after),
        created_at=_must_iso(record.created_at),
        updated_at=_must_iso(record.updated_at),
        started_at=iso(record.started_at),
        completed_at=iso(record.completed_at),
        scheduled_at=iso(record.scheduled_at),
        dlq_at=iso(record.dlq_at),
        worker_id=record.worker_id,
        progress=record.progress,
        progress_message=record.progress_message,
        error_history=_errors(record.error_history),
        state_history=_history(record.state_history),
        idempotency_key=record.idempotency_key,
        metadata=record.metadata,
        cancel_requested=record.cancel_requested,
        lost_leases=record.lost_leases,
    )


def _task_summary(record: TaskRecord, payload: dict[str, Any] | None) -> TaskSummary:
    return TaskSummary(
        task_id=record.id,
        state=record.state,  # type: ignore[arg-type]
        task_type=record.task_type,
        priority=record.priority,  # type: ignore[arg-type]
        created_at=_must_iso(record.created_at),
        updated_at=_must_iso(record.updated_at),
        completed_at=iso(record.completed_at),
        retry_count=record.retry_count,
        max_retries=record.max_retries,
        last_error=record.last_error,
        error_type=record.error_type,
        progress=record.progress,
        content_length=content_length(record, payload),
        has_result=record.result is not None,
    )
