"""The task states: the one vocabulary the whole server uses.

The store's Lua scripts write these upper-case strings into the task hash (``state``), the state
counters and the event log; the API shows them unchanged. :class:`TaskState` is a ``StrEnum``, so
a member *is* its string: ``TaskState.DLQ == "DLQ"`` and ``"DLQ" in TERMINAL_STATES`` both hold,
and a state read from Redis needs no conversion to be compared.

How a task moves (each arrow is one script, see :mod:`taskflow_server.store.queue`)::

    submit ─> PENDING ─claim─> ACTIVE ─complete─> COMPLETED
                 ▲               ├─fail(retry)─> SCHEDULED ─promote─> PENDING
                 │               ├─fail(dlq) / retries used up ─> DLQ ─retry─> PENDING
                 │               └─cancel requested ─> CANCELLED ─retry─> PENDING
                 └── requeue / lease expired ──┘

**Terminal states** (:data:`TERMINAL_STATES`) are COMPLETED, FAILED, DLQ and CANCELLED: a task in
one of them changes again only when someone retries it (every terminal state but COMPLETED) or
deletes it (by hand, or the retention sweep). The SDK
(``taskflow_sdk.models.TaskState.is_terminal``) uses the same set; a unit test keeps the two in
step.

**FAILED** marks a failed attempt in a task's ``state_history``; a task never rests there: the
script that records the failure moves the task on to SCHEDULED or DLQ in the same step, so no
counter, queue or listing ever holds a FAILED task written by this server. It is terminal anyway
because a task that did rest there (written by the v1 server or by another Redis client) would
never move by itself: only a manual retry takes it out (``retry.lua`` accepts FAILED, DLQ and
CANCELLED). Counting it terminal lets the per-task progress stream end on such a task instead of
waiting forever, and makes the server agree with the SDK.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """The state of a task, as stored in Redis and shown by the API (upper-case strings)."""

    PENDING = "PENDING"
    """Queued, waiting for a worker (a new task, a due retry, a requeued or reaped one)."""
    ACTIVE = "ACTIVE"
    """A worker holds it under a lease."""
    SCHEDULED = "SCHEDULED"
    """An attempt failed with a transient error; the task waits for its retry time."""
    COMPLETED = "COMPLETED"
    """Finished with a result."""
    FAILED = "FAILED"
    """A failed attempt, recorded in the state history; a task never rests here (terminal)."""
    DLQ = "DLQ"
    """Dead-lettered: a permanent error or no retries left; a manual retry sends it back."""
    CANCELLED = "CANCELLED"
    """Cancelled before it finished; a manual retry sends it back."""


STATES: tuple[TaskState, ...] = tuple(TaskState)
"""Every task state, in lifecycle order (the order counters and charts list them in)."""

TERMINAL_STATES: frozenset[TaskState] = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.DLQ, TaskState.CANCELLED}
)
"""States a task leaves only by a manual retry or a delete (see the module docstring)."""
