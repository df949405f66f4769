"""Typed views of what the server sends: tasks, pages of tasks, queues, workers, the breaker...

Every model accepts fields it does not know (a newer server may send more) and defaults the
optional ones it misses (an older one may send fewer). Collections have ``to_pandas()``;
:class:`Task` and :class:`TaskList` render as HTML tables in notebooks. What ``wait([...])``
(:class:`Tasks`), ``queues()`` and ``workers()`` return print as a few compact lines and an HTML
table of at most :data:`REPR_ROWS` rows, however much the server said.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BatchItem",
    "BatchSubmitResult",
    "BreakerStatus",
    "BreakerView",
    "Budget",
    "Event",
    "Health",
    "HistoryBucket",
    "HistoryPage",
    "HistoryStats",
    "HistoryTask",
    "Hold",
    "Metrics",
    "OpenRouterStatus",
    "QueueDepths",
    "QueueStatus",
    "StateChange",
    "Task",
    "TaskList",
    "TaskState",
    "TaskStatus",
    "Tasks",
    "Worker",
    "WorkerList",
]


class TaskState(StrEnum):
    """The state of a task (upper-case strings on the wire)."""

    PENDING = "PENDING"
    """Queued, waiting for a worker."""
    ACTIVE = "ACTIVE"
    """A worker holds it under a lease."""
    SCHEDULED = "SCHEDULED"
    """An attempt failed with a transient error; waits for its retry time."""
    COMPLETED = "COMPLETED"
    """Finished with a result."""
    FAILED = "FAILED"
    """A failed attempt (v1 state; kept in history)."""
    DLQ = "DLQ"
    """Given up: a permanent error or no retries left. ``retry()`` sends it back."""
    CANCELLED = "CANCELLED"
    """Cancelled before it finished."""

    @property
    def is_terminal(self) -> bool:
        """True when the task will not change again without a retry: COMPLETED, FAILED, DLQ,
        CANCELLED."""
        return self in _TERMINAL

    @property
    def is_failure(self) -> bool:
        """True for FAILED, DLQ and CANCELLED."""
        return self in _TERMINAL and self is not TaskState.COMPLETED


_TERMINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.DLQ, TaskState.CANCELLED})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns) if columns and not rows else pd.DataFrame(rows)


def _epoch_or_iso(value: Any) -> Any:
    """Epoch seconds (number or numeric string) become an aware datetime; ISO strings pass."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            return value
    return value


REPR_ROWS = 20
"""The most tasks or workers a compact repr lists (then ``… N more``)."""
LINE_WIDTH = 80
"""The longest line of a compact text repr."""
NOTE_WIDTH = 40
"""The longest error or summary excerpt in a compact HTML table."""


