"""``wait()``: what is known about the tasks waited for, and the flows that learn the rest.

Waiting is slim: each polling round asks ``POST /api/v1/tasks/states`` where the unfinished
tasks stand (state, progress, retry count: no input text, no result), and a task's full detail
(``POST /api/v1/tasks/lookup``) is fetched once, when it has finished. So a round over 5,000
tasks costs a few hundred kilobytes instead of every task's input and result, and the result of
``wait()`` is still the full :class:`~taskflow_sdk.Task` of each.

Two flows share :class:`WaitState` and :func:`refresh_flow`:

* :func:`wait_flow` polls every unfinished task each round, starting fast and slowing down;
* :func:`stream_wait_flow` follows the event stream (its :class:`~taskflow_sdk._flows.NextEvent`
  actions) and reads only the tasks the events name, polling everything again after
  :data:`STREAM_REPOLL_SECONDS` without news.

A server without the states route (an older one) is polled with the full lookup instead.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from taskflow_sdk._flows import Flow, Gather, NextEvent, Sleep
from taskflow_sdk._params import task_id_of
from taskflow_sdk._requests import LOOKUP_MAX, STATES_MAX, Requests
from taskflow_sdk.errors import TaskFailed, TaskTimeout
from taskflow_sdk.models import Event, Task, TaskState, TaskStatus

__all__ = [
    "FIRST_POLL_INTERVAL",
    "STREAM_CONNECT_SECONDS",
    "STREAM_REPOLL_SECONDS",
    "TERMINAL_EVENT_TYPES",
    "WaitState",
    "detail_flow",
    "refresh_flow",
    "stream_wait_flow",
    "wait_flow",
    "wait_ids",
]

FIRST_POLL_INTERVAL = 0.02
"""The first pause between two polls of ``wait()`` (each next one is half as long again)."""
STREAM_REPOLL_SECONDS = 5.0
"""In ``wait(stream=True)``, unfinished tasks are polled again after this long without news."""
STREAM_CONNECT_SECONDS = 5.0
"""How long ``wait(stream=True)`` waits for the stream to connect before its first poll."""
TERMINAL_EVENT_TYPES = ("task_state_changed", "task_deleted", "task_expired")
"""The event types ``wait(stream=True)`` listens to."""


def _chunks(ids: Sequence[str], size: int) -> list[Sequence[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def wait_ids(tasks: Task | str | Sequence[Task | str]) -> tuple[list[str], bool]:
    """The ids ``wait()`` was given, and whether it was given one task (not a list)."""
    if isinstance(tasks, Task | str):
        return [task_id_of(tasks)], True
    return [task_id_of(t) for t in tasks], False


class WaitState:
    """What ``wait()`` knows: each task's latest status, the full detail of those finished,
    which are unfinished, the deadline. It is also the progress bar's source.

    Shared by the polling and the streaming waits, and by batches.
    """

    def __init__(
        self,
        task_ids: Sequence[str],
        timeout: float | None,
        raise_on_failure: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.order = list(dict.fromkeys(task_ids))
        self.timeout = timeout
        self.raise_on_failure = raise_on_failure
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.statuses: dict[str, TaskStatus] = {}
        """The latest status of each task seen."""
        self.finished_tasks: dict[str, Task] = {}
        """The full detail of each finished task."""
        self._pending = set(self.order)

    @property
    def pending(self) -> list[str]:
        """Ids not yet seen finished, in the caller's order."""
        return [i for i in self.order if i in self._pending]

    def is_pending(self, task_id: str | None) -> bool:
        """Whether ``task_id`` is one of the unfinished tasks."""
        return task_id in self._pending

    @property
    def finished(self) -> bool:
        """True when every task has finished."""
        return not self._pending

    def observe(self, status: TaskStatus) -> bool:
        """Record a task's status; True when it says an unfinished task has finished (its full
        detail is then due: :meth:`update`)."""
        if status.task_id not in self._pending:
            return False
        self.statuses[status.task_id] = status
        return status.is_terminal

    def update(self, task: Task) -> None:
        """Record a task's full detail (or an action's answer); raises :class:`TaskFailed`
        when it ended in failure and the wait was asked to."""
        self.statuses[task.task_id] = TaskStatus.of(task)
        if task.is_terminal:
            self.finished_tasks[task.task_id] = task
            self._pending.discard(task.task_id)
            if self.raise_on_failure and task.state.is_failure:
                raise TaskFailed(task)

    def latest(self, task: Task) -> Task:
        """``task`` as last seen: its full detail once finished, else ``task`` with its latest
        status applied."""
        full = self.finished_tasks.get(task.task_id)
        if full is not None:
            return full
        status = self.statuses.get(task.task_id)
        return task if status is None else status.applied_to(task)

    def counts(self) -> dict[str, int]:
        """Tasks per state, as last seen (``UNKNOWN`` before the first answer)."""
        seen = (str(s.state) if (s := self.statuses.get(i)) else "UNKNOWN" for i in self.order)
        return dict(Counter(seen))

    def done(self) -> int:
        """Tasks seen finished."""
        return len(self.order) - len(self._pending)

    def cost(self) -> float:
        """USD spent by the finished tasks seen so far (their ``result.usage.cost``)."""
        return sum((t.cost or 0.0) for t in self.finished_tasks.values())

    def total(self) -> int:
        """Tasks waited for."""
        return len(self.order)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def clip(self, seconds: float) -> float:
        """``seconds``, shortened so as not to sleep past the deadline."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    def check_deadline(self) -> None:
        """Raise :class:`TaskTimeout` when the deadline has passed with tasks unfinished (the
        unfinished ones as their latest status: id, state, progress, retry count)."""
        if self.deadline is not None and self._pending and self.clock() >= self.deadline:
            pending = [self.latest(Task(task_id=i, state=TaskState.PENDING)) for i in self.pending]
            done = [self.finished_tasks[i] for i in self.order if i not in self._pending]
            raise TaskTimeout(self.timeout or 0.0, pending, done)

    def result(self) -> list[Task]:
        """The finished tasks in the caller's order."""
        return [self.finished_tasks[i] for i in self.order]


