"""Shared plumbing for the peer drivers in this folder.

Each peer driver is a script run as ``python <peer>.py <workload> '<json args>'`` inside the
peer's own venv.  It prints exactly one JSON line on stdout: the workload's result, or
``{"error": "..."}`` (with a non-zero exit code).  This module holds what every driver shares:
the argv/JSON protocol, the Redis keys the benchmark tasks write to, the worker-process handling
and the measuring loops.  It depends on redis-py only (every peer venv has it), and it only uses
redis-py's sync API, which is the same in every version the peers pin.

Completion is detected the same way for every library: each benchmark task does ``INCR
bench:done`` as its last step, and the driver polls that counter.  Pick-up latency probes do
``RPUSH bench:lat <time.time()>`` as their first step, and the driver waits with ``BLPOP``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

PEERS_DIR = Path(__file__).resolve().parent

DONE_KEY = "bench:done"
"""Counter every benchmark task increments when it finishes."""

LATENCY_KEY = "bench:lat"
"""List that latency probes push their start time (``time.time()``) onto."""

POLL_S = 0.002
"""How often the driver polls the completion counter."""

Workload = Callable[[dict[str, Any]], dict[str, Any]]


def payload_of(size: int) -> str:
    """An ASCII payload of exactly ``size`` bytes."""
    return "x" * size


def env_int(name: str, default: int) -> int:
    """An integer setting passed to a worker process through the environment."""
    value = os.environ.get(name)
    return int(value) if value else default


def redis_url() -> str:
    """The benchmark's Redis URL, from ``BENCH_REDIS_URL`` (set by the harness for the driver and
    passed on to every worker process); there is deliberately no fallback to a default server."""
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        raise RuntimeError("BENCH_REDIS_URL is not set: run the drivers through bench_queue.py")
    return url


def sync_client(url: str) -> redis.Redis:
    """A plain sync client for the driver's own bookkeeping (counters, INFO)."""
    return redis.Redis.from_url(url)


class WorkerProcess:
    """One worker process of the library under test, started and stopped by the driver.

    The worker stays in the driver's process group, so when the harness kills that group (on a
    timeout or after the driver exits) the worker and any children it forked die with it.
    """

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str]) -> None:
        self.cmd = list(cmd)
        self.env = {**os.environ, **env, "PYTHONPATH": str(PEERS_DIR)}
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in __exit__
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> WorkerProcess:
        """Spawn the worker; ``started_at`` is the ``perf_counter`` just before the spawn."""
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=PEERS_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
        )
        return self

    def check_alive(self) -> None:
        """Raise if the worker has exited (with the end of its output in the message)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.output_tail()}")

    def output_tail(self, lines: int = 8) -> str:
        """The last lines the worker wrote to stdout/stderr."""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self, grace_s: float = 10.0) -> None:
        """Ask the worker to stop (SIGTERM), then kill it if it does not within ``grace_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()


def wait_done(
    client: redis.Redis, target: int, deadline: float, worker: WorkerProcess | None = None
) -> float:
    """Poll ``bench:done`` until it reaches ``target``; return the ``perf_counter`` then."""
    while True:
        raw = client.get(DONE_KEY)
        if raw is not None and int(raw) >= target:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            count = int(raw) if raw is not None else 0
            raise TimeoutError(f"only {count}/{target} tasks completed before the deadline")
        if worker is not None:
            worker.check_alive()
        time.sleep(POLL_S)


def measure_enqueue(enqueue_all: Callable[[], str]) -> dict[str, Any]:
    """Time ``enqueue_all`` (which returns a description of the enqueue method it used)."""
    start = time.perf_counter()
    method = enqueue_all()
    return {"seconds": time.perf_counter() - start, "method": method}


def measure_drain(
    url: str, worker: WorkerProcess, n: int, timeout: float, setting: str
) -> dict[str, Any]:
    """Start ``worker`` on a queue already holding ``n`` no-ops; time until all have run.

    ``seconds`` runs from just before the worker is spawned (so it includes the worker's start-up)
    to the moment the counter reaches ``n``; ``startup_s`` is the part until the first completion.
    """
    client = sync_client(url)
    deadline = time.perf_counter() + timeout
    with worker:
        first = wait_done(client, 1, deadline, worker)
        last = wait_done(client, n, deadline, worker)
    return {
        "seconds": last - worker.started_at,
        "startup_s": first - worker.started_at,
        "steady_rate": (n - 1) / (last - first) if last > first else None,
        "setting": setting,
    }


def measure_sleep_drain(
    url: str,
    worker: WorkerProcess,
    enqueue_warmup: Callable[[], object],
    enqueue_sleepers: Callable[[int], object],
    n: int,
    timeout: float,
    concurrency: int,
    setting: str,
) -> dict[str, Any]:
    """Time ``n`` sleeping tasks on a warm, idle worker, from the first enqueue call.

    The worker is started and has finished one warm-up no-op before the clock starts, so start-up
    is excluded; enqueueing the ``n`` tasks is included (``enqueue_s`` says how long it took).
    """
    client = sync_client(url)
    deadline = time.perf_counter() + timeout
    with worker:
        enqueue_warmup()
        wait_done(client, 1, deadline, worker)
        start = time.perf_counter()
        enqueue_sleepers(n)
        enqueued = time.perf_counter()
        last = wait_done(client, n + 1, deadline, worker)
    return {
        "seconds": last - start,
        "enqueue_s": enqueued - start,
        "concurrency": concurrency,
        "setting": setting,
    }


def measure_latency(
    url: str,
    worker: WorkerProcess,
    enqueue_probe: Callable[[], object],
    samples: int,
    timeout: float,
    setting: str,
    idle_poll_s: float = 0.0,
) -> dict[str, Any]:
    """Pick-up latency on an idle worker: enqueue one probe at a time and wait for it to start.

    A sample is ``probe's time.time() at its first line - time.time() just before the enqueue
    call``.  One unmeasured probe warms the worker up first.  Between samples the driver pauses
    for a random 0 to ``max(20 ms, idle_poll_s)``: ``idle_poll_s`` is the library's idle polling
    interval (0 for libraries that block on the queue), so the enqueue lands at a random phase of
    the poll instead of right after one.
    """
    client = sync_client(url)
    deadline = time.perf_counter() + timeout
    values: list[float] = []
    rng = random.Random(7)
    with worker:
        for index in range(samples + 1):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"latency: only {len(values)}/{samples} samples in time")
            sent = time.time()
            enqueue_probe()
            popped = client.blpop([LATENCY_KEY], timeout=min(remaining, 30.0))
            if popped is None:
                worker.check_alive()
                raise TimeoutError("latency probe was not picked up within 30 s")
            if index > 0:
                values.append(float(popped[1]) - sent)
            time.sleep(rng.uniform(0.0, max(0.02, idle_poll_s)))
    return {"samples": values, "setting": setting, "idle_gap_max_s": max(0.02, idle_poll_s)}


def run(workloads: Mapping[str, Workload]) -> None:
    """Entry point of a peer driver: dispatch argv to a workload and print its JSON result."""
    if len(sys.argv) != 3 or sys.argv[1] not in workloads:
        names = ", ".join(workloads)
        sys.stdout.write(json.dumps({"error": f"usage: <workload> '<json>'; workloads: {names}"}))
        sys.stdout.write("\n")
        raise SystemExit(2)
    args = json.loads(sys.argv[2])
    try:
        result = workloads[sys.argv[1]](args)
    except Exception as exc:
        traceback.print_exc()
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        raise SystemExit(1) from None
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
