"""Graceful stop: SIGTERM to a busy worker hands its in-flight tasks back within the grace period.

A worker runs 20 tasks at once: short ones that finish inside the grace period (they complete
there) and long ones that cannot (they go back to the front of their queue as PENDING, without
using a retry). The process exits 0 within the grace period plus a margin; a second worker then
finishes everything: nothing is lost, nothing runs twice to completion, counters equal a scan.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from e2e_support import (
    POLL,
    RedisServer,
    Spawner,
    assert_all_completed_once,
    log_text,
    new_task,
    open_queue,
    submit_chunked,
    worker_env,
)

from support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

GRACE = 3.0


async def test_sigterm_hands_back_in_flight_tasks(
    redis_server: RedisServer, spawn: Spawner, figures: dict[str, Any]
) -> None:
    prefix = "term"
    env = worker_env(
        redis_server.url,
        prefix,
        TASKFLOW_CONCURRENCY="20",
        TASKFLOW_GRACE_SECONDS=str(GRACE),
        TASKFLOW_LEASE_SECONDS="30",  # a hand-back, not the reaper, must bring them back
    )
    async with open_queue(redis_server.url, prefix) as queue:
        short = await submit_chunked(
            queue, [new_task("demo.sleep", {"seconds": 1.0}) for _ in range(10)]
        )
        long = await submit_chunked(
            queue, [new_task("demo.sleep", {"seconds": 8.0}) for _ in range(10)]
        )
        queued = await submit_chunked(
            queue, [new_task("demo.sleep", {"seconds": 0.2}) for _ in range(30)]
        )
        busy = spawn("taskflow-worker", env=env)

        async def all_slots_busy() -> bool:
            return (await queue.counts())["ACTIVE"] == 20

        await eventually(all_slots_busy, "the worker to fill its 20 slots", 30, every=POLL)
        sent = time.monotonic()
        busy.send_signal(signal.SIGTERM)
        assert busy.wait(timeout=GRACE + 10) == 0, log_text(busy)[-2000:]
        stopped_after = time.monotonic() - sent
        assert stopped_after < GRACE + 3, f"stopping took {stopped_after:.1f} s"
        for record in await queue.get_many(short):  # finished inside the grace period
            assert record is not None and record.state == "COMPLETED", record
        for record in await queue.get_many(long):
            assert record is not None
            assert record.state == "PENDING", (record.state, record.last_error)
            assert record.retry_count == 0 and record.lost_leases == 0
        counts = await queue.counts()
        assert counts["ACTIVE"] == 0, counts
        assert counts["PENDING"] == len(long) + len(queued), counts
        assert (await queue.workers()) == []  # the heartbeat was removed
        text = log_text(busy)
        assert "handed 10 task(s) back" in text, text[-2000:]
        spawn("taskflow-worker", env=env)
        ids = short + long + queued

        async def all_done() -> bool:
            return (await queue.counts())["COMPLETED"] == len(ids)

        await eventually(all_done, "the second worker to finish everything", 60, every=POLL)
        await assert_all_completed_once(queue, ids)
    figures.update(
        in_flight_at_sigterm=20,
        finished_in_grace=len(short),
        handed_back=len(long),
        grace_s=GRACE,
        exit_after_sigterm_s=round(stopped_after, 2),
    )
