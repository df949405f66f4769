"""HTTP API benchmark: submit latency at a fixed rate, and batch submit throughput.

Runs a real ``uvicorn`` (a separate process, the app from ``create_app``) against a real Redis on
loopback, and drives it with ``httpx`` over keep-alive connections:

1. **single submits** — ``POST /api/v1/tasks/summarize/`` at a fixed rate (default 200/s) for a
   fixed time, open loop: each request is due at ``t0 + i / rate``, and its latency is measured
   from that due time (so a stalled server cannot hide its queueing: no coordinated omission).
   The load generator is a minimal keep-alive HTTP/1.1 client (:class:`RawConnection`), so the
   figures are the server's, not httpx's. Reports p50 / p90 / p99 / max in milliseconds.
   Target: p99 <= 10 ms at 200/s.
2. **batches** — ``POST /api/v1/tasks/batch`` with 1,000 summarize tasks per request (each with its
   own idempotency key), ``--batches`` requests from ``--batch-concurrency`` clients. Reports
   tasks/s. Target: >= 5,000 tasks/s.

Usage::

    python benchmarks/bench_api.py --redis-url redis://127.0.0.1:6379/12 [--rate 200]
        [--seconds 10] [--batches 20] [--batch-size 1000] [--batch-concurrency 2] [--json]

Everything the run writes lives under a fresh key prefix that is deleted at the end; no worker
runs, so tasks stay PENDING. The exit status is 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from bench_support import delete_prefix, percentile, start_server

log = logging.getLogger("bench_api")

REPO = Path(__file__).resolve().parent.parent
TEXT = (
    "The river authority opened the northern locks on Tuesday after a week of rain. "
    "Barges that had waited since Friday moved through by evening."
)


class RawConnection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for the load generator.

    httpx costs about a millisecond of client CPU per request, which on a small machine makes
    the load generator, not the server, the bottleneck at a few hundred requests a second; this
    writes the request bytes and reads the status line, headers and ``Content-Length`` body.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        """Connect to ``host:port``."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post_json(self, host: str, path: str, body: bytes) -> int:
        """POST ``body`` as JSON and return the status code (the body is read and dropped)."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


async def single_submits(url: str, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    """Open-loop submits at ``rate``/s; latency from each request's due time."""
    host_port = url.split("//", 1)[1]
    host, port = host_port.split(":")[0], int(host_port.split(":")[1])
    body = json.dumps({"content": TEXT}).encode()
    latencies: list[float] = []
    errors = 0
    error_statuses: dict[str, int] = {}
    idle: list[RawConnection] = [await RawConnection.open(host, port) for _ in range(8)]
    # FIFO reuse (pop from the front) keeps every pooled connection busy, so none idles out.

    async def one(due: float, record: bool) -> None:
        nonlocal errors
        conn = idle.pop(0) if idle else await RawConnection.open(host, port)
        try:
            try:
                status = await conn.post_json(host_port, "/api/v1/tasks/summarize/", body)
            except (ConnectionError, asyncio.IncompleteReadError):
                # The server closed an idle keep-alive connection: reconnect once.
                conn.close()
                conn = await RawConnection.open(host, port)
                status = await conn.post_json(host_port, "/api/v1/tasks/summarize/", body)
        except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
            errors += 1
            error_statuses[type(exc).__name__] = error_statuses.get(type(exc).__name__, 0) + 1
            conn.close()
            return
        elapsed = (time.perf_counter() - due) * 1000.0
        idle.append(conn)
        if status != 201:
            errors += 1
            error_statuses[str(status)] = error_statuses.get(str(status), 0) + 1
        elif record:
            latencies.append(elapsed)

    total = int(rate * (warmup + seconds))
    start = time.perf_counter() + 0.2
    tasks: list[asyncio.Task[None]] = []
    for i in range(total):  # open loop: launch each request at its due time
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, i >= rate * warmup)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for conn in idle:
        conn.close()
    latencies.sort()
    return {
        "rate": rate,
        "seconds": seconds,
        "requests": len(latencies),
        "errors": errors,
        "error_statuses": error_statuses,
        "achieved_rate": round(total / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p90_ms": round(percentile(latencies, 0.90), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "max_ms": round(latencies[-1], 3) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 3) if latencies else None,
    }


async def batches(url: str, count: int, size: int, concurrency: int) -> dict[str, Any]:
    """``count`` batch requests of ``size`` tasks from ``concurrency`` clients; tasks/s."""
    run = uuid.uuid4().hex[:8]
    bodies = [
        json.dumps(
            {
                "tasks": [
                    {
                        "task_type": "summarize",
                        "payload": {"content": TEXT},
                        "idempotency_key": f"bench-{run}-{b}-{i}",
                    }
                    for i in range(size)
                ]
            }
        ).encode()
        for b in range(count)
    ]
    per_request: list[float] = []
    accepted = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            r = await client.post(
                "/api/v1/tasks/batch", content=body, headers={"content-type": "application/json"}
            )
            per_request.append((time.perf_counter() - t0) * 1000.0)
            if r.status_code != 201:
                raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
            accepted += int(r.json()["accepted"])

    async with httpx.AsyncClient(base_url=url, timeout=60) as warm:
        await warm.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"task_type": "demo.noop"} for _ in range(10)]},
        )
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for _ in range(concurrency)]
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        elapsed = time.perf_counter() - t0
    finally:
        for c in clients:
            await c.aclose()
    per_request.sort()
    return {
        "batch_size": size,
        "requests": count,
        "concurrency": concurrency,
        "tasks": accepted,
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(accepted / elapsed, 1),
        "request_p50_ms": round(percentile(per_request, 0.5), 1),
        "request_max_ms": round(per_request[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TASKFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
    )
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    prefix = f"tfbench{uuid.uuid4().hex[:8]}"
    proc, url = start_server(
        "--redis-url", args.redis_url, "--workers", "0", env={"TASKFLOW_KEY_PREFIX": prefix}
    )
    try:
        single = asyncio.run(single_submits(url, args.rate, args.seconds, args.warmup))
        batch = asyncio.run(batches(url, args.batches, args.batch_size, args.batch_concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        delete_prefix(args.redis_url, prefix)
    ok = single["errors"] == 0 and single["p99_ms"] <= 10.0 and batch["tasks_per_s"] >= 5000.0
    result = {"single_submit": single, "batch_submit": batch, "targets_met": ok}
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        log.info(
            "single submits at %.0f/s for %.0f s: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, "
            "max %.2f ms (%d requests, %d errors) [target p99 <= 10 ms]",
            single["rate"], single["seconds"], single["p50_ms"], single["p90_ms"],
            single["p99_ms"], single["max_ms"] or 0.0, single["requests"], single["errors"],
        )  # fmt: skip
        log.info(
            "batch submits: %d tasks in %d requests of %d (%d clients): %.0f tasks/s, "
            "%.1f ms per request (p50) [target >= 5,000 tasks/s]",
            batch["tasks"], batch["requests"], batch["batch_size"], batch["concurrency"],
            batch["tasks_per_s"], batch["request_p50_ms"],
        )  # fmt: skip
        log.info("targets met: %s", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
