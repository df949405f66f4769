"""Property test: random sequences of store operations, each checked against a reference model.

:class:`Model` spells out, without Redis, what every operation must do: the state each task
moves to (with its retry count, lost leases and cancel request), which tasks a claim takes and in
which order, or that the store must refuse the operation and with which error. After every step
the store must agree with the model task by task, counter by counter and queue by queue, and the
full-scan audit must pass (hypothesis state machine, real Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from support import make_settings
from taskflow_server.states import STATES, TaskState
from taskflow_server.store.audit import audit
from taskflow_server.store.keys import LANES, PRIORITIES, Keys
from taskflow_server.store.queue import InvalidTransitionError, TaskNotFoundError, TaskQueue
from taskflow_server.store.records import NewTask, new_task_id

T = TypeVar("T")

MAX_LOST_LEASES = 2
"""A task that lost this many leases is poison: the reaper dead-letters it."""
SETTINGS = make_settings(max_lost_leases=MAX_LOST_LEASES)
RETRY_EVERY = 0 if SETTINGS.retry_share <= 0 else max(1, round(1 / SETTINGS.retry_share))
"""Every this-many-th claimed task is taken from the retry queues first (``retry_share``)."""
PROMOTE_LIMIT = 100
"""How many due retries one ``promote_due()`` moves."""
NO_LEASE = "a-lease-nobody-holds"


# ----------------------------------------------------------------------------- the model


@dataclass
class Refused:
    """The store must raise ``error``; an :class:`InvalidTransitionError` names the ``state``."""

    error: type[Exception]
    state: str | None = None


@dataclass
class Task:
    """What the model knows of one task."""

    lane: str
    priority: str
    max_retries: int
    key: str | None
    state: str = TaskState.PENDING
    retry_count: int = 0
    lost_leases: int = 0
    cancel_requested: bool = False
    lease: str | None = None


class Model:
    """The store's rules, one method per operation: each returns what the store must answer
    and moves the model's tasks and queues the way the store must move its own."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.queues: dict[tuple[str, str], list[str]] = {
            (lane, queue): [] for lane in LANES for queue in (*PRIORITIES, "retry")
        }
        """(lane, priority or ``retry``) -> ids in the order they will be claimed."""
        self.scheduled: set[str] = set()
        self.keys: dict[str, str] = {}
        """Idempotency key -> the task it created (while that task exists)."""
        self.claims = 0
        """Claim steps so far over every call (``RETRY_EVERY`` counts them)."""

    # ------------------------------------------------------------------ views

    def ids(self, *states: str) -> list[str]:
        """Ids of the tasks in any of ``states``."""
        return sorted(i for i, t in self.tasks.items() if t.state in states)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for task in self.tasks.values():
            counts[task.state] += 1
        return counts

    def waiting(self, name: str) -> list[str]:
        """Queue ``primary`` or ``retry`` in claim order, as ``TaskQueue.queue_ids`` lists it."""
        names = PRIORITIES if name == "primary" else ("retry",)
        return [i for q in names for lane in LANES for i in self.queues[(lane, q)]]

    # ------------------------------------------------------------------ operations

    def _unlink(self, task_id: str) -> None:
        for queue in self.queues.values():
            if task_id in queue:
                queue.remove(task_id)
        self.scheduled.discard(task_id)

    def submit(self, new: list[NewTask]) -> list[tuple[str, str, bool]]:
        """(id, state, created) per task: a known idempotency key answers its first task."""
        out: list[tuple[str, str, bool]] = []
        for t in new:
            assert t.task_id is not None and t.max_retries is not None
            first = self.keys.get(t.idempotency_key) if t.idempotency_key else None
            if first is not None:
                out.append((first, self.tasks[first].state, False))
                continue
            self.tasks[t.task_id] = Task(t.lane, t.priority, t.max_retries, t.idempotency_key)
            if t.idempotency_key:
                self.keys[t.idempotency_key] = t.task_id
            self.queues[(t.lane, t.priority)].append(t.task_id)
            out.append((t.task_id, TaskState.PENDING, True))
        return out

    def claim(
        self, n: int, limits: dict[str, int | None], token: str
    ) -> list[tuple[str, int, int]]:
        """(id, retry_count, lost_leases) of the tasks claimed, in order: the most urgent
        priority first (lanes in ``limits`` order within one), first in first out, the retry
        queues after them, except that every ``RETRY_EVERY``-th step tries the retry queues
        first; a lane's limit (``None`` = none) caps the tasks one call takes from it."""
        left = {lane: -1 if limit is None else limit for lane, limit in limits.items()}

        def pop(queues: tuple[str, ...]) -> str | None:
            for queue in queues:
                for lane in limits:
                    if left[lane] != 0 and self.queues[(lane, queue)]:
                        return self.queues[(lane, queue)].pop(0)
            return None

        out: list[tuple[str, int, int]] = []
        step = self.claims
        while len(out) < n:
            step += 1
            if RETRY_EVERY and step % RETRY_EVERY == 0:
                task_id = pop(("retry",)) or pop(PRIORITIES)
            else:
                task_id = pop(PRIORITIES) or pop(("retry",))
            if task_id is None:
                break
            task = self.tasks[task_id]
            task.state, task.lease = TaskState.ACTIVE, token
            if left[task.lane] > 0:
                left[task.lane] -= 1
            out.append((task_id, task.retry_count, task.lost_leases))
        if out:
            self.claims = step
        return out

    def _holds(self, task_id: str, token: str) -> Task | None:
        task = self.tasks.get(task_id)
        return task if task and task.state == TaskState.ACTIVE and task.lease == token else None

    def _end_attempt(self, task: Task) -> None:
        task.lease, task.cancel_requested = None, False

    def complete(self, task_id: str, token: str) -> bool:
        """True and COMPLETED for the lease holder; False (nothing moves) for anyone else."""
        task = self._holds(task_id, token)
        if task is None:
            return False
        self._end_attempt(task)
        task.state = TaskState.COMPLETED
        return True

    def fail(self, task_id: str, token: str, mode: str) -> str:
        """The new state; ``stale:<state>`` (nothing moves) when ``token`` holds no lease."""
        task = self._holds(task_id, token)
        if task is None:
            return f"stale:{self.tasks[task_id].state}"
        self._end_attempt(task)
        if mode == "requeue":  # back to the front of its queue, no retry used
            task.state = TaskState.PENDING
            self.queues[(task.lane, task.priority)].insert(0, task_id)
        elif mode == "cancel":
            task.state = TaskState.CANCELLED
        elif mode == "retry" and task.retry_count < task.max_retries:
            task.state = TaskState.SCHEDULED
            task.retry_count += 1
            self.scheduled.add(task_id)
        else:  # dlq, or no retry left
            task.state = TaskState.DLQ
        return task.state

    def expire(self, task_id: str) -> tuple[int, int]:
        """The reaper's (requeued, dead-lettered) for one expired lease: back to the front of
        its queue, or to the DLQ as poison at ``MAX_LOST_LEASES``."""
        task = self.tasks[task_id]
        self._end_attempt(task)
        task.lost_leases += 1
        if task.lost_leases >= MAX_LOST_LEASES:
            task.state = TaskState.DLQ
            return 0, 1
        task.state = TaskState.PENDING
        self.queues[(task.lane, task.priority)].insert(0, task_id)
        return 1, 0

    def promote(self) -> int:
        """Due retries (all of them: the test makes them due at time 0, so they go in id
        order) move to the end of their lane's retry queue; returns how many."""
        due = sorted(self.scheduled)[:PROMOTE_LIMIT]
        for task_id in due:
            task = self.tasks[task_id]
            self.scheduled.remove(task_id)
            task.state = TaskState.PENDING
            self.queues[(task.lane, "retry")].append(task_id)
        return len(due)

    def cancel(self, task_id: str) -> str | Refused:
        """ACTIVE: a cancel request (the worker ends it); PENDING, SCHEDULED, DLQ: CANCELLED
        now; a finished task refuses."""
        task = self.tasks.get(task_id)
        if task is None:
            return Refused(TaskNotFoundError)
        if task.state == TaskState.ACTIVE:
            task.cancel_requested = True
            return task.state
        if task.state in (TaskState.COMPLETED, TaskState.CANCELLED):
            return Refused(InvalidTransitionError, task.state)
        self._unlink(task_id)
        task.state = TaskState.CANCELLED
        return task.state

    def retry(self, task_id: str, reset: bool) -> str | Refused:
        """DLQ, FAILED, CANCELLED: PENDING at the end of the retry queue, lost leases
        forgotten (and the retry count when ``reset``); any other state refuses."""
        task = self.tasks.get(task_id)
        if task is None:
            return Refused(TaskNotFoundError)
        if task.state not in (TaskState.DLQ, TaskState.FAILED, TaskState.CANCELLED):
            return Refused(InvalidTransitionError, task.state)
        self._unlink(task_id)
        if reset:
            task.retry_count = 0
        task.lost_leases, task.cancel_requested = 0, False
        task.state = TaskState.PENDING
        self.queues[(task.lane, "retry")].append(task_id)
        return task.state

    def delete(self, task_id: str) -> bool:
        """Any state: gone from everywhere (its idempotency key too); False when unknown."""
        task = self.tasks.pop(task_id, None)
        if task is None:
            return False
        self._unlink(task_id)
        if task.key is not None and self.keys.get(task.key) == task_id:
            del self.keys[task.key]
        return True


