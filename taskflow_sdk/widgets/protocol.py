"""Names shared by the panel's Python side, its JavaScript side and the server's event stream.

Nothing here imports a widget library, so the pure state (:mod:`.state`) and the tests use it
without a kernel. The front-end message names travel to JavaScript as one synced trait
(``_messages`` on every AnyWidget of the panel), so the ESM files never spell them out.
"""

from __future__ import annotations

from typing import Final

from taskflow_sdk.models import TaskState

# --------------------------------------------------------------------------- server events

TASK_CREATED: Final = "task_created"
"""A task was submitted (state PENDING)."""
TASK_STATE_CHANGED: Final = "task_state_changed"
"""A task moved from ``old_state`` to ``state``."""
TASK_PROGRESS: Final = "task_progress"
"""A running task reported progress (no state change)."""
TASK_DELETED: Final = "task_deleted"
"""A task was deleted; ``old_state`` is the state it had."""
TASK_EXPIRED: Final = "task_expired"
"""A finished task reached its time to live; ``old_state`` is the state it had."""
TASK_CANCEL_REQUESTED: Final = "task_cancel_requested"
"""A cancel was asked for a running task (no state change yet)."""
BREAKER_STATE_CHANGED: Final = "breaker_state_changed"
"""The circuit breaker moved from ``old_state`` to ``state`` (closed, open, half-open)."""
EVENTS_LOST: Final = "events_lost"
"""The server's event log was trimmed past the resume point: counts must be re-read."""

EVENT_TYPES: Final = (
    TASK_CREATED,
    TASK_STATE_CHANGED,
    TASK_PROGRESS,
    TASK_DELETED,
    TASK_EXPIRED,
    TASK_CANCEL_REQUESTED,
)
"""Every task event type of ``GET /api/v1/events``."""

# --------------------------------------------------------------------------- task states

STATES: Final[tuple[str, ...]] = tuple(s.value for s in TaskState)
"""Every task state as its wire string, in the order the panel shows them: the SDK's
:class:`~taskflow_sdk.models.TaskState`, never spelled out again here."""
FINISHED_STATES: Final[frozenset[str]] = frozenset(s.value for s in TaskState if s.is_terminal)
"""States a task leaves only through a manual retry (:attr:`TaskState.is_terminal`)."""
FAILED_STATES: Final[tuple[str, ...]] = tuple(s.value for s in TaskState if s.is_failure)
"""Finished states that are not a success (:attr:`TaskState.is_failure`), in ``STATES`` order."""

PRIORITIES: Final = ("high", "default", "low")
"""Priorities of the primary queue, most urgent first."""

SERIES: Final = (
    "primary:high",
    "primary:default",
    "primary:low",
    "retry",
    "scheduled",
    "dlq",
    "active",
)
"""The queue-depth series of the timeline, in trace order."""

HOLD_REASONS: Final = frozenset({"key_limit", "credits", "budget", "rate_limited"})
"""Reasons of a hold (LLM work stopped until time or money fixes it); a
``breaker_state_changed`` event whose ``reason`` is one of them starts a hold."""

# --------------------------------------------------------------------------- front end

MSG_BREAKER_OPEN: Final = "breaker:open"
"""Sent by the lamp's Open button."""
MSG_BREAKER_RESET: Final = "breaker:reset"
"""Sent by the lamp's Reset button."""
MSG_TABLE_ACTION: Final = "table:action"
"""Sent by a table's row or bulk button: ``{type, action, ids}``."""

MESSAGES: Final = {
    "breaker_open": MSG_BREAKER_OPEN,
    "breaker_reset": MSG_BREAKER_RESET,
    "table_action": MSG_TABLE_ACTION,
}
"""The one constant synced to JavaScript (trait ``_messages``): key -> message type."""

ACTION_RETRY: Final = "retry"
"""DLQ table action: send the task back to the retry queue."""
ACTION_DELETE: Final = "delete"
"""DLQ table action: delete the task."""
