"""SAQ peer: asyncio jobs on Redis lists (BLMOVE), one ``saq`` worker process.

Producer: ``Queue.enqueue`` awaited one at a time (SAQ's ``batch()`` only groups jobs for
cancellation, it does not pipeline them).  Worker: ``saq saq_peer.settings`` (one process); its
``concurrency`` (SAQ's default is 10) comes from ``BENCH_CONCURRENCY``.  A startup hook gives the
worker context a Redis client that the tasks use for the benchmark counter.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import (
    DONE_KEY,
    LATENCY_KEY,
    WorkerProcess,
    env_int,
    measure_drain,
    measure_enqueue,
    measure_latency,
    measure_sleep_drain,
    payload_of,
    redis_url,
    run,
)
from redis.asyncio import Redis
from saq import Queue

QUEUE_NAME = "bench"
DEFAULT_CONCURRENCY = 10
"""SAQ's default ``Worker(concurrency=...)``."""

BEST_CONCURRENCY = 100
"""Concurrency for the no-op drain and the latency probe."""

TUNED_SLEEP_CONCURRENCY = 500
"""Concurrency for the tuned sleep run: one slot per task."""


async def startup(ctx: dict[str, Any]) -> None:
    """Worker startup hook: one client for the counter, shared by all jobs."""
    ctx["bench_redis"] = Redis.from_url(redis_url())


async def shutdown(ctx: dict[str, Any]) -> None:
    """Worker shutdown hook."""
    await ctx["bench_redis"].aclose()


async def noop(ctx: dict[str, Any], *, payload: str = "") -> None:
    """The no-op task: only records its completion."""
    await ctx["bench_redis"].incr(DONE_KEY)


async def sleeper(ctx: dict[str, Any], *, seconds: float) -> None:
    """Sleep without blocking the loop, then record completion."""
    await asyncio.sleep(seconds)
    await ctx["bench_redis"].incr(DONE_KEY)


async def probe(ctx: dict[str, Any]) -> None:
    """Latency probe: the first line stamps the start time."""
    started = time.time()
    await ctx["bench_redis"].rpush(LATENCY_KEY, repr(started))


settings: dict[str, Any] = {
    "queue": Queue.from_url(redis_url(), name=QUEUE_NAME),
    "functions": [noop, sleeper, probe],
    "concurrency": env_int("BENCH_CONCURRENCY", DEFAULT_CONCURRENCY),
    "startup": startup,
    "shutdown": shutdown,
}
"""Worker settings read by the ``saq`` CLI."""


def worker(url: str, concurrency: int) -> WorkerProcess:
    """A ``saq`` worker process with ``concurrency`` slots."""
    cli = str(Path(sys.executable).with_name("saq"))
    env = {"BENCH_REDIS_URL": url, "BENCH_CONCURRENCY": str(concurrency)}
    return WorkerProcess([cli, "saq_peer.settings", "--workers", "1", "--quiet"], env)


async def _queue(url: str) -> Queue:
    queue = Queue.from_url(url, name=QUEUE_NAME)
    await queue.connect()
    return queue


async def _enqueue_noops(url: str, n: int, payload: str) -> None:
    queue = await _queue(url)
    try:
        for _ in range(n):
            await queue.enqueue("noop", payload=payload)
    finally:
        await queue.disconnect()


async def _enqueue_sleepers(queue: Queue, n: int, seconds: float) -> None:
    for _ in range(n):
        await queue.enqueue("sleeper", seconds=seconds)


def enqueue(args: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` no-ops carrying ``payload_bytes`` each."""
    payload = payload_of(int(args.get("payload_bytes", 0)))

    def go() -> str:
        asyncio.run(_enqueue_noops(args["redis_url"], int(args["n"]), payload))
        return "await Queue.enqueue() one at a time"

    return measure_enqueue(go)


def drain(args: dict[str, Any]) -> dict[str, Any]:
    """Drain the queued no-ops with one worker."""
    concurrency = int(args.get("concurrency", BEST_CONCURRENCY))
    return measure_drain(
        args["redis_url"],
        worker(args["redis_url"], concurrency),
        int(args["n"]),
        float(args["timeout"]),
        f"concurrency={concurrency}",
    )


def sleep_drain(args: dict[str, Any]) -> dict[str, Any]:
    """500 x sleep at default (10) or tuned (500) concurrency."""
    url = args["redis_url"]
    default = args["mode"] == "default"
    concurrency = (
        DEFAULT_CONCURRENCY if default else int(args.get("concurrency", TUNED_SLEEP_CONCURRENCY))
    )
    with asyncio.Runner() as runner:
        queue = runner.run(_queue(url))
        result = measure_sleep_drain(
            url,
            worker(url, concurrency),
            lambda: runner.run(queue.enqueue("noop")),
            lambda n: runner.run(_enqueue_sleepers(queue, n, float(args["sleep_s"]))),
            int(args["n"]),
            float(args["timeout"]),
            concurrency,
            f"concurrency={concurrency}" + (" (default)" if default else ""),
        )
        runner.run(queue.disconnect())
    return result


def latency(args: dict[str, Any]) -> dict[str, Any]:
    """Pick-up latency of an idle worker (blocking dequeue)."""
    url = args["redis_url"]
    concurrency = int(args.get("concurrency", BEST_CONCURRENCY))
    with asyncio.Runner() as runner:
        queue = runner.run(_queue(url))
        result = measure_latency(
            url,
            worker(url, concurrency),
            lambda: runner.run(queue.enqueue("probe")),
            int(args["samples"]),
            float(args["timeout"]),
            f"concurrency={concurrency}",
        )
        runner.run(queue.disconnect())
    return result


WORKLOADS = {
    "enqueue": enqueue,
    "memory": enqueue,
    "drain": drain,
    "sleep_drain": sleep_drain,
    "latency": latency,
}
"""The workloads this driver offers (the ``memory`` run is an ``enqueue`` with a 1 KB payload)."""

if __name__ == "__main__":
    # Re-import under the module's real name: workers must find the tasks as ``saq_peer.*``,
    # not ``__main__.*``.
    import saq_peer

    run(saq_peer.WORKLOADS)
