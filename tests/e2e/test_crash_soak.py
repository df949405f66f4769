"""Worker crashes at scale: 1,000 tasks, 3 workers, one SIGKILLed and restarted 10 times.

Every task must end COMPLETED exactly once (one completion event, one result), the counters must
equal a full scan, and nothing may be left ACTIVE. Tasks are ``demo.sleep`` and ``summarize``
against the fake upstream (a real HTTP call per task), on a private Redis with AOF on.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import pytest
from e2e_support import (
    POLL,
    TEXT,
    FakeUpstream,
    RedisServer,
    Spawner,
    assert_all_completed_once,
    new_task,
    open_queue,
    submit_chunked,
    worker_env,
)

from support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TASKS = 1000
SUMMARIES = 300
WORKERS = 3
KILLS = 10
KILL_EVERY = 2.0
SLEEP_SECONDS = 1.2


async def test_thousand_tasks_ten_kills(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    figures: dict[str, Any],
) -> None:
    prefix = "soak"
    env = worker_env(
        redis_server.url,
        prefix,
        TASKFLOW_CONCURRENCY="8",
        # Ten external kills may catch the same task more than the default 3 times; poison
        # detection is for tasks that kill their worker, which none of these do.
        TASKFLOW_MAX_LOST_LEASES="8",
        **fake_upstream.env(),
    )
    rng = random.Random(8)
    tasks = [
        new_task("summarize", {"content": f"{TEXT} Item {i}.", "sentences": 2})
        if i % (TASKS // SUMMARIES) == 0 and i // (TASKS // SUMMARIES) < SUMMARIES
        else new_task("demo.sleep", {"seconds": SLEEP_SECONDS})
        for i in range(TASKS)
    ]
    async with open_queue(redis_server.url, prefix) as queue:
        ids = await submit_chunked(queue, tasks)
        assert len(ids) == TASKS
        started = time.monotonic()
        workers = [spawn("taskflow-worker", env=env) for _ in range(WORKERS)]

        async def some_done() -> bool:
            return (await queue.counts())["COMPLETED"] >= 20

        await eventually(some_done, "the workers to start completing tasks", 60, every=POLL)
        kills: list[dict[str, Any]] = []
        while len(kills) < KILLS:
            await asyncio.sleep(KILL_EVERY)
            counts = await queue.counts()
            assert counts["PENDING"] + counts["SCHEDULED"] > 0, (
                f"the run finished after {len(kills)} kills: make it longer ({counts})"
            )
            victim = rng.randrange(WORKERS)
            proc = workers[victim]
            assert proc.poll() is None, f"worker {victim} died on its own"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills.append({"at": round(time.monotonic() - started, 1), "active": counts["ACTIVE"]})
            workers[victim] = spawn("taskflow-worker", env=env)

        async def all_done() -> bool:
            return (await queue.counts())["COMPLETED"] == TASKS

        await eventually(all_done, f"all {TASKS} tasks to complete", 150, every=0.25)
        elapsed = time.monotonic() - started
        await assert_all_completed_once(queue, ids)
        records = await queue.get_many(ids)
        reaped = sum(1 for r in records if r is not None and r.lost_leases)
        summaries = [r for r in records if r is not None and r.task_type == "summarize"]
        assert len(summaries) == SUMMARIES
        assert all(r.result and r.result.get("provider") == "openrouter" for r in summaries)
        assert reaped > 0, "the kills should have left leased tasks for the reaper"
        for proc in workers:
            assert proc.poll() is None
    upstream = fake_upstream.stats()
    assert upstream["by_status"].get("200", 0) >= SUMMARIES
    figures.update(
        tasks=TASKS,
        summaries=SUMMARIES,
        workers=WORKERS,
        kills=len(kills),
        tasks_reaped_after_kills=reaped,
        upstream_calls=upstream["chat_requests"],
        seconds=round(elapsed, 1),
    )
