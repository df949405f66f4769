"""kill -9 a worker mid-run: every task still ends COMPLETED exactly once; SIGTERM drains."""

from __future__ import annotations

import os
import signal
import time

import pytest
from e2e_support import completions, worker_env
from redis.asyncio import Redis

from support import eventually, make_settings
from taskflow_server.store.audit import audit
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_sigkill_mid_run_loses_nothing(redis: Redis, redis_url: str, spawn) -> None:  # type: ignore[no-untyped-def]
    prefix = "tfcrash"
    queue = TaskQueue(redis, Keys(prefix), make_settings(key_prefix=prefix))
    await queue.load()
    subs = await queue.submit_many([NewTask("demo.sleep", {"seconds": 0.25}) for _ in range(300)])
    ids = {s.task_id for s in subs}
    env = worker_env(redis_url, prefix, TASKFLOW_CONCURRENCY="25")
    victim = spawn("taskflow-worker", env=env)
    spawn("taskflow-worker", env=env)

    async def victim_busy() -> bool:
        return (await queue.counts())["COMPLETED"] >= 30

    await eventually(victim_busy, "work to start", 60, every=0.1)
    os.kill(victim.pid, signal.SIGKILL)  # mid-run: it holds leased tasks
    victim.wait(timeout=10)

    async def all_done() -> bool:
        return (await queue.counts())["COMPLETED"] == 300

    await eventually(all_done, "all 300 tasks to complete", 120, every=0.1)
    counts = await queue.counts()
    assert counts["ACTIVE"] == 0 and counts["PENDING"] == 0 and counts["DLQ"] == 0
    report = await audit(redis, queue.keys)
    assert report.ok, report.problems
    done = await completions(queue)
    assert set(done) == ids
    assert set(done.values()) == {1}  # result written exactly once per task
    reaped = [r for r in await queue.get_many(sorted(ids)) if r and r.lost_leases]
    assert reaped, "the kill should have left leased tasks for the reaper"


async def test_sigterm_hands_in_flight_tasks_back(redis: Redis, redis_url: str, spawn) -> None:  # type: ignore[no-untyped-def]
    prefix = "tfterm"
    queue = TaskQueue(redis, Keys(prefix), make_settings(key_prefix=prefix))
    await queue.load()
    subs = await queue.submit_many([NewTask("demo.sleep", {"seconds": 60}) for _ in range(5)])
    env = worker_env(redis_url, prefix, TASKFLOW_CONCURRENCY="25", TASKFLOW_GRACE_SECONDS="1")
    proc = spawn("taskflow-worker", env=env)

    async def all_active() -> bool:
        return (await queue.counts())["ACTIVE"] == 5

    await eventually(all_active, "tasks to start", 30, every=0.1)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    for rec in await queue.get_many([s.task_id for s in subs]):
        assert rec is not None and rec.state == "PENDING" and rec.retry_count == 0
    report = await audit(redis, queue.keys)
    assert report.ok, report.problems
