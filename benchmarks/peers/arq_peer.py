"""arq peer: asyncio jobs in a Redis sorted set, one ``arq`` worker process.

Producer: ``ArqRedis.enqueue_job`` awaited one at a time (arq has no batch enqueue API).
Worker: ``arq arq_peer.WorkerSettings``; its ``max_jobs`` (arq's concurrency, default 10) comes
from ``BENCH_CONCURRENCY``.  Every other setting, including ``poll_delay`` (0.5 s), is arq's
default.  Tasks use the worker's own pool (``ctx["redis"]``) to bump the benchmark counter.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
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

DEFAULT_MAX_JOBS = 10
"""arq's default ``max_jobs``."""

POLL_DELAY_S = 0.5
"""arq's default ``poll_delay``: an idle worker looks for jobs this often."""

BEST_MAX_JOBS = 100
"""``max_jobs`` for the no-op drain and the latency probe (faster than 500 in a 5,000 no-op try)."""

TUNED_SLEEP_MAX_JOBS = 500
"""``max_jobs`` for the tuned sleep run: one slot per task."""


async def noop(ctx: dict[str, Any], payload: str = "") -> None:
    """The no-op task: only records its completion."""
    await ctx["redis"].incr(DONE_KEY)


async def sleeper(ctx: dict[str, Any], seconds: float) -> None:
    """Sleep without blocking the loop, then record completion."""
    await asyncio.sleep(seconds)
    await ctx["redis"].incr(DONE_KEY)


async def probe(ctx: dict[str, Any]) -> None:
    """Latency probe: the first line stamps the start time."""
    started = time.time()
    await ctx["redis"].rpush(LATENCY_KEY, repr(started))


class WorkerSettings:
    """Settings read by the ``arq`` CLI in the worker process."""

    functions: ClassVar[list[Any]] = [noop, sleeper, probe]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = env_int("BENCH_CONCURRENCY", DEFAULT_MAX_JOBS)


def worker(url: str, max_jobs: int) -> WorkerProcess:
    """An ``arq`` worker process with ``max_jobs`` slots."""
    cli = str(Path(sys.executable).with_name("arq"))
    env = {"BENCH_REDIS_URL": url, "BENCH_CONCURRENCY": str(max_jobs)}
    return WorkerProcess([cli, "arq_peer.WorkerSettings"], env)


async def _pool(url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(url))


async def _enqueue_noops(url: str, n: int, payload: str) -> None:
    pool = await _pool(url)
    try:
        for _ in range(n):
            await pool.enqueue_job("noop", payload)
    finally:
        await pool.aclose()


async def _enqueue_sleepers(pool: ArqRedis, n: int, seconds: float) -> None:
    for _ in range(n):
        await pool.enqueue_job("sleeper", seconds)


def enqueue(args: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` no-ops carrying ``payload_bytes`` each."""
    payload = payload_of(int(args.get("payload_bytes", 0)))

    def go() -> str:
        asyncio.run(_enqueue_noops(args["redis_url"], int(args["n"]), payload))
        return "await enqueue_job() one at a time"

    return measure_enqueue(go)


def drain(args: dict[str, Any]) -> dict[str, Any]:
    """Drain the queued no-ops with one worker."""
    max_jobs = int(args.get("concurrency", BEST_MAX_JOBS))
    return measure_drain(
        args["redis_url"],
        worker(args["redis_url"], max_jobs),
        int(args["n"]),
        float(args["timeout"]),
        f"max_jobs={max_jobs}",
    )


def sleep_drain(args: dict[str, Any]) -> dict[str, Any]:
    """500 x sleep at default (``max_jobs=10``) or tuned (``max_jobs=500``) concurrency."""
    url = args["redis_url"]
    default = args["mode"] == "default"
    max_jobs = DEFAULT_MAX_JOBS if default else int(args.get("concurrency", TUNED_SLEEP_MAX_JOBS))
    with asyncio.Runner() as runner:
        pool = runner.run(_pool(url))
        result = measure_sleep_drain(
            url,
            worker(url, max_jobs),
            lambda: runner.run(pool.enqueue_job("noop")),
            lambda n: runner.run(_enqueue_sleepers(pool, n, float(args["sleep_s"]))),
            int(args["n"]),
            float(args["timeout"]),
            max_jobs,
            f"max_jobs={max_jobs}" + (" (default)" if default else ""),
        )
        runner.run(pool.aclose())
    return result


def latency(args: dict[str, Any]) -> dict[str, Any]:
    """Pick-up latency of an idle worker (default ``poll_delay`` 0.5 s)."""
    url = args["redis_url"]
    max_jobs = int(args.get("concurrency", BEST_MAX_JOBS))
    with asyncio.Runner() as runner:
        pool = runner.run(_pool(url))
        result = measure_latency(
            url,
            worker(url, max_jobs),
            lambda: runner.run(pool.enqueue_job("probe")),
            int(args["samples"]),
            float(args["timeout"]),
            f"max_jobs={max_jobs}, poll_delay=0.5 (default)",
            idle_poll_s=POLL_DELAY_S,
        )
        runner.run(pool.aclose())
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
    # Re-import under the module's real name: workers must find the tasks as ``arq_peer.*``,
    # not ``__main__.*``.
    import arq_peer

    run(arq_peer.WORKLOADS)
