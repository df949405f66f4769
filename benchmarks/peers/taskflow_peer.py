"""AsyncTaskFlow peer: our own queue, measured exactly like the other peers.

Unlike the other drivers this one runs with the harness's own interpreter (the project venv),
so it can import ``taskflow_server``. It speaks the same protocol:
``python taskflow_peer.py <workload> '<json args>'`` prints one JSON line.

Producer: ``TaskQueue.submit_many`` (one script call per 1,000 tasks) for the bulk enqueues, and
``TaskQueue.submit`` (one call per task) for the one-at-a-time sleepers and probes.
Worker: one ``taskflow-worker`` process, its task types loaded from this module through
``TASKFLOW_TASK_MODULES``; every benchmark task ends with ``INCR bench:done`` like the peers'.
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
    run,
)
from pydantic import BaseModel, ConfigDict

from taskflow_server.config import Settings
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask
from taskflow_server.tasks.registry import TaskContext, task

DEFAULT_CONCURRENCY = Settings.model_fields["concurrency"].default
"""The worker's default slots, as shipped (100)."""

TUNED_CONCURRENCY = 500
"""Slots for the tuned 500 x 0.2 s run: every sleeper in one wave."""

BEST_CONCURRENCY = DEFAULT_CONCURRENCY
"""Slots used for the no-op drain and the latency probe (the default)."""

PREFIX = "bench"
"""Key prefix (hash tag) of the benchmark's tasks."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Sleep(BaseModel):
    seconds: float


@task("bench.noop", payload=_Payload)
async def bench_noop(ctx: TaskContext, payload: _Payload) -> None:
    """The no-op task: only records its completion."""
    await ctx.services.redis.incr(DONE_KEY)


@task("bench.sleep", payload=_Sleep)
async def bench_sleep(ctx: TaskContext, payload: _Sleep) -> None:
    """Sleep without blocking the loop, then record completion."""
    await asyncio.sleep(payload.seconds)
    await ctx.services.redis.incr(DONE_KEY)


@task("bench.probe", payload=_Payload)
async def bench_probe(ctx: TaskContext, payload: _Payload) -> None:
    """Latency probe: the first line stamps the start time."""
    started = time.time()
    await ctx.services.redis.rpush(LATENCY_KEY, repr(started))


def _worker(url: str, concurrency: int) -> WorkerProcess:
    """ONE ``taskflow-worker`` process with ``concurrency`` slots and this module's tasks."""
    cli = str(Path(sys.executable).with_name("taskflow-worker"))
    env = {
        "TASKFLOW_REDIS_URL": url,
        "TASKFLOW_KEY_PREFIX": PREFIX,
        "TASKFLOW_CONCURRENCY": str(concurrency),
        "TASKFLOW_TASK_MODULES": "taskflow_peer",
        "TASKFLOW_LOG_LEVEL": "WARNING",
        "BENCH_REDIS_URL": url,
    }
    return WorkerProcess([cli], {k: v for k, v in env.items() if v is not None})


class _Producer:
    """One TaskQueue on its own event loop, kept open across calls."""

    def __init__(self, url: str) -> None:
        from taskflow_server.store.connection import make_redis

        self.runner = asyncio.Runner()
        settings = Settings(_env_file=None, redis_url=url, key_prefix=PREFIX)  # type: ignore[call-arg]
        self.redis = make_redis(url)
        self.queue = TaskQueue(self.redis, Keys(PREFIX), settings)
        self.runner.run(self.queue.load())

    def submit_many(self, tasks: list[NewTask]) -> None:
        self.runner.run(self.queue.submit_many(tasks))

    def submit(self, task_: NewTask) -> None:
        self.runner.run(self.queue.submit(task_))

    def close(self) -> None:
        self.runner.run(self.redis.aclose())
        self.runner.close()


def enqueue(args: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` no-ops carrying ``payload_bytes`` each (batches of 1,000 per call)."""
    payload = payload_of(int(args.get("payload_bytes", 0)))
    n = int(args["n"])
    producer = _Producer(args["redis_url"])

    def go() -> str:
        for start in range(0, n, 1000):
            count = min(1000, n - start)
            producer.submit_many([NewTask("bench.noop", {"data": payload}) for _ in range(count)])
        return "submit_many() in batches of 1,000 (one Lua call each)"

    try:
        return measure_enqueue(go)
    finally:
        producer.close()


def drain(args: dict[str, Any]) -> dict[str, Any]:
    """Drain the queued no-ops with one worker process."""
    concurrency = int(args.get("concurrency", BEST_CONCURRENCY))
    return measure_drain(
        args["redis_url"],
        _worker(args["redis_url"], concurrency),
        int(args["n"]),
        float(args["timeout"]),
        f"concurrency={concurrency}",
    )


def sleep_drain(args: dict[str, Any]) -> dict[str, Any]:
    """500 x sleep at the default (100 slots) or the tuned (500 slots) concurrency."""
    url = args["redis_url"]
    default = args["mode"] == "default"
    concurrency = DEFAULT_CONCURRENCY if default else TUNED_CONCURRENCY
    seconds = float(args["sleep_s"])
    producer = _Producer(url)
    try:
        return measure_sleep_drain(
            url,
            _worker(url, concurrency),
            lambda: producer.submit(NewTask("bench.noop", {})),
            lambda n: producer.submit_many(
                [NewTask("bench.sleep", {"seconds": seconds}) for _ in range(n)]
            ),
            int(args["n"]),
            float(args["timeout"]),
            concurrency,
            f"concurrency={concurrency}" + (" (default)" if default else "") + ", submit_many",
        )
    finally:
        producer.close()


def latency(args: dict[str, Any]) -> dict[str, Any]:
    """Pick-up latency of an idle worker (it blocks on a wake-up list: no polling)."""
    url = args["redis_url"]
    producer = _Producer(url)
    try:
        return measure_latency(
            url,
            _worker(url, BEST_CONCURRENCY),
            lambda: producer.submit(NewTask("bench.probe", {})),
            int(args["samples"]),
            float(args["timeout"]),
            f"concurrency={BEST_CONCURRENCY}",
        )
    finally:
        producer.close()


WORKLOADS = {
    "enqueue": enqueue,
    "memory": enqueue,
    "drain": drain,
    "sleep_drain": sleep_drain,
    "latency": latency,
}
"""The workloads this driver offers (the ``memory`` run is an ``enqueue`` with a 1 KB payload)."""

if __name__ == "__main__":
    # Re-import under the module's real name so the worker finds the same task types.
    import taskflow_peer

    run(taskflow_peer.WORKLOADS)