def _clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters (an ellipsis marks the cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _html_table(caption: str, header: list[str], rows: list[list[str]], more: int) -> str:
    """A small HTML table (every cell escaped); ``more``: rows left out, said in a last row."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    if more:
        body += f"<tr><td colspan='{len(header)}'>… {more} more</td></tr>"
    return f"<table><caption>{html.escape(caption)}</caption><tr>{th}</tr>{body}</table>"


def _state_counts(states: list[str]) -> str:
    """``COMPLETED=38, DLQ=2``: how many of each state, most frequent first."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


class StateChange(_Model):
    """One entry of a task's state history."""

    state: str
    timestamp: datetime | None = None


_TASK_COLUMNS = [
    "task_id",
    "task_type",
    "state",
    "priority",
    "retry_count",
    "max_retries",
    "progress",
    "error_type",
    "last_error",
    "created_at",
    "started_at",
    "completed_at",
    "summary",
]


class Task(_Model):
    """A task as the server reports it.

    A submit answers only ``task_id``, ``state`` and ``created`` (False when an idempotency key
    matched an earlier task); ``get()`` and ``wait()`` return every field.

    ``result`` is the structured result: the server's ``result_data`` when it sends one, else its
    ``result`` string decoded when it holds JSON. ``result_text`` keeps the v1 string (the summary
    for ``summarize``). :attr:`summary` is the summary text when the result has one.
    """

    task_id: str
    state: TaskState
    task_type: str | None = None
    priority: str = "default"
    lane: str | None = None
    created: bool | None = None
    content: str | None = None
    result: Any = None
    result_text: str | None = None
    retry_count: int = 0
    max_retries: int = 0
    last_error: str | None = None
    error_type: str | None = None
    retry_after: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    scheduled_at: datetime | None = None
    dlq_at: datetime | None = None
    worker_id: str | None = None
    progress: float = 0.0
    progress_message: str | None = None
    error_history: list[dict[str, Any]] = Field(default_factory=list)
    state_history: list[StateChange] = Field(default_factory=list)
    idempotency_key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    cancel_requested: bool = False
    lost_leases: int = 0
    source: str | None = None
    """Where ``get()`` found the task: ``"store"`` (Redis) or ``"history"`` (PostgreSQL, once
    Redis no longer holds it); ``None`` from an older server."""

    @model_validator(mode="before")
    @classmethod
    def _structured_result(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "result_text" in data:
            return data
        out = dict(data)
        raw = out.get("result")
        structured = out.pop("result_data", None)
        if isinstance(raw, str):
            out["result_text"] = raw
        if structured is not None:
            out["result"] = structured
        elif isinstance(raw, str) and raw[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                out["result"] = json.loads(raw)
        if out.get("metadata") is None:
            out.pop("metadata", None)
        return out

    @property
    def is_terminal(self) -> bool:
        """True once the task has finished (COMPLETED, FAILED, DLQ or CANCELLED)."""
        return self.state.is_terminal

    @property
    def ok(self) -> bool:
        """True when the task COMPLETED."""
        return self.state is TaskState.COMPLETED

    @property
    def summary(self) -> str | None:
        """The summary text of a summarize result, if there is one."""
        if isinstance(self.result, dict):
            value = self.result.get("summary")
            return value if isinstance(value, str) else None
        if isinstance(self.result, str) and self.task_type == "summarize":
            return self.result
        return None

    @property
    def cost(self) -> float | None:
        """What the task's LLM calls cost in USD credits (``result.usage.cost``); ``None`` when
        the result carries no cost (no result yet, an offline provider, a failed task)."""
        return result_cost(self.result)

    @property
    def duration(self) -> float | None:
        """Seconds from creation to completion, when both are known."""
        if self.created_at and self.completed_at:
            return (self.completed_at - self.created_at).total_seconds()
        return None

    @property
    def note(self) -> str:
        """One line about the outcome: the error of a failed task, the summary (or progress
        message) otherwise; empty when there is nothing to say."""
        if self.state.is_failure:
            return self.error_type or self.last_error or ""
        if self.state is TaskState.ACTIVE:
            return f"{self.progress:.0%} {self.progress_message or ''}".strip()
        return self.summary or ""

    def line(self) -> str:
        """The task in one line of at most :data:`LINE_WIDTH` characters: id, state, type,
        retries and :attr:`note`."""
        text = (
            f"{self.task_id} {self.state.value:<9} {self.task_type or '?'} "
            f"retries {self.retry_count}/{self.max_retries}"
        )
        note = self.note
        return _clip(f"{text}  {note}" if note else text, LINE_WIDTH)

    def row(self) -> dict[str, Any]:
        """The flat columns used by ``to_pandas()``."""
        data = {name: getattr(self, name) for name in _TASK_COLUMNS if name != "summary"}
        data["state"] = self.state.value
        data["summary"] = self.summary
        return data

    def _repr_html_(self) -> str:
        rows = [(k, v) for k, v in self.row().items() if v not in (None, "")]
        if self.result is not None and self.summary is None:
            text = json.dumps(self.result, default=str, ensure_ascii=False)
            rows.append(("result", text if len(text) <= 300 else text[:299] + "…"))
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption>Task {html.escape(self.task_id)}</caption>{cells}</table>"


class TaskStatus(_Model):
    """Where a task stands, without its input or result: one row of ``POST
    /api/v1/tasks/states``, what ``wait()`` polls (it fetches a task's full :class:`Task` once,
    when this says it has finished)."""

    task_id: str
    state: TaskState
    updated_at: datetime | None = None
    retry_count: int = 0
    progress: float = 0.0

    @property
    def is_terminal(self) -> bool:
        """True once the task has finished (COMPLETED, FAILED, DLQ or CANCELLED)."""
        return self.state.is_terminal

    @classmethod
    def of(cls, task: Task) -> TaskStatus:
        """The status part of a full task."""
        return cls(
            task_id=task.task_id,
            state=task.state,
            updated_at=task.updated_at,
            retry_count=task.retry_count,
            progress=task.progress,
        )

    def applied_to(self, task: Task) -> Task:
        """``task`` with this status's fields (``task`` itself when they already match)."""
        fields = {
            "state": self.state,
            "updated_at": self.updated_at,
            "retry_count": self.retry_count,
            "progress": self.progress,
        }
        if all(getattr(task, k) == v for k, v in fields.items()):
            return task
        return task.model_copy(update=fields)


def result_cost(result: Any) -> float | None:
    """``result["usage"]["cost"]`` as a float (USD), or ``None`` when absent or not a number."""
    if not isinstance(result, dict):
        return None
    usage = result.get("usage")
    if not isinstance(usage, dict):
        return None
    cost = usage.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float | str):
        return None
    try:
        value = float(cost)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def tasks_frame(tasks: list[Task]) -> pd.DataFrame:
    """One row per task (the columns of :meth:`Task.row`)."""
    return _frame([t.row() for t in tasks], _TASK_COLUMNS)


def tasks_text(title: str, tasks: list[Task]) -> str:
    """A title with the tasks' state counts, then one :meth:`Task.line` per task (at most
    :data:`REPR_ROWS`, then ``… N more``)."""
    counts = _state_counts([t.state.value for t in tasks])
    lines = [f"{title}" + (f": {counts}" if counts else "")]
    lines += [f"  {t.line()}" for t in tasks[:REPR_ROWS]]
    if len(tasks) > REPR_ROWS:
        lines.append(f"  … {len(tasks) - REPR_ROWS} more")
    return "\n".join(lines)


def tasks_html(title: str, tasks: list[Task]) -> str:
    """The tasks as a small HTML table (at most :data:`REPR_ROWS` rows)."""
    counts = _state_counts([t.state.value for t in tasks])
    rows = [
        [
            t.task_id,
            t.state.value,
            t.task_type or "",
            f"{t.retry_count}/{t.max_retries}",
            _clip(t.note, NOTE_WIDTH),
        ]
        for t in tasks[:REPR_ROWS]
    ]
    header = ["task_id", "state", "type", "retries", "note"]
    caption = f"{title}: {counts}" if counts else title
    return _html_table(caption, header, rows, max(0, len(tasks) - REPR_ROWS))


class Tasks(list[Task]):
    """The tasks ``wait([...])`` returns, in the order asked: a plain ``list`` of
    :class:`Task` that prints compactly (a line per task, at most :data:`REPR_ROWS`) and has
    ``to_pandas()``."""

    def to_pandas(self) -> pd.DataFrame:
        """One row per task."""
        return tasks_frame(list(self))

    def __repr__(self) -> str:
        return tasks_text(f"{len(self)} task(s)", list(self))

    def _repr_html_(self) -> str:
        return tasks_html(f"{len(self)} task(s)", list(self))


class TaskList(_Model):
    """One page of tasks (or the DLQ): iterable, sized, ``to_pandas()``."""

    tasks: list[Task] = Field(default_factory=list)
    page: int = 1
    page_size: int = 0
    total_items: int = 0
    total_pages: int = 0
    scan_limited: bool = False

    def __iter__(self) -> Iterator[Task]:  # type: ignore[override]
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    def to_pandas(self) -> pd.DataFrame:
        """One row per task."""
        return tasks_frame(self.tasks)

    def __repr__(self) -> str:
        title = f"{len(self.tasks)} of {self.total_items} task(s), page {self.page}"
        return tasks_text(title, self.tasks)

    def _repr_html_(self) -> str:
        frame = self.to_pandas()
        caption = f"{len(self.tasks)} of {self.total_items} task(s), page {self.page}"
        return f"<div><b>{html.escape(caption)}</b>{frame.to_html(index=False)}</div>"


class BatchItem(_Model):
    """The outcome of one item of ``submit_many``, by its position."""

    index: int
    ok: bool
    task_id: str | None = None
    state: TaskState | None = None
    created: bool | None = None
    error: str | None = None


class BatchSubmitResult(_Model):
    """The outcome of ``submit_many``: accepted items became tasks, refused ones say why."""

    accepted: int = 0
    failed: int = 0
    created: int = 0
    items: list[BatchItem] = Field(default_factory=list)
    detail: str | None = None

    @property
    def tasks(self) -> list[Task]:
        """The accepted items as (submit-answer) tasks, in request order."""
        return [
            Task(task_id=i.task_id, state=i.state or TaskState.PENDING, created=i.created)
            for i in self.items
            if i.ok and i.task_id is not None
        ]

    @property
    def errors(self) -> list[BatchItem]:
        """The refused items."""
        return [i for i in self.items if not i.ok]

    def __len__(self) -> int:
        return len(self.items)

    def to_pandas(self) -> pd.DataFrame:
        """One row per item: index, ok, task_id, state, created, error."""
        rows = [i.model_dump(mode="json") for i in self.items]
        return _frame(rows, ["index", "ok", "task_id", "state", "created", "error"])


class QueueDepths(_Model):
    """Queue depths; ``primary`` sums the priorities (split in ``primary_by_priority``)."""

    primary: int = 0
    retry: int = 0
    scheduled: int = 0
    dlq: int = 0
    active: int = 0
    primary_by_priority: dict[str, int] = Field(default_factory=dict)


class QueueStatus(_Model):
    """Queue depths, tasks per state and the retry share (``GET /api/v1/queues/status``)."""

    queues: QueueDepths = Field(default_factory=QueueDepths)
    states: dict[str, int] = Field(default_factory=dict)
    retry_ratio: float = 0.0

    def count(self, state: TaskState | str) -> int:
        """Tasks currently in ``state``."""
        return int(self.states.get(str(state), 0))

    def to_pandas(self) -> pd.DataFrame:
        """Rows ``(kind, name, count)``: one per queue, then one per state."""
        depths = self.queues
        rows: list[dict[str, Any]] = [
            {"kind": "queue", "name": name, "count": getattr(depths, name)}
            for name in ("primary", "retry", "scheduled", "dlq", "active")
        ]
        rows += [{"kind": "state", "name": str(s), "count": self.count(s)} for s in TaskState]
        return _frame(rows)

    def _depths(self) -> list[tuple[str, str]]:
        """``(queue, depth)`` pairs; the primary depth split by priority when it has tasks."""
        depths = self.queues
        split = ", ".join(f"{k} {v}" for k, v in depths.primary_by_priority.items() if v)
        primary = f"{depths.primary} ({split})" if split else str(depths.primary)
        pairs = [("primary", primary)]
        pairs += [(n, str(getattr(depths, n))) for n in ("retry", "scheduled", "dlq", "active")]
        return pairs

    def _states(self) -> list[tuple[str, int]]:
        """``(state, count)`` for every state that has tasks, in lifecycle order."""
        return [(s.value, self.count(s)) for s in TaskState if self.count(s)]

    def __repr__(self) -> str:
        queues = ", ".join(f"{name} {depth}" for name, depth in self._depths())
        states = ", ".join(f"{k}={v}" for k, v in self._states()) or "none"
        return (
            f"QueueStatus\n  queues: {queues}\n  tasks:  {states}\n"
            f"  retry ratio: {self.retry_ratio:.1%}"
        )

    def _repr_html_(self) -> str:
        rows = [["queue", name, depth] for name, depth in self._depths()]
        rows += [["state", name, str(count)] for name, count in self._states()]
        caption = f"Queues (retry ratio {self.retry_ratio:.1%})"
        return _html_table(caption, ["kind", "name", "count"], rows, 0)


class RequeueReport(_Model):
    """What ``POST /api/v1/tasks/requeue-orphaned`` repaired; a healthy system reports none."""

    found: int = 0
    requeued: int = 0
    errors: list[str] = Field(default_factory=list)
    task_ids: list[str] = Field(default_factory=list)
    message: str = ""


class BreakerView(_Model):
    """A circuit breaker as one worker reports it (``state``: closed, half-open, open)."""

    state: str = "closed"
    fail_count: int = 0
    success_count: int = 0
    note: str | None = None


class Worker(_Model):
    """One worker, from its heartbeat."""

    worker_id: str
    worker_name: str | None = None
    status: str = "unknown"
    circuit_breaker: BreakerView = Field(default_factory=BreakerView)
    last_heartbeat: datetime | None = None
    heartbeat_age: float | None = None
    active: int = 0
    completed: int = 0
    failed: int = 0
    concurrency: int = 0
    host: str | None = None
    pid: int | None = None
    started: datetime | None = None
    active_tasks: list[Any] = Field(default_factory=list)

    @field_validator("last_heartbeat", "started", mode="before")
    @classmethod
    def _epochs(cls, value: Any) -> Any:
        return _epoch_or_iso(value)

    @property
    def label(self) -> str:
        """The worker's name (its id when it has none)."""
        return self.worker_name or self.worker_id

    @property
    def heartbeat(self) -> str:
        """How long ago its last heartbeat was, e.g. ``2.1s ago`` (``?`` when unknown)."""
        if self.heartbeat_age is None:
            return "?"
        age = self.heartbeat_age
        return f"{age:.1f}s ago" if age < 10 else f"{age:.0f}s ago"

    def line(self) -> str:
        """The worker in one line of at most :data:`LINE_WIDTH` characters."""
        text = (
            f"{self.label} {self.status} active {self.active}/{self.concurrency} "
            f"done {self.completed} failed {self.failed} seen {self.heartbeat}"
        )
        return _clip(text, LINE_WIDTH)


class WorkerList(_Model):
    """Every worker seen recently (``GET /api/v1/workers/``): iterable, ``to_pandas()``."""

    overall_status: str = "unknown"
    total_workers: int = 0
    healthy_workers: int = 0
    stale_workers: int = 0
    circuit_breaker_states: dict[str, int] = Field(default_factory=dict)
    circuit_breaker: dict[str, Any] | None = None
    workers: list[Worker] = Field(default_factory=list, alias="worker_details")
    timestamp: datetime | None = None
    error: str | None = None

    def __iter__(self) -> Iterator[Worker]:  # type: ignore[override]
        return iter(self.workers)

    def __len__(self) -> int:
        return len(self.workers)

    def to_pandas(self) -> pd.DataFrame:
        """One row per worker."""
        cols = ["worker_id", "worker_name", "status", "breaker", "last_heartbeat", "active"]
        cols += ["completed", "failed", "concurrency", "host", "pid"]
        rows = []
        for w in self.workers:
            row = {c: getattr(w, c, None) for c in cols if c != "breaker"}
            row["breaker"] = w.circuit_breaker.state
            rows.append(row)
        return _frame(rows, cols)

    def _title(self) -> str:
        breaker = ""
        if isinstance(self.circuit_breaker, dict) and self.circuit_breaker.get("state"):
            breaker = f", breaker {str(self.circuit_breaker['state']).lower()}"
        return (
            f"{self.total_workers} worker(s): {self.healthy_workers} healthy, "
            f"{self.stale_workers} stale ({self.overall_status}{breaker})"
        )

    def __repr__(self) -> str:
        lines = [self._title()] + [f"  {w.line()}" for w in self.workers[:REPR_ROWS]]
        if len(self.workers) > REPR_ROWS:
            lines.append(f"  … {len(self.workers) - REPR_ROWS} more")
        if self.error:
            lines.append(f"  error: {_clip(self.error, LINE_WIDTH)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        header = ["worker", "status", "active", "done", "failed", "seen"]
        rows = [
            [
                _clip(w.label, NOTE_WIDTH),
                w.status,
                f"{w.active}/{w.concurrency}",
                str(w.completed),
                str(w.failed),
                w.heartbeat,
            ]
            for w in self.workers[:REPR_ROWS]
        ]
        more = max(0, len(self.workers) - REPR_ROWS)
        return _html_table(self._title(), header, rows, more)


class BreakerStatus(_Model):
    """The shared circuit breaker of an upstream.

    ``state`` is closed, open or half-open; ``held`` is True when it was opened by hand and stays
    open until reset; ``seconds_to_half_open`` counts down while it is open.
    """

    name: str = "openrouter"
    state: str = "closed"
    failure_count: int = 0
    success_count: int = 0
    opened_at: datetime | None = None
    open_until: datetime | None = None
    seconds_to_half_open: float | None = None
    held: bool = False
    reason: str | None = None
    last_error_class: str | None = None
    opens: int = 0
    message: str | None = None
    hold: str | None = None
    """Why LLM work is on hold (key_limit, credits, budget, rate_limited), or ``None``."""
    hold_until: datetime | None = None
    """When the hold lifts by itself (``None``: when it is lifted, e.g. a raised budget)."""

    @field_validator("opened_at", "open_until", "hold_until", mode="before")
    @classmethod
    def _epochs(cls, value: Any) -> Any:
        return _epoch_or_iso(value)

    @field_validator("state", mode="before")
    @classmethod
    def _public_state(cls, value: Any) -> Any:
        return str(value).lower().replace("_", "-") if value is not None else "closed"

    @property
    def is_open(self) -> bool:
        """True while the breaker stops LLM work (open or half-open)."""
        return self.state != "closed"


class Hold(_Model):
    """A condition that only time or money fixes: LLM claims stop, nothing is dead-lettered.

    ``reason`` is key_limit, credits, budget or rate_limited; ``until`` is when it lifts by
    itself (``None``: when someone lifts it, e.g. by raising the budget); ``seconds_left``
    counts down to ``until`` as the server saw it.
    """

    reason: str
    since: datetime | None = None
    until: datetime | None = None
    seconds_left: float | None = None
    message: str | None = None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _epochs(cls, value: Any) -> Any:
        return _epoch_or_iso(value)

    def __str__(self) -> str:
        text = f"on hold: {self.reason}"
        if self.seconds_left is not None:
            text += f" ({self.seconds_left:.0f} s left)"
        return text + (f" - {self.message}" if self.message else "")


class Budget(_Model):
    """The daily spending cap on LLM calls (``GET/PUT /api/v1/openrouter/budget``).

    ``daily_usd`` is the cap (``None``: no cap), ``spent_today_usd`` what today's calls cost
    (UTC day), ``remaining_usd`` what is left under the cap, ``held`` whether the cap holds LLM
    work now.
    """

    daily_usd: float | None = None
    spent_today_usd: float = 0.0
    remaining_usd: float | None = None
    held: bool = False

    def __str__(self) -> str:
        cap = "no budget" if self.daily_usd is None else f"${self.daily_usd:,.2f} budget"
        return f"${self.spent_today_usd:,.2f} today / {cap}" + (" (held)" if self.held else "")


class OpenRouterStatus(_Model):
    """The upstream key's state (``status``: active, api_key_missing, api_key_invalid,
    credits_exhausted, rate_limited or error), with usage and breaker information.

    ``hold`` is set while LLM work is on hold (see :class:`Hold`); ``budget`` is the daily cap
    and today's spend (see :class:`Budget`; ``held`` is not part of it here: read ``hold``).
    """

    status: str = "unknown"
    message: str | None = None
    balance: float | None = None
    usage_today: float | None = None
    usage_month: float | None = None
    last_check: str | None = None
    error_details: Any = None
    consecutive_failures: int | None = None
    circuit_breaker_open: bool | None = None
    cache_hit: bool | None = None
    hold: Hold | None = None
    budget: Budget | None = None


class Metrics(_Model):
    """Daily upstream call metrics (``metrics`` keyed by ``YYYY-MM-DD``)."""

    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    days: int = 0
    generated_at: str | None = None

    def to_pandas(self) -> pd.DataFrame:
        """One row per day (a ``date`` column, then the counters), oldest first."""
        rows = [{"date": day, **values} for day, values in sorted(self.metrics.items())]
        return _frame(rows, ["date", "total_calls", "successful_calls", "failed_calls"])


class Event(_Model):
    """One event of ``GET /api/v1/events``.

    ``type`` is task_created, task_state_changed, task_progress, task_cancel_requested,
    task_deleted, task_expired, breaker_state_changed (``state``/``old_state`` are then the
    breaker's, with ``breaker`` and ``reason`` as extras; no ``task_id``), or events_lost, when
    the log was trimmed past a resume point.
    Type-specific fields (``progress``, ``error_type``...) are kept as extra attributes.
    """

    id: str | None = None
    type: str = "unknown"
    task_id: str | None = None
    state: str | None = None
    old_state: str | None = None
    ts: float | None = None
    timestamp: datetime | None = None

    @property
    def extra(self) -> dict[str, Any]:
        """The fields beyond the common ones."""
        return dict(self.model_extra or {})


class Health(_Model):
    """``GET /health``: ``status`` healthy or unhealthy, per-component detail, a note."""

    status: str = "unknown"
    components: dict[str, dict[str, Any]] = Field(default_factory=dict)
    note: str | None = None
    timestamp: datetime | None = None

    @property
    def healthy(self) -> bool:
        """True when every component answers."""
        return self.status == "healthy"


# --------------------------------------------------------------------------- history

HISTORY_COLUMNS = [
    "task_id",
    "task_type",
    "state",
    "priority",
    "lane",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "duration_seconds",
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
    "batch",
    "idempotency_key",
    "metadata",
]
"""The columns of ``client.history()``'s DataFrame, in order."""


class HistoryTask(_Model):
    """One recorded task of ``GET /api/v1/history`` (PostgreSQL; no input, no result)."""

    task_id: str
    task_type: str | None = None
    state: str = ""
    priority: str | None = None
    lane: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    duration_seconds: float | None = None
    attempts: int = 0
    retry_count: int = 0
    max_retries: int = 0
    error_class: str | None = None
    error_message: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    batch: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The flat columns of :data:`HISTORY_COLUMNS`."""
        return {name: getattr(self, name) for name in HISTORY_COLUMNS}


class HistoryPage(_Model):
    """One page of ``GET /api/v1/history``: tasks newest first and the next page's cursor."""

    tasks: list[HistoryTask] = Field(default_factory=list)
    next_cursor: str | None = None
    limit: int = 0


def history_frame(tasks: list[HistoryTask]) -> pd.DataFrame:
    """One row per recorded task (the columns of :data:`HISTORY_COLUMNS`)."""
    return _frame([t.row() for t in tasks], HISTORY_COLUMNS)


class HistoryBucket(_Model):
    """One UTC day or hour of ``GET /api/v1/history/stats``."""

    start: datetime
    tasks: int = 0
    states: dict[str, int] = Field(default_factory=dict)
    failures: dict[str, int] = Field(default_factory=dict)
    timed: int = 0
    duration_p50_seconds: float | None = None
    duration_p95_seconds: float | None = None
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class HistoryStats(_Model):
    """``GET /api/v1/history/stats``: one :class:`HistoryBucket` per day or hour, oldest first
    (empty buckets in the range are zeros). :meth:`to_pandas` makes the tidy frame
    ``client.history_stats()`` returns."""

    bucket: str = "day"
    time_field: str = "created"
    since: datetime | None = None
    until: datetime | None = None
    buckets: list[HistoryBucket] = Field(default_factory=list)

    @property
    def error_classes(self) -> list[str]:
        """Every error class with a failure in some bucket, sorted."""
        return sorted({name for b in self.buckets for name in b.failures})

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per bucket: ``bucket`` (its start), ``tasks``, a count per state
        (every state, 0 when none), ``failures`` and ``failures_<class>`` per error class,
        ``timed``, ``duration_p50_s``, ``duration_p95_s``, ``cost_usd`` and the tokens."""
        classes = self.error_classes
        out: list[dict[str, Any]] = []
        for b in self.buckets:
            row: dict[str, Any] = {"bucket": b.start, "tasks": b.tasks}
            row.update({s.value: int(b.states.get(s.value, 0)) for s in TaskState})
            row["failures"] = sum(b.failures.values())
            row.update({f"failures_{c}": int(b.failures.get(c, 0)) for c in classes})
            row["timed"] = b.timed
            row["duration_p50_s"] = b.duration_p50_seconds
            row["duration_p95_s"] = b.duration_p95_seconds
            row["cost_usd"] = b.cost_usd
            row["prompt_tokens"] = b.prompt_tokens
            row["completion_tokens"] = b.completion_tokens
            out.append(row)
        return out

    def columns(self) -> list[str]:
        """The columns of :meth:`rows`, in order."""
        return [
            "bucket",
            "tasks",
            *(s.value for s in TaskState),
            "failures",
            *(f"failures_{c}" for c in self.error_classes),
            "timed",
            "duration_p50_s",
            "duration_p95_s",
            "cost_usd",
            "prompt_tokens",
            "completion_tokens",
        ]

    def to_pandas(self) -> pd.DataFrame:
        """The tidy frame: one row per bucket, the columns of :meth:`columns`."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=self.columns())