# --------------------------------------------------------------------------- flows


def detail_flow(requests: Requests, state: WaitState, task_ids: Sequence[str]) -> Flow[None]:
    """Fetch the full detail of ``task_ids`` (lookup requests of :data:`LOOKUP_MAX` ids, run
    together) into ``state``."""
    if not task_ids:
        return None
    results = yield Gather([requests.lookup(chunk) for chunk in _chunks(task_ids, LOOKUP_MAX)])
    for result in results:
        if isinstance(result, BaseException):
            raise result
        for task in result:
            state.update(task)
    return None


def refresh_flow(requests: Requests, state: WaitState, task_ids: Sequence[str]) -> Flow[None]:
    """One look at ``task_ids``: their statuses (states requests of :data:`STATES_MAX` ids, run
    together), then the full detail of those that have finished, once each.

    An id the server does not know is fetched alone, which raises
    :class:`~taskflow_sdk.NotFoundError`. Without the states route, the full detail of every
    id is fetched instead.
    """
    if not task_ids:
        return None
    if not requests.has_states_route:
        return (yield from detail_flow(requests, state, task_ids))
    answers = yield Gather([requests.states(chunk) for chunk in _chunks(task_ids, STATES_MAX)])
    finished: list[str] = []
    missing: list[str] = []
    unanswered: list[str] = []
    for chunk, answer in zip(_chunks(task_ids, STATES_MAX), answers, strict=True):
        if isinstance(answer, BaseException):
            raise answer
        if answer is None:  # no states route on this server
            unanswered.extend(chunk)
            continue
        statuses, gone = answer
        finished += [s.task_id for s in statuses if state.observe(s)]
        missing += gone
    for task_id in missing:
        state.update((yield from requests.get(task_id)))
    yield from detail_flow(requests, state, finished + unanswered)
    return None


def wait_flow(
    requests: Requests,
    state: WaitState,
    *,
    poll_interval: float,
    on_progress: Callable[[], None] | None = None,
    after_round: Callable[[], Flow[None]] | None = None,
) -> Flow[list[Task]]:
    """Poll the unfinished tasks of ``state`` (all of them per round, see
    :func:`refresh_flow`) until every one has finished; returns them in order.

    ``on_progress`` is called after each round. ``after_round`` (optional) makes a flow that
    runs after each round's answers are in and before the progress call: a batch's budget
    check, which may cancel tasks and record the answers in ``state``.

    Polling starts at :data:`FIRST_POLL_INTERVAL` and slows down by half each round up to
    ``poll_interval``, so short tasks return quickly and long ones cost few requests.
    """
    interval = min(FIRST_POLL_INTERVAL, poll_interval)
    while True:
        yield from refresh_flow(requests, state, state.pending)
        if after_round is not None:
            yield from after_round()
        if on_progress is not None:
            on_progress()
        if state.finished:
            return state.result()
        state.check_deadline()
        yield Sleep(state.clip(interval))
        interval = min(interval * 1.5, poll_interval)


def _event_state(event: Event) -> TaskState | None:
    try:
        return TaskState(event.state) if event.state else None
    except ValueError:
        return None


def stream_wait_flow(
    requests: Requests,
    state: WaitState,
    *,
    poll_interval: float,
    on_progress: Callable[[], None] | None = None,
) -> Flow[list[Task]]:
    """Wait for the tasks of ``state`` by following events (:class:`NextEvent`, of the
    :data:`TERMINAL_EVENT_TYPES`): all tasks are looked at once, then only the one an event
    names; after ``max(STREAM_REPOLL_SECONDS, poll_interval)`` without news, all unfinished
    ones again.

    An event that says a task finished fetches its full detail directly; one that says it
    moved to an unfinished state is recorded with no request; any other (deletion, expiry)
    looks the task up, which raises :class:`~taskflow_sdk.NotFoundError` for a deleted task.
    """
    repoll = max(STREAM_REPOLL_SECONDS, poll_interval)
    fresh = state.pending
    while True:
        if fresh:
            yield from refresh_flow(requests, state, fresh)
            if on_progress is not None:
                on_progress()
        if state.finished:
            return state.result()
        state.check_deadline()
        item = yield NextEvent(state.clip(repoll))
        if item is None:
            fresh = state.pending
            continue
        if isinstance(item, BaseException):
            raise item
        fresh = []
        task_id = item.task_id if isinstance(item, Event) else None
        if task_id is None or not state.is_pending(task_id):
            continue
        told = _event_state(item)
        if told is None:
            fresh = [task_id]
        elif told.is_terminal:
            yield from detail_flow(requests, state, [task_id])
        else:
            seen = state.statuses.get(task_id)
            moved = seen.model_copy(update={"state": told}) if seen else None
            state.observe(moved or TaskStatus(task_id=task_id, state=told))
        if told is not None and on_progress is not None:
            on_progress()
