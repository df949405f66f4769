"""The control panel's state: a pure reducer over events and snapshots (no I/O, no widgets).

:class:`PanelState` takes the task events of ``GET /api/v1/events`` one at a time
(:meth:`~PanelState.apply`) and the answers of the snapshot calls
(:meth:`~PanelState.apply_snapshot`: queues, workers, DLQ, health, OpenRouter status and
metrics, breaker). Each call returns :class:`Dirty` flags naming the parts of the panel that
must be redrawn; the panel ORs them together and redraws at most ``refresh_hz`` times a second,
so a burst of events costs one redraw. Events also raise :class:`Want` flags: snapshots worth
re-reading (the queue split per priority, the DLQ rows' details), which the feed fetches under
its own throttle.

Between snapshots the event stream keeps the numbers live: state counts move with every
transition, and queue depths are estimated from them (ACTIVE, SCHEDULED and DLQ exactly; a new
PENDING task counts on the primary queue at its priority, a re-queued one on the retry queue).
Every snapshot replaces the estimate with what the store says.

Inputs may be the SDK's pydantic models or plain dicts (recorded JSON): every reader here
accepts both.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from taskflow_sdk.models import TaskState
from taskflow_sdk.widgets.protocol import (
    BREAKER_STATE_CHANGED,
    EVENT_TYPES,
    EVENTS_LOST,
    FINISHED_STATES,
    HOLD_REASONS,
    PRIORITIES,
    STATES,
    TASK_CREATED,
    TASK_DELETED,
    TASK_EXPIRED,
    TASK_STATE_CHANGED,
)

__all__ = [
    "BatchInfo",
    "BreakerInfo",
    "BudgetInfo",
    "DayMetrics",
    "Depths",
    "Dirty",
    "DlqRow",
    "FeedInfo",
    "HealthInfo",
    "HoldInfo",
    "OpenRouterInfo",
    "PanelState",
    "Want",
    "WorkerRow",
    "budget_text",
    "hold_text",
]


class Dirty(enum.Flag):
    """Parts of the panel that changed and need a redraw."""

    NONE = 0
    COUNTS = enum.auto()
    """Task counts per state."""
    TIMELINE = enum.auto()
    """Queue depths (the timeline)."""
    BREAKER = enum.auto()
    """The circuit breaker lamp."""
    WORKERS = enum.auto()
    """The workers table."""
    DLQ = enum.auto()
    """The DLQ table."""
    HEALTH = enum.auto()
    """The header (server, Redis, workers online, provider)."""
    OPENROUTER = enum.auto()
    """OpenRouter service state, key usage, rate-limit utilisation."""
    METRICS = enum.auto()
    """The daily metrics chart."""
    BATCHES = enum.auto()
    """Batch progress bars."""
    FEED = enum.auto()
    """Feed status (connected, events seen) and the message line."""
    ALL = (
        COUNTS | TIMELINE | BREAKER | WORKERS | DLQ | HEALTH | OPENROUTER | METRICS | BATCHES | FEED
    )
    """Everything."""


class Want(enum.Flag):
    """Snapshots that events made worth re-reading (the feed throttles the reads)."""

    NONE = 0
    QUEUES = enum.auto()
    """``client.queues()``: depths per priority and counts."""
    WORKERS = enum.auto()
    """``client.workers()``: heartbeats and the breaker."""
    DLQ = enum.auto()
    """``client.dlq(limit)``: the rows' details."""
    HEALTH = enum.auto()
    """``client.health()``."""
    OPENROUTER = enum.auto()
    """``client.openrouter.status()``."""
    METRICS = enum.auto()
    """``client.openrouter.metrics(days)``."""
    BATCHES = enum.auto()
    """``client.statuses(ids)``: where the unfinished tasks of watched batches stand (events
    a batch missed, e.g. from before the panel watched it, cannot leave its row behind)."""
    ALL = QUEUES | WORKERS | DLQ | HEALTH | OPENROUTER | METRICS | BATCHES
    """Everything (at start and after a reconnect)."""


