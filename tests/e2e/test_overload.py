"""Overload: 50,000 queued tasks drained by 4 workers while the API is polled.

The memory of the server and of each worker must stay bounded (a worker holds at most its slots'
worth of tasks, never the queue), and the API must keep answering: ``/health`` latency under load
is measured and its p99 reported (and bounded).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import pytest
from e2e_support import (
    RedisServer,
    RssSampler,
    Spawner,
    StartServer,
    new_task,
    open_queue,
    submit_chunked,
    worker_env,
)

from support import eventually
from taskflow_server.store.audit import audit

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TASKS = 50_000
WORKERS = 4
RSS_LIMIT_MIB = 400.0
HEALTH_P99_LIMIT_S = 2.0


async def _poll_health(
    url: str, stop: asyncio.Event, latencies: list[float], errors: list[str]
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                resp = await client.get("/health")
                if resp.status_code != 200:
                    errors.append(f"{resp.status_code}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)


async def test_fifty_thousand_queued_tasks(
    spawn: Spawner, start_server: StartServer, rss: RssSampler, figures: dict[str, Any]
) -> None:
    redis = RedisServer(appendonly=False).start()  # a throughput run: no disk writes
    try:
        prefix = "overload"
        env = worker_env(redis.url, prefix, TASKFLOW_CONCURRENCY="100", TASKFLOW_LEASE_SECONDS="30")
        server = start_server({**env, "TASKFLOW_WORKERS": "0"})
        rss.watch("server", server.proc.pid)
        async with open_queue(redis.url, prefix) as queue:
            started = time.monotonic()
            ids = await submit_chunked(
                queue, [new_task("demo.sleep", {"seconds": 0.01}) for _ in range(TASKS)], 2500
            )
            submit_s = time.monotonic() - started
            assert (await queue.counts())["PENDING"] == TASKS
            stop = asyncio.Event()
            latencies: list[float] = []
            errors: list[str] = []
            poller = asyncio.create_task(_poll_health(server.url, stop, latencies, errors))
            drain_start = time.monotonic()
            for i in range(WORKERS):
                rss.watch(f"worker{i}", spawn("taskflow-worker", env=env).pid)

            async def drained() -> bool:
                return (await queue.counts())["COMPLETED"] == TASKS

            await eventually(drained, f"{TASKS} tasks to complete", 240, every=0.5)
            drain_s = time.monotonic() - drain_start
            stop.set()
            await poller
            counts = await queue.counts()
            assert counts["ACTIVE"] == counts["PENDING"] == counts["DLQ"] == 0, counts
            report = await audit(queue.redis, queue.keys)
            assert report.ok, report.problems[:20]
            assert len(ids) == TASKS
        assert not errors, errors[:10]
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        peaks = rss.peak_mib()
        worker_peak = max(v for k, v in peaks.items() if k.startswith("worker"))
        figures.update(
            tasks=TASKS,
            workers=WORKERS,
            submit_s=round(submit_s, 1),
            drain_s=round(drain_s, 1),
            tasks_per_s=round(TASKS / drain_s),
            health_requests=len(latencies),
            health_p50_ms=round(statistics.median(latencies) * 1000, 1),
            health_p99_ms=round(p99 * 1000, 1),
            peak_rss_mib=peaks,
        )
        assert p99 < HEALTH_P99_LIMIT_S, f"/health p99 {p99:.2f} s"
        assert peaks["server"] < RSS_LIMIT_MIB, peaks
        assert worker_peak < RSS_LIMIT_MIB, peaks
    finally:
        redis.stop()
