"""Dramatiq peer: Redis broker, one ``dramatiq`` worker process with a thread pool.

Producer: ``Actor.send`` one at a time (Dramatiq has no pipelined bulk send; ``group`` sends each
message in turn).  Worker: ``dramatiq dramatiq_peer --processes 1 --threads C``; Dramatiq's
defaults are one process per CPU and 8 threads each, so the "default" run keeps 8 threads and
only pins the process count to one.  The Redis broker's idle consumer polls with an exponential
back-off of up to ``worker_timeout`` (1 s by default).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import dramatiq
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
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)

DEFAULT_THREADS = 8
"""Dramatiq's default ``--threads``."""

BEST_THREADS = 16
"""Threads for the no-op drain and the latency probe."""

TUNED_SLEEP_THREADS = 500
"""Threads for the tuned sleep run: one per task."""

IDLE_POLL_S = 1.0
"""Upper bound of the idle consumer's back-off (``worker_timeout``, 1000 ms by default)."""

_counter = redis.Redis.from_url(redis_url())
"""Client for the benchmark counter, shared by the worker threads."""


@dramatiq.actor
def noop(payload: str = "") -> None:
    """The no-op task: only records its completion."""
    _counter.incr(DONE_KEY)


@dramatiq.actor
def sleeper(seconds: float) -> None:
    """Sleep (blocking; the worker threads provide the concurrency), then record completion."""
    time.sleep(seconds)
    _counter.incr(DONE_KEY)


@dramatiq.actor
def probe() -> None:
    """Latency probe: the first line stamps the start time."""
    started = time.time()
    _counter.rpush(LATENCY_KEY, repr(started))


def worker(url: str, threads: int) -> WorkerProcess:
    """A ``dramatiq`` worker: one process with ``threads`` worker threads."""
    cmd = [
        str(Path(sys.executable).with_name("dramatiq")),
        "dramatiq_peer",
        "--processes", "1",
        "--threads", str(threads),
    ]  # fmt: skip
    return WorkerProcess(cmd, {"BENCH_REDIS_URL": url})


def enqueue(args: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` no-ops carrying ``payload_bytes`` each."""
    payload = payload_of(int(args.get("payload_bytes", 0)))
    n = int(args["n"])

    def go() -> str:
        for _ in range(n):
            noop.send(payload)
        return "Actor.send() one at a time"

    result = measure_enqueue(go)
    broker.close()
    return result


def drain(args: dict[str, Any]) -> dict[str, Any]:
    """Drain the queued no-ops with one worker process."""
    threads = int(args.get("concurrency", BEST_THREADS))
    return measure_drain(
        args["redis_url"],
        worker(args["redis_url"], threads),
        int(args["n"]),
        float(args["timeout"]),
        f"--processes 1 --threads {threads}",
    )


def sleep_drain(args: dict[str, Any]) -> dict[str, Any]:
    """500 x sleep at the default 8 threads or at one thread per task."""
    url = args["redis_url"]
    default = args["mode"] == "default"
    threads = DEFAULT_THREADS if default else int(args.get("concurrency", TUNED_SLEEP_THREADS))
    seconds = float(args["sleep_s"])

    def enqueue_sleepers(n: int) -> None:
        for _ in range(n):
            sleeper.send(seconds)

    result = measure_sleep_drain(
        url,
        worker(url, threads),
        lambda: noop.send(),
        enqueue_sleepers,
        int(args["n"]),
        float(args["timeout"]),
        threads,
        f"--processes 1 --threads {threads}" + (" (default threads)" if default else ""),
    )
    broker.close()
    return result


def latency(args: dict[str, Any]) -> dict[str, Any]:
    """Pick-up latency of an idle worker (polling with back-off up to 1 s)."""
    url = args["redis_url"]
    threads = int(args.get("concurrency", BEST_THREADS))
    result = measure_latency(
        url,
        worker(url, threads),
        lambda: probe.send(),
        int(args["samples"]),
        float(args["timeout"]),
        f"--processes 1 --threads {threads}, worker_timeout=1000 ms (default)",
        idle_poll_s=IDLE_POLL_S,
    )
    broker.close()
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
    # Re-import under the module's real name: the worker must find the actors in
    # ``dramatiq_peer``, not ``__main__``.
    import dramatiq_peer

    run(dramatiq_peer.WORKLOADS)
