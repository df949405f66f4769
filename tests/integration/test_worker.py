"""The worker in-process against a real Redis: outcomes, time limits, cancel, graceful stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from support import eventually, make_settings, wait_state
from taskflow_server.config import Settings
from taskflow_server.store.audit import audit
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask
from taskflow_server.worker.worker import Worker

StartWorker = Callable[..., Awaitable[tuple[Worker, TaskQueue]]]


@pytest.fixture
async def start_worker(redis: Redis) -> AsyncIterator[StartWorker]:
    """Factory: start a worker with settings overrides; stops every worker it started."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**overrides: object) -> tuple[Worker, TaskQueue]:
        settings: Settings = make_settings(key_prefix="tfworker", **overrides)
        worker = Worker(settings, redis, concurrency=int(overrides.get("concurrency", 20)))  # type: ignore[call-overload]
        started.append((worker, asyncio.create_task(worker.run())))
        queue = TaskQueue(redis, Keys("tfworker"), settings)
        await queue.load()
        return worker, queue

    yield start
    for worker, task in started:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=30)


async def test_noops_complete_and_store_stays_consistent(start_worker: StartWorker) -> None:
    _, queue = await start_worker()
    subs = await queue.submit_many([NewTask("demo.noop", {"i": i}) for i in range(500)])
    for s in subs[-1:]:
        await wait_state(queue, s.task_id, {"COMPLETED"})

    async def all_completed() -> bool:
        return (await queue.counts())["COMPLETED"] >= 500

    await eventually(all_completed, "500 completions", 10)
    report = await audit(queue.redis, queue.keys)
    assert report.ok, report.problems


async def test_permanent_error_dead_letters_and_transient_schedules(
    start_worker: StartWorker,
) -> None:
    _, queue = await start_worker()
    bad = await queue.submit(
        NewTask("demo.fail", {"error_class": "invalid_input", "message": "not a PDF"})
    )
    slow = await queue.submit(NewTask("demo.fail", {"error_class": "timeout"}))
    rec = await wait_state(queue, bad.task_id, {"DLQ"})
    assert rec.error_type == "invalid_input" and rec.last_error == "not a PDF"
    rec = await wait_state(queue, slow.task_id, {"SCHEDULED"})
    assert rec.retry_count == 1 and rec.retry_after is not None and rec.retry_after > rec.updated_at


async def test_invalid_payload_and_unknown_type_are_dead_lettered(
    start_worker: StartWorker,
) -> None:
    _, queue = await start_worker()
    wrong = await queue.submit(NewTask("demo.sleep", {"seconds": "soon"}))
    unknown = await queue.submit(NewTask("no.such.task", {}))
    assert (await wait_state(queue, wrong.task_id, {"DLQ"})).error_type == "invalid_input"
    assert (await wait_state(queue, unknown.task_id, {"DLQ"})).error_type == "invalid_request"


async def test_time_limit_turns_into_a_timeout_retry(start_worker: StartWorker) -> None:
    _, queue = await start_worker(task_time_limit=0.3)
    sub = await queue.submit(NewTask("demo.sleep", {"seconds": 30}))
    rec = await wait_state(queue, sub.task_id, {"SCHEDULED"})
    assert rec.error_type == "timeout" and "time limit" in (rec.last_error or "")


async def test_cancel_of_a_running_task(start_worker: StartWorker) -> None:
    _, queue = await start_worker()
    sub = await queue.submit(NewTask("demo.sleep", {"seconds": 30}))
    await wait_state(queue, sub.task_id, {"ACTIVE"})
    await queue.cancel(sub.task_id)
    rec = await wait_state(queue, sub.task_id, {"CANCELLED"}, timeout=5)
    assert rec.completed_at is None


async def test_graceful_stop_hands_running_tasks_back(redis: Redis) -> None:
    settings = make_settings(key_prefix="tfworker", grace_seconds=0.3)
    worker = Worker(settings, redis, concurrency=5)
    runner = asyncio.create_task(worker.run())
    queue = TaskQueue(redis, Keys("tfworker"), settings)
    await queue.load()
    quick = await queue.submit(NewTask("demo.sleep", {"seconds": 0.05}))
    slow = [await queue.submit(NewTask("demo.sleep", {"seconds": 30})) for _ in range(3)]
    for s in slow:
        await wait_state(queue, s.task_id, {"ACTIVE"})
    worker.request_stop()
    await asyncio.wait_for(runner, timeout=10)
    assert (await queue.get(quick.task_id)).state == "COMPLETED"  # type: ignore[union-attr]
    for s in slow:
        rec = await queue.get(s.task_id)
        assert rec is not None and rec.state == "PENDING" and rec.retry_count == 0
    assert await queue.workers() == []
    report = await audit(redis, queue.keys)
    assert report.ok, report.problems


async def test_heartbeat_is_visible(start_worker: StartWorker) -> None:
    worker, queue = await start_worker()
    await eventually(queue.workers, "the worker's heartbeat", 5, every=0.05)
    (info,) = await queue.workers()
    assert info["id"] == worker.id and info["concurrency"] == 20 and "last_seen" in info


async def test_leases_are_extended_every_lease_extend_every(start_worker: StartWorker) -> None:
    # A 0.9 s lease outlives a 2 s task only if the worker extends it more often than every
    # 0.9 s (the reaper runs every 0.1 s here): the period comes from the setting.
    _, queue = await start_worker(lease_seconds=0.9, lease_extend_every=0.25)
    sub = await queue.submit(NewTask("demo.sleep", {"seconds": 2.0}))
    rec = await wait_state(queue, sub.task_id, {"COMPLETED"})
    assert rec.lost_leases == 0 and rec.retry_count == 0


async def test_a_cancel_lands_within_one_extension_period(start_worker: StartWorker) -> None:
    _, queue = await start_worker(lease_extend_every=0.1)
    sub = await queue.submit(NewTask("demo.sleep", {"seconds": 30}))
    await wait_state(queue, sub.task_id, {"ACTIVE"})
    await queue.cancel(sub.task_id)
    await wait_state(queue, sub.task_id, {"CANCELLED"}, timeout=0.6)
