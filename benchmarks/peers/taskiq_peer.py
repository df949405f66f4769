"""Taskiq peer: ``taskiq-redis``'s ``RedisStreamBroker`` (acked stream messages), one worker.

Producer: ``AsyncTaskiqDecoratedTask.kiq`` awaited one at a time (no batch API).  Worker:
``taskiq worker taskiq_peer:broker --workers 1 --max-async-tasks C``; Taskiq's defaults are 2
worker processes with up to 100 async tasks each, so the "default" run keeps 100 and only pins the
process count to one.  The stream broker is the one the taskiq-redis docs recommend (it acks).
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
    measure_drain,
    measure_enqueue,
    measure_latency,
    measure_sleep_drain,
    payload_of,
    redis_url,
    run,
)
from redis.asyncio import Redis
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(url=redis_url())

DEFAULT_MAX_ASYNC_TASKS = 100
"""Taskiq's default ``--max-async-tasks``."""

BEST_MAX_ASYNC_TASKS = 100
"""``--max-async-tasks`` for the no-op drain and the latency probe."""

TUNED_SLEEP_MAX_ASYNC_TASKS = 500
"""``--max-async-tasks`` for the tuned sleep run: one slot per task."""

_clients: dict[str, Redis] = {}


def _counter() -> Redis:
    """The worker process's client for the benchmark counter, created on first use."""
    if "counter" not in _clients:
        _clients["counter"] = Redis.from_url(redis_url())
    return _clients["counter"]


@broker.task
async def noop(payload: str = "") -> None:
    """The no-op task: only records its completion."""
    await _counter().incr(DONE_KEY)


@broker.task
async def sleeper(seconds: float) -> None:
    """Sleep without blocking the loop, then record completion."""
    await asyncio.sleep(seconds)
    await _counter().incr(DONE_KEY)


@broker.task
async def probe() -> None:
    """Latency probe: the first line stamps the start time."""
    started = time.time()
    await _counter().rpush(LATENCY_KEY, repr(started))


def worker(url: str, max_async_tasks: int) -> WorkerProcess:
    """A ``taskiq worker`` with one worker process and ``max_async_tasks`` slots."""
    cmd = [
        str(Path(sys.executable).with_name("taskiq")),
        "worker", "taskiq_peer:broker",
        "--workers", "1",
        "--max-async-tasks", str(max_async_tasks),
        "--log-level", "WARNING",
    ]  # fmt: skip
    return WorkerProcess(cmd, {"BENCH_REDIS_URL": url})


async def _enqueue_noops(n: int, payload: str) -> None:
    await broker.startup()
    try:
        for _ in range(n):
            await noop.kiq(payload)
    finally:
        await broker.shutdown()


async def _enqueue_sleepers(n: int, seconds: float) -> None:
    for _ in range(n):
        await sleeper.kiq(seconds)


def enqueue(args: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` no-ops carrying ``payload_bytes`` each."""
    payload = payload_of(int(args.get("payload_bytes", 0)))

    def go() -> str:
        asyncio.run(_enqueue_noops(int(args["n"]), payload))
        return "await task.kiq() one at a time"

    return measure_enqueue(go)


def drain(args: dict[str, Any]) -> dict[str, Any]:
    """Drain the queued no-ops with one worker process."""
    slots = int(args.get("concurrency", BEST_MAX_ASYNC_TASKS))
    return measure_drain(
        args["redis_url"],
        worker(args["redis_url"], slots),
        int(args["n"]),
        float(args["timeout"]),
        f"--workers 1 --max-async-tasks {slots}",
    )


def sleep_drain(args: dict[str, Any]) -> dict[str, Any]:
    """500 x sleep at the default 100 slots or at one slot per task."""
    url = args["redis_url"]
    default = args["mode"] == "default"
    slots = (
        DEFAULT_MAX_ASYNC_TASKS
        if default
        else int(args.get("concurrency", TUNED_SLEEP_MAX_ASYNC_TASKS))
    )
    with asyncio.Runner() as runner:
        runner.run(broker.startup())
        result = measure_sleep_drain(
            url,
            worker(url, slots),
            lambda: runner.run(noop.kiq()),
            lambda n: runner.run(_enqueue_sleepers(n, float(args["sleep_s"]))),
            int(args["n"]),
            float(args["timeout"]),
            slots,
            f"--workers 1 --max-async-tasks {slots}" + (" (default slots)" if default else ""),
        )
        runner.run(broker.shutdown())
    return result


def latency(args: dict[str, Any]) -> dict[str, Any]:
    """Pick-up latency of an idle worker (blocking XREADGROUP)."""
    url = args["redis_url"]
    slots = int(args.get("concurrency", BEST_MAX_ASYNC_TASKS))
    with asyncio.Runner() as runner:
        runner.run(broker.startup())
        result = measure_latency(
            url,
            worker(url, slots),
            lambda: runner.run(probe.kiq()),
            int(args["samples"]),
            float(args["timeout"]),
            f"--workers 1 --max-async-tasks {slots}",
        )
        runner.run(broker.shutdown())
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
    # Re-import under the module's real name: the worker must find the tasks as
    # ``taskiq_peer:*``, not ``__main__:*``.
    import taskiq_peer

    run(taskiq_peer.WORKLOADS)
