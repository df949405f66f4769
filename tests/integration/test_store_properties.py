"""Property test: random sequences of store operations keep counters equal to a full scan and
every id in exactly one structure (hypothesis state machine, real Redis)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from support import make_settings
from taskflow_server.store.audit import audit
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import StoreError, TaskQueue
from taskflow_server.store.records import NewTask

LANES: dict[str, int | None] = {"llm": None, "local": None}


class StoreMachine(RuleBasedStateMachine):
    """Drives a TaskQueue with random operations; checks the audit after each step."""

    url = "redis://127.0.0.1:6379/9"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.Redis.from_url(self.url)
        self.queue = TaskQueue(self.redis, Keys("tfprop"), make_settings(max_lost_leases=2))
        self.run(self.redis.flushdb())
        self.run(self.queue.load())
        self.ids: list[str] = []
        self.leases: dict[str, str] = {}
        self.seq = 0

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.redis.flushdb())
        self.run(self.redis.aclose())
        self.loop.close()

    @rule(
        n=st.integers(1, 4),
        prio=st.sampled_from(["high", "default", "low"]),
        lane=st.sampled_from(["llm", "local"]),
        key=st.none() | st.sampled_from(["a", "b"]),
        retries=st.integers(0, 2),
    )
    def submit(self, n: int, prio: str, lane: str, key: str | None, retries: int) -> None:
        subs = self.run(
            self.queue.submit_many(
                [
                    NewTask(
                        "demo.noop",
                        {},
                        lane=lane,
                        priority=prio,
                        max_retries=retries,
                        idempotency_key=key,
                    )
                    for _ in range(n)
                ]
            )
        )
        self.ids.extend(s.task_id for s in subs if s.created)

    @rule(n=st.integers(1, 5), llm_limit=st.sampled_from([None, 0, 1]))
    def claim(self, n: int, llm_limit: int | None) -> None:
        self.seq += 1
        token = f"t{self.seq}"
        for c in self.run(self.queue.claim("w", token, n, {"llm": llm_limit, "local": None})):
            self.leases[c.task_id] = token

    @precondition(lambda self: bool(self.leases))
    @rule(
        data=st.data(),
        mode=st.sampled_from(["complete", "retry", "dlq", "requeue", "cancel", "expire"]),
    )
    def finish(self, data: st.DataObject, mode: str) -> None:
        tid = data.draw(st.sampled_from(sorted(self.leases)))
        token = self.leases.pop(tid)
        if mode == "complete":
            self.run(self.queue.complete_many([(tid, token, {"ok": 1})]))
        elif mode == "expire":
            self.run(self.redis.zadd(self.queue.keys.active, {tid: 0}, xx=True))
            self.run(self.queue.reap_expired())
        else:
            self.run(self.queue.fail(tid, token, mode=mode, error_type="timeout", message="m"))

    @rule()
    def promote(self) -> None:
        self.run(
            self.redis.zadd(self.queue.keys.scheduled, dict.fromkeys(self.ids, 0), xx=True)
        ) if self.ids else None
        self.run(self.queue.promote_due())

    @precondition(lambda self: bool(self.ids))
    @rule(data=st.data(), op=st.sampled_from(["cancel", "retry", "delete"]))
    def operate(self, data: st.DataObject, op: str) -> None:
        tid = data.draw(st.sampled_from(self.ids))
        try:
            if op == "cancel":
                self.run(self.queue.cancel(tid))
            elif op == "retry":
                self.run(self.queue.retry(tid, reset_retry_count=data.draw(st.booleans())))
            else:
                self.run(self.queue.delete(tid))
                self.ids.remove(tid)
                self.leases.pop(tid, None)
        except StoreError:
            pass

    @invariant()
    def consistent(self) -> None:
        report = self.run(audit(self.redis, self.queue.keys))
        assert report.ok, report.problems


StoreMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_store_state_machine(redis_url: str) -> None:
    StoreMachine.url = redis_url
    StoreMachine.TestCase().runTest()