# ----------------------------------------------------------------------------- the machine


class StoreMachine(RuleBasedStateMachine):
    """Drives a TaskQueue and the :class:`Model` with the same random operations; the store
    must answer what the model says, and agree with it after every step."""

    url = "redis://127.0.0.1:6379/9"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.Redis.from_url(self.url)
        self.queue = TaskQueue(self.redis, Keys("tfprop"), SETTINGS)
        self.run(self.redis.flushdb())
        self.run(self.queue.load())
        self.model = Model()
        self.gone: list[str] = []
        """Ids of deleted tasks (operations on them must say the task is not found)."""
        self.seq = 0

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.redis.flushdb())
        self.run(self.redis.aclose())
        self.loop.close()

    @rule(
        n=st.integers(1, 4),
        prio=st.sampled_from(PRIORITIES),
        lane=st.sampled_from(LANES),
        key=st.none() | st.sampled_from(["a", "b"]),
        retries=st.integers(0, 2),
    )
    def submit(self, n: int, prio: str, lane: str, key: str | None, retries: int) -> None:
        new = [
            NewTask(
                "demo.noop",
                {},
                lane=lane,
                priority=prio,
                max_retries=retries,
                idempotency_key=key,
                task_id=new_task_id(),
            )
            for _ in range(n)
        ]
        expected = self.model.submit(new)
        got = self.run(self.queue.submit_many(new))
        assert [(s.task_id, s.state, s.created) for s in got] == expected

    @initialize(
        work=st.lists(
            st.tuples(st.sampled_from(LANES), st.sampled_from(PRIORITIES), st.integers(0, 2)),
            min_size=3,
            max_size=8,
        )
    )
    def some_work(self, work: list[tuple[str, str, int]]) -> None:
        """Every run starts with a few tasks, so that the steps have work to move."""
        for lane, prio, retries in work:
            self.submit(1, prio, lane, None, retries)

    @precondition(lambda self: bool(self.model.ids(TaskState.PENDING)))
    @rule(n=st.integers(1, 5), llm_limit=st.sampled_from([None, 0, 1]))
    def claim(self, n: int, llm_limit: int | None) -> None:
        self.seq += 1
        token = f"t{self.seq}"
        limits = {"llm": llm_limit, "local": None}
        expected = self.model.claim(n, limits, token)
        got = self.run(self.queue.claim("w", token, n, limits))
        assert [(c.task_id, c.retry_count, c.lost_leases) for c in got] == expected

    @precondition(lambda self: bool(self.model.ids(TaskState.ACTIVE)))
    @rule(
        data=st.data(),
        mode=st.sampled_from(["complete", "retry", "dlq", "requeue", "cancel", "expire"]),
    )
    def finish(self, data: st.DataObject, mode: str) -> None:
        """The worker holding a lease ends the attempt (or its lease runs out)."""
        task_id = data.draw(st.sampled_from(self.model.ids(TaskState.ACTIVE)))
        token = self.model.tasks[task_id].lease
        assert token is not None
        if mode == "complete":
            done = self.model.complete(task_id, token)
            assert self.run(self.queue.complete_many([(task_id, token, {"ok": 1})])) == [done]
        elif mode == "expire":
            reaped = self.model.expire(task_id)
            self.run(self.redis.zadd(self.queue.keys.active, {task_id: 0}, xx=True))
            assert self.run(self.queue.reap_expired()) == reaped
        else:
            state = self.model.fail(task_id, token, mode)
            outcome = self.queue.fail(task_id, token, mode=mode, error_type="timeout", message="m")
            assert self.run(outcome) == state

    @precondition(lambda self: bool(self.model.tasks))
    @rule(data=st.data(), mode=st.sampled_from(["complete", "retry", "requeue"]))
    def finish_without_the_lease(self, data: st.DataObject, mode: str) -> None:
        """A worker whose lease is gone (or never was) changes nothing."""
        task_id = data.draw(st.sampled_from(sorted(self.model.tasks)))
        if mode == "complete":
            assert self.model.complete(task_id, NO_LEASE) is False
            assert self.run(self.queue.complete_many([(task_id, NO_LEASE, {})])) == [False]
        else:
            stale = self.model.fail(task_id, NO_LEASE, mode)
            assert self.run(self.queue.fail(task_id, NO_LEASE, mode=mode)) == stale

    @precondition(lambda self: bool(self.model.scheduled))
    @rule()
    def promote(self) -> None:
        due = dict.fromkeys(sorted(self.model.scheduled), 0)  # all due at 0: in id order
        self.run(self.redis.zadd(self.queue.keys.scheduled, due, xx=True))
        moved = self.model.promote()
        assert self.run(self.queue.promote_due(PROMOTE_LIMIT)) == moved

    @precondition(lambda self: bool(self.model.tasks or self.gone))
    @rule(data=st.data(), op=st.sampled_from(["cancel", "retry", "delete"]))
    def operate(self, data: st.DataObject, op: str) -> None:
        """An operator's call on any task, deleted ones included."""
        task_id = data.draw(st.sampled_from(sorted(self.model.tasks) + self.gone))
        if op == "delete":
            existed = self.model.delete(task_id)
            assert self.run(self.queue.delete(task_id)) is existed
            if existed:
                self.gone.append(task_id)
            return
        if op == "cancel":
            expected = self.model.cancel(task_id)
            call = self.queue.cancel(task_id)
        else:
            reset = data.draw(st.booleans())
            expected = self.model.retry(task_id, reset)
            call = self.queue.retry(task_id, reset_retry_count=reset)
        if isinstance(expected, Refused):
            with pytest.raises(expected.error) as refused:
                self.run(call)
            if expected.state is not None:
                assert getattr(refused.value, "state", None) == expected.state
        else:
            assert self.run(call).state == expected

    @invariant()
    def agrees_with_the_model(self) -> None:
        ids = sorted(self.model.tasks)
        for task_id, rec in zip(ids, self.run(self.queue.get_many(ids)), strict=True):
            want = self.model.tasks[task_id]
            assert rec is not None, f"task {task_id} is missing"
            seen = (rec.state, rec.retry_count, rec.lost_leases, rec.cancel_requested)
            assert seen == (want.state, want.retry_count, want.lost_leases, want.cancel_requested)
            assert (rec.lane, rec.priority, rec.max_retries) == (
                want.lane,
                want.priority,
                want.max_retries,
            )
        assert self.run(self.queue.get_many(self.gone)) == [None] * len(self.gone)
        assert self.run(self.queue.counts()) == self.model.counts()
        for name in ("primary", "retry"):
            assert self.run(self.queue.queue_ids(name, limit=1000)) == self.model.waiting(name)
        depths = self.run(self.queue.depths())
        assert (depths.scheduled, depths.dlq, depths.active) == (
            len(self.model.scheduled),
            len(self.model.ids(TaskState.DLQ)),
            len(self.model.ids(TaskState.ACTIVE)),
        )

    @invariant()
    def passes_the_audit(self) -> None:
        report = self.run(audit(self.redis, self.queue.keys))
        assert report.ok, report.problems


StoreMachine.TestCase.settings = settings(
    max_examples=60,  # enough to catch a wrong retry share (every 5th claim) reliably
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_store_state_machine(redis_url: str) -> None:
    StoreMachine.url = redis_url
    StoreMachine.TestCase().runTest()