# --------------------------------------------------------------------------- readers


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` otherwise (pydantic extras included)."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None)
        if isinstance(extra, Mapping):
            value = extra.get(name)
    return default if value is None else value


def _has(obj: Any, name: str) -> bool:
    """Whether ``obj`` carries field ``name`` at all (even as null): a mapping's key, a
    model's declared field or extra."""
    if isinstance(obj, Mapping):
        return name in obj
    fields = getattr(type(obj), "model_fields", None) or {}
    return name in fields or name in (getattr(obj, "model_extra", None) or {})


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _epoch(value: Any) -> float | None:
    """Epoch seconds from a number, a numeric string, an ISO string or a datetime."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        number = _float(value)
        if number is not None:
            return number
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(getattr(value, "value", value))
    return text or None


_KNOWN_STATES: dict[str, str] = {s.value: s.value for s in TaskState}


def _state(value: Any) -> str | None:
    """An upper-case task state, or None for ``''``/None (a known state is the one shared
    string of :data:`~taskflow_sdk.widgets.protocol.STATES`, not a new copy per event)."""
    text = _text(value)
    if not text:
        return None
    known = _KNOWN_STATES.get(text)
    if known is None:
        upper = text.upper()
        known = _KNOWN_STATES.get(upper, upper)
    return known


# --------------------------------------------------------------------------- parts


@dataclass
class Depths:
    """Queue depths: the primary queue per priority, retry, scheduled, DLQ and active."""

    high: int = 0
    default: int = 0
    low: int = 0
    retry: int = 0
    scheduled: int = 0
    dlq: int = 0
    active: int = 0

    @property
    def primary(self) -> int:
        """The primary queue over all priorities."""
        return self.high + self.default + self.low

    def values(self) -> tuple[int, ...]:
        """The depths in :data:`~taskflow_sdk.widgets.protocol.SERIES` order."""
        return (
            self.high,
            self.default,
            self.low,
            self.retry,
            self.scheduled,
            self.dlq,
            self.active,
        )


@dataclass
class BreakerInfo:
    """The shared circuit breaker: state, counters and when it turns half-open.

    ``half_open_at`` is in this machine's epoch seconds (the server's countdown added to the
    time it was read), so a front end can count down without asking again.
    """

    state: str = "unknown"
    failure_count: int = 0
    success_count: int = 0
    half_open_at: float | None = None
    reason: str | None = None
    held: bool = False
    opens: int = 0
    last_error_class: str | None = None


@dataclass
class HoldInfo:
    """A hold on LLM work (key_limit, credits, budget, rate_limited): nothing is claimed until
    it lifts. ``until`` is in this machine's epoch seconds (``None``: until someone lifts it,
    e.g. by raising the budget); ``reason`` is ``None`` when there is no hold."""

    reason: str | None = None
    until: float | None = None
    since: float | None = None
    message: str | None = None

    @property
    def active(self) -> bool:
        """True while work is held."""
        return self.reason is not None

    def seconds_left(self, now: float) -> float | None:
        """Seconds until the hold lifts by itself (``None``: no end known, or no hold)."""
        if self.reason is None or self.until is None:
            return None
        return max(0.0, self.until - now)


@dataclass
class BudgetInfo:
    """The daily spending cap and today's spend, in USD (``daily_usd`` ``None``: no cap;
    ``spent_today_usd`` ``None``: not reported)."""

    daily_usd: float | None = None
    spent_today_usd: float | None = None
    remaining_usd: float | None = None


def _usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount == round(amount, 2) or amount >= 1 else f"${amount:,.4f}"


def budget_text(budget: BudgetInfo) -> str:
    """``$0.42 today / $5.00 budget`` (``no budget`` without a cap; ``—`` before the first
    read)."""
    spent = "—" if budget.spent_today_usd is None else _usd(budget.spent_today_usd)
    cap = "no budget" if budget.daily_usd is None else f"{_usd(budget.daily_usd)} budget"
    return f"{spent} today / {cap}"


def hold_text(hold: HoldInfo, now: float) -> str:
    """``on hold: budget · 12 min 05 s left`` (``until lifted`` without an end; ``""`` when
    there is no hold)."""
    if hold.reason is None:
        return ""
    left = hold.seconds_left(now)
    if left is None:
        when = "until lifted"
    else:
        s = round(left)
        when = f"{s} s left" if s < 60 else f"{s // 60} min {s % 60:02d} s left"
        if s >= 3600:
            when = f"{s // 3600} h {(s % 3600) // 60:02d} min left"
    return f"on hold: {hold.reason} · {when}"


@dataclass
class WorkerRow:
    """One worker of the workers table."""

    worker_id: str
    name: str
    status: str
    last_heartbeat: float | None
    heartbeat_age: float | None
    active: int
    completed: int
    failed: int
    concurrency: int


@dataclass
class DlqRow:
    """One dead-lettered task; ``loaded`` is False until the DLQ snapshot brought its details."""

    task_id: str
    task_type: str | None = None
    error_type: str | None = None
    last_error: str | None = None
    retry_count: int = 0
    max_retries: int = 0
    dlq_at: float | None = None
    loaded: bool = False


@dataclass
class HealthInfo:
    """The header: server health, Redis, workers online and the LLM provider."""

    status: str = "unknown"
    redis: str = "unknown"
    redis_latency_ms: float | None = None
    workers_total: int = 0
    workers_healthy: int = 0
    provider: str = "unknown"
    note: str | None = None


@dataclass
class OpenRouterInfo:
    """OpenRouter's service state, the key's usage and limit, and the rate limiter's load."""

    status: str = "unknown"
    message: str | None = None
    provider: str = "unknown"
    limit: float | None = None
    limit_remaining: float | None = None
    usage: float | None = None
    usage_today: float | None = None
    balance: float | None = None
    rate: str | None = None
    utilisation: float | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    cooldown_remaining: float = 0.0
    consecutive_failures: int = 0


@dataclass
class DayMetrics:
    """One UTC day of upstream call metrics."""

    day: str
    total_calls: int = 0
    successful_calls: int = 0
    failed_calls: int = 0
    failures_by_class: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


@dataclass
class BatchInfo:
    """Progress of one watched batch: the state of each of its tasks."""

    name: str
    states: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Tasks in the batch."""
        return len(self.states)

    def count(self, *states: str) -> int:
        """Tasks of the batch in any of ``states``."""
        return sum(1 for s in self.states.values() if s in states)

    @property
    def finished(self) -> int:
        """Tasks that finished (completed or given up)."""
        return self.count(*FINISHED_STATES)

    @property
    def done(self) -> bool:
        """True when every task finished."""
        return self.total > 0 and self.finished == self.total


@dataclass
class FeedInfo:
    """The live feed: connection, events seen, and the last message for the user."""

    connected: bool | None = None
    events: int = 0
    last_event_id: str | None = None
    reconnects: int = 0
    error: str | None = None
    message: str | None = None
    stopped: bool = False
    """True after ``stop()``: the panel no longer reads anything (not a connection problem)."""
    fault: str | None = None
    """An error inside the feed itself (not the server's): shown until a redraw succeeds."""


# --------------------------------------------------------------------------- the reducer


class PanelState:
    """Everything the control panel shows, updated by events and snapshots.

    Args:
        window_seconds: how much history the queue-depth timeline keeps.
        resolution: the timeline keeps at most one sample per this many seconds (a later sample
            in the same slot replaces the earlier one).
        breaker_history: how many breaker state changes to remember.
        remember: how many tasks' last states to remember, so a batch watched after its tasks
            moved still shows where they are.
    """

    def __init__(
        self,
        window_seconds: float = 300.0,
        resolution: float = 1.0,
        breaker_history: int = 50,
        remember: int = 100_000,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_seconds = float(window_seconds)
        self.resolution = max(0.0, float(resolution))
        self.counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self.depths = Depths()
        self.timeline: deque[tuple[float, tuple[int, ...]]] = deque()
        self.breaker = BreakerInfo()
        self.breaker_changes: deque[tuple[float, str]] = deque(maxlen=breaker_history)
        self.workers: list[WorkerRow] = []
        self.dlq: dict[str, DlqRow] = {}
        self.health = HealthInfo()
        self.openrouter = OpenRouterInfo()
        self.hold = HoldInfo()
        """The hold on LLM work, from the status call, the breaker and its events."""
        self.budget = BudgetInfo()
        """The daily budget and today's spend, from the status call."""
        self.metrics: list[DayMetrics] = []
        self.batches: dict[str, BatchInfo] = {}
        self.feed = FeedInfo()
        self.wants = Want.ALL
        self._batch_of: dict[str, str] = {}
        self._fence: float | None = None
        self.recent: dict[str, str] = {}
        """The last state seen in events of the most recent tasks (bounded by ``remember``)."""
        self.remember = remember

    # ----------------------------------------------------------------- events

    def apply(self, event: Any) -> Dirty:
        """Apply one event (an SDK ``Event`` or a dict of the SSE frame); returns what changed."""
        etype = _text(_get(event, "type")) or "unknown"
        task_id = _text(_get(event, "task_id"))
        new = _state(_get(event, "state"))
        old = _state(_get(event, "old_state"))
        feed = self.feed
        feed.events += 1
        event_id = _text(_get(event, "id"))
        if event_id is not None:
            feed.last_event_id = event_id
        ts = _epoch(_get(event, "ts"))
        dirty = Dirty.FEED
        if feed.connected is not True:
            feed.connected = True
            feed.error = None
        if etype == EVENTS_LOST:
            self.wants |= Want.ALL
            feed.message = "the server's event log was trimmed: counts re-read from the store"
            return dirty
        if etype == BREAKER_STATE_CHANGED:
            return dirty | self._breaker_moved(_text(_get(event, "state")), event, ts)
        if etype not in EVENT_TYPES:
            return dirty
        # A queue snapshot read after this event already counts it.
        fenced = self._fence is not None and ts is not None and ts < self._fence
        if not fenced and self._move(etype, old, new, _text(_extra(event, "priority"))):
            dirty |= Dirty.COUNTS | Dirty.TIMELINE
            self.wants |= Want.QUEUES
        if task_id is None:
            return dirty
        if etype == TASK_STATE_CHANGED and new == TaskState.DLQ:
            error_type = _text(_extra(event, "error_type"))
            self.dlq[task_id] = DlqRow(task_id=task_id, error_type=error_type)
            dirty |= Dirty.DLQ
            self.wants |= Want.DLQ
        elif old == TaskState.DLQ and self.dlq.pop(task_id, None) is not None:
            dirty |= Dirty.DLQ
        if etype == TASK_STATE_CHANGED and new in FINISHED_STATES:
            self.wants |= Want.METRICS
        if etype in (TASK_CREATED, TASK_STATE_CHANGED) and new is not None:
            self._remember(task_id, new)
        elif etype in (TASK_DELETED, TASK_EXPIRED):
            self.recent.pop(task_id, None)
        name = self._batch_of.get(task_id)
        if name is not None and etype in (TASK_CREATED, TASK_STATE_CHANGED) and new is not None:
            self.batches[name].states[task_id] = new
            dirty |= Dirty.BATCHES
        return dirty

    def _breaker_moved(self, state: str | None, event: Any, ts: float | None) -> Dirty:
        """The lamp follows a breaker event at once; the countdown and counters come with the
        next workers read, which the event asks for.

        A hold's event (``hold``, or a ``reason`` among :data:`HOLD_REASONS`) shows the hold
        at once, with its end when the event carries ``hold_until``, and asks for the status
        call (its message, the budget); a closed or half-open breaker ends the hold.
        """
        self.wants |= Want.WORKERS
        state = state.lower().replace("_", "-") if state else state
        reason = _text(_extra(event, "reason")) or None
        hold = _text(_extra(event, "hold")) or (reason if reason in HOLD_REASONS else None)
        dirty = Dirty.NONE
        if hold is not None and state not in ("closed", "half-open"):
            self.wants |= Want.OPENROUTER
            kept = self.hold if self.hold.reason == hold else HoldInfo()
            dirty |= self._set_hold(
                HoldInfo(
                    reason=hold,
                    until=_epoch(_extra(event, "hold_until")) or kept.until,
                    since=kept.since if kept.since is not None else ts,
                    message=kept.message,
                )
            )
        elif state in ("closed", "half-open") and self.hold.active:
            self.wants |= Want.OPENROUTER
            dirty |= self._set_hold(HoldInfo())
        # The event says whether an open breaker is held until reset (``open_until`` 0), so
        # the lamp need not wait for the action's answer or the next workers read to say so.
        held = self.breaker.held
        open_until = _float(_extra(event, "open_until"))
        if state == "open" and open_until is not None:
            held = open_until == 0
        elif state and state != "open":
            held = False
        if not state or (
            state == self.breaker.state
            and reason == self.breaker.reason
            and held == self.breaker.held
        ):
            return dirty
        if state != self.breaker.state:
            self.breaker_changes.append((ts if ts is not None else 0.0, state))
        self.breaker = replace(
            self.breaker, state=state, reason=reason, half_open_at=None, held=held
        )
        return dirty | Dirty.BREAKER

    def _set_hold(self, hold: HoldInfo) -> Dirty:
        """Replace the hold; the lamp shows it (:attr:`Dirty.BREAKER` when it changed)."""
        if hold == self.hold:
            return Dirty.NONE
        self.hold = hold
        return Dirty.BREAKER

    def _move(self, etype: str, old: str | None, new: str | None, priority: str | None) -> bool:
        """Apply an event's change to counts and depth estimates; True when something moved."""
        if etype == TASK_CREATED:
            state = new or TaskState.PENDING.value
            self._count(state, +1)
            self._enter_queue(state, priority=priority, requeued=False)
            return True
        if etype == TASK_STATE_CHANGED and new is not None:
            if old is not None:
                self._count(old, -1)
                self._leave_queue(old)
            self._count(new, +1)
            self._enter_queue(new, priority=None, requeued=old is not None)
            return True
        if etype in (TASK_DELETED, TASK_EXPIRED) and old is not None:
            self._count(old, -1)
            self._leave_queue(old)
            return True
        return False

    def apply_many(self, events: Iterable[Any]) -> Dirty:
        """Apply events in order; returns the union of what changed."""
        dirty = Dirty.NONE
        for event in events:
            dirty |= self.apply(event)
        return dirty

    def _remember(self, task_id: str, state: str) -> None:
        recent = self.recent
        recent.pop(task_id, None)
        recent[task_id] = state
        if len(recent) > self.remember:
            del recent[next(iter(recent))]

    def _count(self, state: str, delta: int) -> None:
        self.counts[state] = max(0, self.counts.get(state, 0) + delta)

    def _enter_queue(self, state: str, *, priority: str | None, requeued: bool) -> None:
        d = self.depths
        if state == TaskState.PENDING:
            if requeued:
                d.retry += 1
            elif priority == "high":
                d.high += 1
            elif priority == "low":
                d.low += 1
            else:
                d.default += 1
        elif state == TaskState.ACTIVE:
            d.active += 1
        elif state == TaskState.SCHEDULED:
            d.scheduled += 1
        elif state == TaskState.DLQ:
            d.dlq += 1

    def _leave_queue(self, state: str) -> None:
        d = self.depths
        if state == TaskState.PENDING:
            # Claims take the most urgent work first; the next snapshot corrects the split.
            for name in ("high", "default", "low", "retry"):
                if getattr(d, name) > 0:
                    setattr(d, name, getattr(d, name) - 1)
                    break
        elif state == TaskState.ACTIVE:
            d.active = max(0, d.active - 1)
        elif state == TaskState.SCHEDULED:
            d.scheduled = max(0, d.scheduled - 1)
        elif state == TaskState.DLQ:
            d.dlq = max(0, d.dlq - 1)

    # ----------------------------------------------------------------- timeline

    def sample(self, now: float) -> bool:
        """Record the current depths at ``now`` (epoch seconds) and drop samples older than the
        window; returns True when the timeline changed."""
        values = self.depths.values()
        changed = False
        line = self.timeline
        if line and now - line[-1][0] < self.resolution:
            if line[-1][1] != values:
                line[-1] = (line[-1][0], values)
                changed = True
        else:
            line.append((now, values))
            changed = True
        horizon = now - self.window_seconds
        while len(line) > 1 and line[0][0] < horizon:
            line.popleft()
            changed = True
        return changed

    def series(self) -> tuple[list[float], list[tuple[int, ...]]]:
        """The timeline as (times, one tuple of values per series)."""
        times = [t for t, _ in self.timeline]
        columns = list(zip(*(v for _, v in self.timeline), strict=True)) if self.timeline else []
        return times, [tuple(c) for c in columns]

    # ----------------------------------------------------------------- snapshots

    def apply_snapshot(self, kind: str, data: Any, now: float | None = None) -> Dirty:
        """Apply the answer of one snapshot call.

        ``kind`` is ``queues``, ``workers``, ``dlq``, ``health``, ``openrouter``, ``metrics`` or
        ``breaker``; ``now`` (epoch seconds) is when it was read (the breaker's countdown starts
        from it).
        """
        if kind == "queues":
            return self.apply_queues(data, now)
        if kind == "workers":
            return self.apply_workers(data, now)
        if kind == "dlq":
            return self.apply_dlq(data)
        if kind == "health":
            return self.apply_health(data)
        if kind == "openrouter":
            return self.apply_openrouter(data, now)
        if kind == "metrics":
            return self.apply_metrics(data)
        if kind == "breaker":
            return self.apply_breaker(data, now)
        if kind == "batches":
            return self.apply_batch_statuses(data)
        raise ValueError(f"unknown snapshot kind {kind!r}")

    def apply_queues(self, status: Any, read_at: float | None = None) -> Dirty:
        """``client.queues()``: depths per priority, retry, scheduled, DLQ, active, and counts.

        ``read_at`` (epoch seconds, taken just before the request was sent) fences the counts:
        events stamped earlier that arrive after the snapshot do not count a second time.
        """
        self._fence = read_at
        queues = _get(status, "queues")
        by_priority = _get(queues, "primary_by_priority") or {}
        depths = Depths(
            **{p: _int(_get(by_priority, p)) for p in PRIORITIES},
            retry=_int(_get(queues, "retry")),
            scheduled=_int(_get(queues, "scheduled")),
            dlq=_int(_get(queues, "dlq")),
            active=_int(_get(queues, "active")),
        )
        if depths.primary == 0 and _int(_get(queues, "primary")) > 0:
            depths.default = _int(_get(queues, "primary"))
        dirty = Dirty.NONE
        if depths != self.depths:
            self.depths = depths
            dirty |= Dirty.TIMELINE
        states = _get(status, "states") or {}
        counts = {s: _int(_get(states, s)) for s in STATES}
        if counts != self.counts:
            self.counts = counts
            dirty |= Dirty.COUNTS
        return dirty | self._connected()

    def apply_workers(self, status: Any, now: float | None = None) -> Dirty:
        """``client.workers()``: the workers table, and the breaker when the answer has it."""
        details = _get(status, "worker_details")
        if details is None:
            details = _get(status, "workers") or []
        rows = [
            WorkerRow(
                worker_id=str(_get(w, "worker_id", "?")),
                name=str(_get(w, "worker_name") or _get(w, "worker_id", "?")),
                status=str(_get(w, "status", "unknown")),
                last_heartbeat=_epoch(_get(w, "last_heartbeat")),
                heartbeat_age=_float(_get(w, "heartbeat_age")),
                active=_int(_get(w, "active")),
                completed=_int(_get(w, "completed")),
                failed=_int(_get(w, "failed")),
                concurrency=_int(_get(w, "concurrency")),
            )
            for w in details
        ]
        dirty = Dirty.NONE
        if rows != self.workers:
            self.workers = rows
            dirty |= Dirty.WORKERS
        healthy = sum(1 for r in rows if r.status == "healthy")
        if (self.health.workers_total, self.health.workers_healthy) != (len(rows), healthy):
            self.health.workers_total, self.health.workers_healthy = len(rows), healthy
            dirty |= Dirty.HEALTH
        breaker = _get(status, "circuit_breaker")
        if breaker is not None:
            dirty |= self.apply_breaker(breaker, now)
        return dirty | self._connected()

    def apply_breaker(self, status: Any, now: float | None = None) -> Dirty:
        """A breaker status (``client.breaker.status()`` or the ``breaker`` of an action)."""
        if _get(status, "state") is None and _get(status, "breaker") is not None:
            status = _get(status, "breaker")
        state = (_text(_get(status, "state")) or "unknown").lower().replace("_", "-")
        to_half_open = _float(_get(status, "seconds_to_half_open"))
        half_open_at = None
        if state == "open" and to_half_open is not None and now is not None:
            half_open_at = now + to_half_open
        info = BreakerInfo(
            state=state,
            failure_count=_int(_get(status, "failure_count", _get(status, "fail_count"))),
            success_count=_int(_get(status, "success_count")),
            half_open_at=half_open_at,
            reason=_text(_get(status, "reason")),
            held=bool(_get(status, "held", False)),
            opens=_int(_get(status, "opens")),
            last_error_class=_text(_get(status, "last_error_class")),
        )
        dirty = self._hold_from_breaker(status)
        if info == self.breaker:
            return dirty
        if info.state != self.breaker.state:
            self.breaker_changes.append((now if now is not None else 0.0, info.state))
        self.breaker = info
        return dirty | Dirty.BREAKER

    def _hold_from_breaker(self, status: Any) -> Dirty:
        """The breaker's ``hold`` (a reason or null) and ``hold_until`` (epoch s); a status
        without the ``hold`` field (an older server) leaves the hold as it is."""
        if not _has(status, "hold"):
            return Dirty.NONE
        reason = _text(_get(status, "hold"))
        if reason is None:
            return self._set_hold(HoldInfo())
        kept = self.hold if self.hold.reason == reason else HoldInfo()
        return self._set_hold(
            HoldInfo(
                reason=reason,
                until=_epoch(_get(status, "hold_until")),
                since=kept.since,
                message=kept.message,
            )
        )

    def apply_dlq(self, tasks: Any) -> Dirty:
        """``client.dlq(limit)``: the dead-lettered tasks with their details (replaces the rows)."""
        items = _get(tasks, "tasks") if not isinstance(tasks, list | tuple) else tasks
        rows: dict[str, DlqRow] = {}
        for t in items or []:
            task_id = _text(_get(t, "task_id"))
            if task_id is None:
                continue
            rows[task_id] = DlqRow(
                task_id=task_id,
                task_type=_text(_get(t, "task_type")),
                error_type=_text(_get(t, "error_type")),
                last_error=_text(_get(t, "last_error")),
                retry_count=_int(_get(t, "retry_count")),
                max_retries=_int(_get(t, "max_retries")),
                dlq_at=_epoch(_get(t, "dlq_at")),
                loaded=True,
            )
        if rows == self.dlq:
            return self._connected()
        self.dlq = rows
        return Dirty.DLQ | self._connected()

    def apply_health(self, health: Any) -> Dirty:
        """``client.health()``: server status, Redis and its latency, workers."""
        components = _get(health, "components") or {}
        redis = _get(components, "redis") or {}
        workers = _get(components, "workers") or {}
        info = HealthInfo(
            status=_text(_get(health, "status")) or "unknown",
            redis=_text(_get(redis, "status")) or "unknown",
            redis_latency_ms=_float(_get(redis, "latency_ms")),
            workers_total=_int(_get(workers, "total"), self.health.workers_total),
            workers_healthy=_int(_get(workers, "healthy"), self.health.workers_healthy),
            provider=self.health.provider,
            note=_text(_get(health, "note")),
        )
        if info.provider == "unknown" and info.note and "offline" in info.note:
            info.provider = "offline"
        if info == self.health:
            return self._connected()
        self.health = info
        return Dirty.HEALTH | self._connected()

    def apply_openrouter(self, status: Any, now: float | None = None) -> Dirty:
        """``client.openrouter.status()``: service state, key usage, the limiter (and breaker)."""
        limiter = _get(status, "limiter") or {}
        provider = _text(_get(status, "provider"))
        state = _text(_get(status, "status")) or "unknown"
        if provider is None:
            provider = "offline" if state == "api_key_missing" else "openrouter"
        utilisation = _float(_get(limiter, "utilisation"))
        info = OpenRouterInfo(
            status=state,
            message=_text(_get(status, "message")),
            provider=provider,
            limit=_float(_get(status, "limit")),
            limit_remaining=_float(_get(status, "limit_remaining")),
            usage=_float(_get(status, "usage")),
            usage_today=_float(_get(status, "usage_today")),
            balance=_float(_get(status, "balance")),
            rate=_text(_get(limiter, "rate")) or _rate_text(_get(status, "rate_limit")),
            utilisation=utilisation,
            in_flight=_int(_get(limiter, "in_flight")),
            max_in_flight=_int(_get(limiter, "max_in_flight")),
            cooldown_remaining=_float(_get(limiter, "cooldown_remaining")) or 0.0,
            consecutive_failures=_int(_get(status, "consecutive_failures")),
        )
        dirty = Dirty.NONE
        if info != self.openrouter:
            self.openrouter = info
            dirty |= Dirty.OPENROUTER
        dirty |= self._hold_and_budget(status, now)
        if self.health.provider != provider:
            self.health.provider = provider
            dirty |= Dirty.HEALTH
        breaker = _get(status, "breaker")
        if breaker is not None:
            dirty |= self.apply_breaker(breaker, now)
        return dirty | self._connected()

    def _hold_and_budget(self, status: Any, now: float | None) -> Dirty:
        """The status call's ``hold`` (null or ``{reason, since, until, seconds_left,
        message}``) and ``budget`` (``{daily_usd, spent_today_usd, remaining_usd}``). The hold's
        end is the server's countdown added to ``now`` when both are known (no clock skew),
        else its ``until``. A status without these fields leaves them as they are."""
        dirty = Dirty.NONE
        if _has(status, "hold"):
            raw = _get(status, "hold")
            reason = _text(_get(raw, "reason"))
            if raw is None or reason is None:
                dirty |= self._set_hold(HoldInfo())
            else:
                left = _float(_get(raw, "seconds_left"))
                until = now + left if left is not None and now is not None else None
                if until is None:
                    until = _epoch(_get(raw, "until"))
                dirty |= self._set_hold(
                    HoldInfo(
                        reason=reason,
                        until=until,
                        since=_epoch(_get(raw, "since")),
                        message=_text(_get(raw, "message")),
                    )
                )
        raw_budget = _get(status, "budget")
        if raw_budget is not None:
            budget = BudgetInfo(
                daily_usd=_float(_get(raw_budget, "daily_usd")),
                spent_today_usd=_float(_get(raw_budget, "spent_today_usd")),
                remaining_usd=_float(_get(raw_budget, "remaining_usd")),
            )
            if budget != self.budget:
                self.budget = budget
                dirty |= Dirty.OPENROUTER
        return dirty

    def apply_metrics(self, metrics: Any) -> Dirty:
        """``client.openrouter.metrics(days)``: one :class:`DayMetrics` per day, oldest first."""
        days = _get(metrics, "metrics") or {}
        rows = [
            DayMetrics(
                day=str(day),
                total_calls=_int(_get(v, "total_calls")),
                successful_calls=_int(_get(v, "successful_calls")),
                failed_calls=_int(_get(v, "failed_calls")),
                failures_by_class={
                    str(k): _int(n) for k, n in dict(_get(v, "failures_by_class") or {}).items()
                },
                prompt_tokens=_int(_get(v, "prompt_tokens")),
                completion_tokens=_int(_get(v, "completion_tokens")),
                cost=_float(_get(v, "cost")) or 0.0,
            )
            for day, v in sorted(dict(days).items())
        ]
        if rows == self.metrics:
            return self._connected()
        self.metrics = rows
        return Dirty.METRICS | self._connected()

    # ----------------------------------------------------------------- batches

    def watch_batch(
        self, name: str, task_ids: Iterable[str], states: Mapping[str, str] | None = None
    ) -> Dirty:
        """Follow the tasks of batch ``name``: a task's state is the last one events showed,
        else the one ``states`` gives, else PENDING."""
        info = self.batches.setdefault(name, BatchInfo(name))
        known = states or {}
        for task_id in task_ids:
            info.states[task_id] = (
                self.recent.get(task_id)
                or _state(known.get(task_id))
                or info.states.get(task_id, TaskState.PENDING.value)
            )
            self._batch_of[task_id] = name
        return Dirty.BATCHES

    def unfinished_batch_tasks(self, limit: int = 1000) -> list[str]:
        """Ids of watched batches' tasks that have not finished (at most ``limit``)."""
        out: list[str] = []
        for info in self.batches.values():
            for task_id, state in info.states.items():
                if state not in FINISHED_STATES:
                    out.append(task_id)
                    if len(out) >= limit:
                        return out
        return out

    def apply_batch_statuses(self, statuses: Any) -> Dirty:
        """``client.statuses(ids)`` for watched tasks: where each stands. A status read before
        an event that finished the task arrives after it: it never takes a finished task back."""
        dirty = Dirty.NONE
        for status in statuses or []:
            task_id = _text(_get(status, "task_id"))
            state = _state(_get(status, "state"))
            name = self._batch_of.get(task_id or "")
            if task_id is None or state is None or name is None:
                continue
            states = self.batches[name].states
            if states.get(task_id) in FINISHED_STATES or states.get(task_id) == state:
                continue
            states[task_id] = state
            dirty |= Dirty.BATCHES
        return dirty | self._connected()

    def rename_batch(self, old: str, new: str) -> Dirty:
        """Show batch ``old`` under the label ``new`` (its tasks keep following it)."""
        if old == new or old not in self.batches:
            return Dirty.NONE
        info = self.batches.pop(old)
        info.name = new
        merged = self.batches.setdefault(new, BatchInfo(new))
        merged.states.update(info.states)
        for task_id in info.states:
            self._batch_of[task_id] = new
        return Dirty.BATCHES

    # ----------------------------------------------------------------- feed

    def set_connected(self, connected: bool, error: str | None = None) -> Dirty:
        """Record whether the feed reaches the server (``error`` says why not)."""
        feed = self.feed
        if feed.connected == connected and feed.error == error:
            return Dirty.NONE
        if connected and feed.connected is False:
            feed.reconnects += 1
            self.wants |= Want.ALL  # events may have been missed (or the server restarted)
        feed.connected = connected
        feed.error = error
        return Dirty.FEED

    def set_stopped(self, stopped: bool) -> Dirty:
        """The feed was stopped (True) or started again (False: connecting, message cleared)."""
        feed = self.feed
        if feed.stopped == stopped:
            return Dirty.NONE
        feed.stopped = stopped
        feed.fault = None
        if stopped:
            feed.connected = False
            feed.error = None
        else:
            feed.connected = None
            feed.message = None
            self.wants |= Want.ALL
        return Dirty.FEED | Dirty.HEALTH

    def set_fault(self, fault: str | None) -> Dirty:
        """An error inside the feed (``None``: it works again)."""
        if fault == self.feed.fault:
            return Dirty.NONE
        self.feed.fault = fault
        return Dirty.FEED

    def mark_unreachable(self, error: str) -> Dirty:
        """The server did not answer: nothing it said before about Redis or its workers is
        known any more, so the header and the workers table stop claiming it."""
        dirty = self.set_connected(False, error)
        health = HealthInfo(status="down", provider=self.health.provider)
        if health != self.health:
            self.health = health
            dirty |= Dirty.HEALTH
        if any(w.status != "unknown" for w in self.workers):
            for w in self.workers:
                w.status = "unknown"
                w.heartbeat_age = None
            dirty |= Dirty.WORKERS
        return dirty

    def set_message(self, message: str | None) -> Dirty:
        """The line shown under the header (action results, errors)."""
        if message == self.feed.message:
            return Dirty.NONE
        self.feed.message = message
        return Dirty.FEED

    def _connected(self) -> Dirty:
        return self.set_connected(True, None)

    def claim(self, want: Want) -> bool:
        """True if ``want`` was wanted; clears it (the caller is about to read that snapshot,
        and events after this point will want it again)."""
        if not self.wants & want:
            return False
        self.wants &= ~want
        return True


def _extra(event: Any, name: str) -> Any:
    value = _get(event, name)
    if value is None:
        extra = getattr(event, "extra", None)
        if isinstance(extra, Mapping):
            value = extra.get(name)
        data = _get(event, "data")
        if value is None and isinstance(data, Mapping):
            value = data.get(name)
    return value


def _rate_text(rate: Any) -> str | None:
    if rate is None:
        return None
    if isinstance(rate, str):
        return rate
    requests, interval = _get(rate, "requests"), _get(rate, "interval")
    if requests is None:
        return None
    return f"{requests}/{interval}"
