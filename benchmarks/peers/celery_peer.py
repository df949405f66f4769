"""Celery peer: Redis broker (kombu), no result backend, one ``celery worker`` process.

Producer: ``Task.delay`` one at a time (Celery has no pipelined bulk publish; ``group`` publishes
each signature in turn).  Worker: ``celery -A celery_peer worker`` with one pool per run.  Celery's
default pool is ``prefork`` with ``--concurrency`` = CPU count (2 here): that is one worker
(the pool master) with forked children.  The tuned sleep run uses the ``threads`` pool with one
thread per task.  Everything else (prefetch multiplier, mingle, gossip, heartbeats) is default.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import redis
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
from celery import Celery

app = Celery("celery_peer", broker=redis_url())
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False

DEFAULT_CONCURRENCY = os.cpu_count() or 1
"""Celery's default ``--concurrency``: the number of CPUs."""

DRAIN_POOL = ("threads", 8)
"""Pool and concurrency for the no-op drain and the latency probe."""

TUNED_SLEEP_POOL = ("threads", 500)
"""Pool and concurrency for the tuned sleep run: one thread per task."""

_counter = redis.Redis.from_url(redis_url())
"""Client for the benchmark counter (redis-py pools are fork-safe, so prefork children may share
the module-level object)."""


@app.task
def noop(payload: str = "") -> None:
    """The no-op task: only records its completion."""
    _counter.incr(DONE_KEY)


@app.task
def sleeper(seconds: float) -> None:
    """Sleep (blocking; the pool provides the concurrency), then record completion."""
    time.sleep(seconds)
    _counter.incr(DONE_KEY)


@app.task
def probe() -> None:
    """Latency probe: the first line stamps the start time."""
    started = time.time()
    _counter.rpush(LATENCY_KEY, repr(started))


def worker(url: str, pool: str, concurrency: int) -> WorkerProcess:
    """A ``celery worker`` process with the given pool and concurrency."""
    cmd = [
        str(Path(sys.executable).with_name("celery")),
        "-A", "celery_peer", "worker",
        "--pool", pool,
        "--concurrency", str(concurrency),
        "--loglevel", "WARNING",
    ]  # fmt: skip
    return WorkerProcess(cmd, {"BENCH_REDIS_URL": url})


def enqueue(args: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` no-ops carrying ``payload_bytes`` each."""
    payload = payload_of(int(args.get("payload_bytes", 0)))
    n = int(args["n"])

    def go() -> str:
        for _ in range(n):
            noop.delay(payload)
        return "Task.delay() one at a time"

    noop.delay  # noqa: B018 -- resolve the task proxy before the clock starts
    result = measure_enqueue(go)
    app.close()
    return result


def drain(args: dict[str, Any]) -> dict[str, Any]:
    """Drain the queued no-ops with one worker."""
    pool, concurrency = DRAIN_POOL
    concurrency = int(args.get("concurrency", concurrency))
    pool = str(args.get("pool", pool))
    return measure_drain(
        args["redis_url"],
        worker(args["redis_url"], pool, concurrency),
        int(args["n"]),
        float(args["timeout"]),
        f"--pool {pool} --concurrency {concurrency}",
    )


def sleep_drain(args: dict[str, Any]) -> dict[str, Any]:
    """500 x sleep: default prefork (C = CPUs) or tuned threads pool (C = 500)."""
    url = args["redis_url"]
    if args["mode"] == "default":
        pool, concurrency = "prefork", DEFAULT_CONCURRENCY
        setting = f"--pool prefork --concurrency {concurrency} (default)"
    else:
        pool, concurrency = TUNED_SLEEP_POOL
        concurrency = int(args.get("concurrency", concurrency))
        setting = f"--pool {pool} --concurrency {concurrency}"
    seconds = float(args["sleep_s"])

    def enqueue_sleepers(n: int) -> None:
        for _ in range(n):
            sleeper.delay(seconds)

    result = measure_sleep_drain(
        url,
        worker(url, pool, concurrency),
        lambda: noop.delay(),
        enqueue_sleepers,
        int(args["n"]),
        float(args["timeout"]),
        concurrency,
        setting,
    )
    app.close()
    return result


def latency(args: dict[str, Any]) -> dict[str, Any]:
    """Pick-up latency of an idle worker (kombu's BRPOP loop)."""
    url = args["redis_url"]
    pool, concurrency = DRAIN_POOL
    result = measure_latency(
        url,
        worker(url, pool, concurrency),
        lambda: probe.delay(),
        int(args["samples"]),
        float(args["timeout"]),
        f"--pool {pool} --concurrency {concurrency}",
    )
    app.close()
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
    # ``celery_peer.*``, not ``__main__.*``.
    import celery_peer

    run(celery_peer.WORKLOADS)
