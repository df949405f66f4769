"""SDK overhead: submit N ``demo.noop`` tasks and wait for all of them, SDK vs raw httpx.

A ``taskflow-server`` (API + one in-process worker) runs as its own process on a real Redis,
under a fresh key prefix deleted at the end. Each round runs four clients on the same server,
in rotating order:

* ``raw-sync``   — ``httpx.Client``: ``POST /api/v1/tasks/batch`` in chunks of 1,000 (each item
  with its own idempotency key), then polling rounds of ``GET /api/v1/tasks/{id}`` over the tasks
  not yet finished (sequential), pausing 20 ms growing by half up to 0.5 s between rounds;
* ``sdk-sync``   — ``Client.submit_many(items)`` then ``Client.wait(tasks)`` (the same algorithm,
  plus models, retries and error mapping);
* ``raw-async`` / ``sdk-async`` — the same with ``httpx.AsyncClient`` (32 GETs in flight per
  polling round) and ``AsyncClient``.

Reported: the median wall time of each client over the rounds and the SDK's extra time relative
to raw httpx (target <= 10 %).

Usage::

    python benchmarks/bench_sdk.py --redis-url redis://127.0.0.1:6379/13 [--tasks 5000]
        [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from bench_support import delete_prefix, start_server

from taskflow_sdk import AsyncClient, Client

REPO = Path(__file__).resolve().parent.parent
CHUNK = 1000
FIRST_POLL = 0.02
MAX_POLL = 0.5
CONCURRENCY = 32
TERMINAL = {"COMPLETED", "FAILED", "DLQ", "CANCELLED"}


def _items(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"task_type": "demo.noop", "payload": {"i": i}, "idempotency_key": f"{tag}-{i}"}
        for i in range(n)
    ]


def raw_sync(url: str, n: int) -> float:
    """Submit and wait with plain ``httpx.Client`` calls; returns wall seconds."""
    items = _items(n, uuid.uuid4().hex)
    with httpx.Client(base_url=url, timeout=30) as http:
        start = time.perf_counter()
        ids: list[str] = []
        for s in range(0, n, CHUNK):
            answer = http.post("/api/v1/tasks/batch", json={"tasks": items[s : s + CHUNK]})
            answer.raise_for_status()
            ids += [item["task_id"] for item in answer.json()["items"]]
        pending = ids
        pause = FIRST_POLL
        while pending:
            still = []
            for tid in pending:
                r = http.get(f"/api/v1/tasks/{tid}")
                r.raise_for_status()
                if r.json()["state"] not in TERMINAL:
                    still.append(tid)
            pending = still
            if pending:
                time.sleep(pause)
                pause = min(pause * 1.5, MAX_POLL)
        return time.perf_counter() - start


def sdk_sync(url: str, n: int) -> float:
    """Submit and wait with :class:`Client`; returns wall seconds."""
    items = _items(n, uuid.uuid4().hex)
    with Client(url) as client:
        start = time.perf_counter()
        submitted = client.submit_many(items)
        done = client.wait(submitted.tasks)
        elapsed = time.perf_counter() - start
    assert len(done) == n and all(t.ok for t in done)
    return elapsed


async def _raw_async(url: str, n: int) -> float:
    items = _items(n, uuid.uuid4().hex)
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        start = time.perf_counter()
        ids: list[str] = []
        for s in range(0, n, CHUNK):
            answer = await http.post("/api/v1/tasks/batch", json={"tasks": items[s : s + CHUNK]})
            answer.raise_for_status()
            ids += [item["task_id"] for item in answer.json()["items"]]

        async def unfinished(tid: str) -> bool:
            async with limit:
                r = await http.get(f"/api/v1/tasks/{tid}")
            r.raise_for_status()
            return r.json()["state"] not in TERMINAL

        pending = ids
        pause = FIRST_POLL
        while pending:
            flags = await asyncio.gather(*(unfinished(t) for t in pending))
            pending = [t for t, busy in zip(pending, flags, strict=True) if busy]
            if pending:
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, MAX_POLL)
        return time.perf_counter() - start


async def _sdk_async(url: str, n: int) -> float:
    items = _items(n, uuid.uuid4().hex)
    async with AsyncClient(url) as client:
        start = time.perf_counter()
        submitted = await client.submit_many(items)
        done = await client.wait(submitted.tasks)
        elapsed = time.perf_counter() - start
    assert len(done) == n and all(t.ok for t in done)
    return elapsed


def raw_async(url: str, n: int) -> float:
    """Submit and wait with plain ``httpx.AsyncClient`` calls; returns wall seconds."""
    return asyncio.run(_raw_async(url, n))


def sdk_async(url: str, n: int) -> float:
    """Submit and wait with :class:`AsyncClient`; returns wall seconds."""
    return asyncio.run(_sdk_async(url, n))


RUNNERS: dict[str, Callable[[str, int], float]] = {
    "raw-sync": raw_sync,
    "sdk-sync": sdk_sync,
    "raw-async": raw_async,
    "sdk-async": sdk_async,
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 when both SDK clients are within 10 % of raw httpx."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TASKFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
    )
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    prefix = f"tfbench{uuid.uuid4().hex[:8]}"
    proc, url = start_server(
        "--redis-url", args.redis_url, "--workers", "1",
        env={"TASKFLOW_KEY_PREFIX": prefix, "TASKFLOW_MAX_BATCH_ITEMS": str(CHUNK)},
        wait_for_worker=True,
    )  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in RUNNERS}
    try:
        names = list(RUNNERS)
        raw_sync(url, min(500, args.tasks))  # warm-up: connections, scripts, worker
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(RUNNERS[name](url, args.tasks))
                print(f"round {r + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        delete_prefix(args.redis_url, prefix)

    median = {name: statistics.median(values) for name, values in times.items()}
    overhead = {
        "sync": median["sdk-sync"] / median["raw-sync"] - 1.0,
        "async": median["sdk-async"] / median["raw-async"] - 1.0,
    }
    figures = {
        "tasks": args.tasks,
        "rounds": args.rounds,
        "seconds": times,
        "median_s": median,
        "overhead": overhead,
        "target": 0.10,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{args.tasks} demo.noop tasks, submit + wait, median of {args.rounds} rounds")
        for name in RUNNERS:
            print(f"  {name:<10} {median[name]:7.2f} s")
        for mode, extra in overhead.items():
            print(f"  SDK overhead ({mode}): {extra:+.1%} (target <= +10%)")
    return 0 if max(overhead.values()) <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
