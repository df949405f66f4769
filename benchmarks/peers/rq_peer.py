"""RQ peer: sync jobs on Redis lists, one ``rq worker`` process.

Producer: ``Queue.enqueue_many`` (RQ's batch API: one pipeline per 1,000 jobs) for bulk enqueues,
``Queue.enqueue`` for single latency probes.  Worker: ``rq worker``.  RQ runs one job at a time per
worker process; the default ``Worker`` forks a work horse per job, ``SimpleWorker`` runs the job in
the worker process itself, which is RQ's fastest single-process setting.  Tasks reach Redis through
the job's own connection.
"""

from __future__ import annotations

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
    sync_client,
)
from rq import Queue, get_current_job

QUEUE_NAME = "bench"
CHUNK = 1_000
FAST_WORKER = "rq.worker.SimpleWorker"
"""Worker class for the no-op drain and the latency probe (no fork per job)."""


def _incr_done() -> None:
    job = get_current_job()
    assert job is not None
    job.connection.incr(DONE_KEY)


def noop(payload: str = "") -> None:
    """The no-op task: only records its completion."""
    _incr_done()


def sleeper(seconds: float) -> None:
    """Sleep (blocking: RQ jobs are sync), then record completion."""
    time.sleep(seconds)
    _incr_done()


def probe() -> None:
    """Latency probe: the first line stamps the start time."""
    started = time.time()
    job = get_current_job()
    assert job is not None
    job.connection.rpush(LATENCY_KEY, repr(started))


def worker(url: str, worker_class: str | None) -> WorkerProcess:
    """An ``rq worker`` process, with RQ's default worker class unless one is given."""
    cmd = [str(Path(sys.executable).with_name("rq")), "worker", "--url", url, "--quiet"]
    if worker_class:
        cmd += ["--worker-class", worker_class]
    return WorkerProcess([*cmd, QUEUE_NAME], {})


def _queue(url: str) -> Queue:
    return Queue(QUEUE_NAME, connection=sync_client(url))


def _enqueue_many(queue: Queue, n: int, func: Any, args: tuple[Any, ...]) -> None:
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        queue.enqueue_many([Queue.prepare_data(func, args) for _ in range(count)])


def enqueue(args: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` no-ops carrying ``payload_bytes`` each."""
    queue = _queue(args["redis_url"])
    payload = payload_of(int(args.get("payload_bytes", 0)))

    def go() -> str:
        _enqueue_many(queue, int(args["n"]), noop, (payload,))
        return f"Queue.enqueue_many() in chunks of {CHUNK} (pipelined)"

    return measure_enqueue(go)


def drain(args: dict[str, Any]) -> dict[str, Any]:
    """Drain the queued no-ops with one ``SimpleWorker``."""
    return measure_drain(
        args["redis_url"],
        worker(args["redis_url"], FAST_WORKER),
        int(args["n"]),
        float(args["timeout"]),
        "SimpleWorker (no fork), 1 job at a time",
    )


def sleep_drain(args: dict[str, Any]) -> dict[str, Any]:
    """500 x sleep on RQ's default forking worker; no tuned variant exists in one process."""
    if args["mode"] != "default":
        return {
            "skipped": "RQ runs one job at a time per worker process; more concurrency means "
            "more processes (rq worker-pool), which is outside the one-process rule"
        }
    url = args["redis_url"]
    queue = _queue(url)
    return measure_sleep_drain(
        url,
        worker(url, None),
        lambda: queue.enqueue(noop),
        lambda n: _enqueue_many(queue, n, sleeper, (float(args["sleep_s"]),)),
        int(args["n"]),
        float(args["timeout"]),
        1,
        "Worker (fork per job), 1 job at a time (default)",
    )


def latency(args: dict[str, Any]) -> dict[str, Any]:
    """Pick-up latency of an idle ``SimpleWorker`` (blocking pop)."""
    url = args["redis_url"]
    queue = _queue(url)
    return measure_latency(
        url,
        worker(url, FAST_WORKER),
        lambda: queue.enqueue(probe),
        int(args["samples"]),
        float(args["timeout"]),
        "SimpleWorker (no fork)",
    )


WORKLOADS = {
    "enqueue": enqueue,
    "memory": enqueue,
    "drain": drain,
    "sleep_drain": sleep_drain,
    "latency": latency,
}
"""The workloads this driver offers (the ``memory`` run is an ``enqueue`` with a 1 KB payload)."""

if __name__ == "__main__":
    # Re-import under the module's real name: workers must find the tasks as ``rq_peer.*``,
    # not ``__main__.*``.
    import rq_peer

    run(rq_peer.WORKLOADS)
