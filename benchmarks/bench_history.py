"""Task history in PostgreSQL: does the recorder keep up, and what does the short TTL save?

Everything on loopback: a private ``redis-server`` on a free port and a fresh database on the
PostgreSQL at ``--database-url`` (dropped afterwards).

1. ``recorder``: N no-op tasks queued, then one ``taskflow-worker`` process (one worker and the
   recorder, as a deployment runs them) drains them. Reported: the drain rate, the rate at which
   completions reach PostgreSQL, and the recorder's lag (event time in Redis -> the recording
   transaction, ``task_events.recorded_at - at``) p50/p99 for the COMPLETED events. Then a paced
   run (``--rate`` tasks/s for ``--paced-seconds``), which shows the lag when the recorder is not
   working off a burst.
2. ``memory``: M no-op tasks finished and kept (the 7-day default), Redis ``used_memory``; then a
   recorder stores them, which gives each one the short TTL, the retention sweep runs once the
   short TTL (shortened to a few seconds for the run) is over, and ``used_memory`` again.

Usage::

    python benchmarks/bench_history.py [--tasks 20000] [--memory-tasks 50000] [--recorders 1]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis as redis_sync
from bench_support import REPO, free_port, percentile, wait_until
from redis.asyncio import Redis

from taskflow_server.config import Settings
from taskflow_server.history.db import HistoryDB
from taskflow_server.history.recorder import Recorder
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PREFIX = "benchhist"


def _with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


class Stack:
    """The private Redis, the fresh database and the worker processes of one run."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.dir = tempfile.mkdtemp(prefix="bench-history-")
        self.port = free_port()
        exe = shutil.which("redis-server") or "redis-server"
        self.redis_proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.redis_url = f"redis://127.0.0.1:{self.port}/0"
        self.db_name = f"bench_history_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.database_url = _with_db(admin_url, self.db_name)
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(self, *, database: bool, workers: int = 1, **env: str) -> subprocess.Popen[bytes]:
        """A ``taskflow-worker`` process (with the recorder when ``database``; ``workers=0``:
        a recorder alone)."""
        full = {
            k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "OPENROUTER_"))
        }
        full.update(
            TASKFLOW_REDIS_URL=self.redis_url,
            TASKFLOW_KEY_PREFIX=PREFIX,
            TASKFLOW_LOG_LEVEL="WARNING",
            TASKFLOW_EVENTS_MAXLEN="400000",
            **env,
        )
        if database:
            full["TASKFLOW_DATABASE_URL"] = self.database_url
        code = (
            f"from taskflow_server.cli import worker_main; worker_main(['--workers', '{workers}'])"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], env=full, cwd=REPO)
        self.procs.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def close(self) -> None:
        self.stop_workers()
        self.redis_proc.terminate()
        self.redis_proc.wait(timeout=10)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.dir, ignore_errors=True)


def _count(url: str, sql: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return -1


def _lags(url: str, since: dt.datetime | None = None) -> list[float]:
    sql = "SELECT extract(epoch FROM recorded_at - at) FROM task_events WHERE state = 'COMPLETED'"
    with psycopg.connect(url) as conn:
        if since is None:
            rows = conn.execute(sql).fetchall()
        else:
            rows = conn.execute(sql + " AND at >= %s", (since,)).fetchall()
    return [float(r[0]) for r in rows]


async def _submit(queue: TaskQueue, n: int) -> None:
    for start in range(0, n, 2000):
        await queue.submit_many([NewTask("demo.noop", {})] * min(2000, n - start))


async def bench_recorder(
    stack: Stack, n: int, rate: int, paced_seconds: float, recorders: int = 1
) -> dict[str, Any]:
    """Burst drain of ``n`` no-ops with the recorder on, then a paced run. ``recorders`` - 1
    recorder-only processes (``taskflow-worker --workers 0``) run beside the worker's own."""
    for _ in range(recorders - 1):
        stack.worker(database=True, workers=0)
    redis = Redis.from_url(stack.redis_url)
    queue = TaskQueue(redis, Keys(PREFIX), Settings(_env_file=None, key_prefix=PREFIX))  # type: ignore[call-arg]
    await queue.load()
    await _submit(queue, n)
    stack.worker(database=True)
    url = stack.database_url
    completed_events = "SELECT count(*) FROM task_events WHERE state = 'COMPLETED'"
    wait_until(lambda: _count(url, completed_events) >= n, "the burst to be recorded", 300)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(t.finished_at) - min(t.started_at)),"
            " extract(epoch FROM max(e.recorded_at) - min(t.started_at))"
            " FROM tasks t JOIN task_events e ON e.task_id = t.id AND e.state = 'COMPLETED'"
        ).fetchone()
    assert row is not None
    drained, recorded = float(row[0]), float(row[1])
    burst_lags = _lags(url)

    # Paced: `rate` tasks/s in 10 ms slices while the same worker + recorder run.
    started = dt.datetime.now(dt.UTC)
    per_slice = max(1, rate // 100)
    t1 = time.monotonic()
    sent = 0
    while time.monotonic() - t1 < paced_seconds:
        await queue.submit_many([NewTask("demo.noop", {})] * per_slice)
        sent += per_slice
        await asyncio.sleep(max(0.0, t1 + sent / rate - time.monotonic()))
    wait_until(
        lambda: _count(url, completed_events) >= n + sent, "the paced run to be recorded", 120
    )
    paced_lags = _lags(url, started)
    await redis.aclose()
    stack.stop_workers()
    return {
        "tasks": n,
        "recorders": recorders,
        "drain_s": round(drained, 3),
        "drain_per_s": round(n / drained),
        "recorded_s": round(recorded, 3),
        "recorded_completions_per_s": round(n / recorded),
        "events_recorded": _count(url, "SELECT count(*) FROM task_events"),
        "burst_lag_p50_ms": round(percentile(burst_lags, 0.5) * 1000, 1),
        "burst_lag_p99_ms": round(percentile(burst_lags, 0.99) * 1000, 1),
        "paced_rate_per_s": round(sent / paced_seconds),
        "paced_tasks": sent,
        "paced_lag_p50_ms": round(percentile(paced_lags, 0.5) * 1000, 1),
        "paced_lag_p99_ms": round(percentile(paced_lags, 0.99) * 1000, 1),
    }


async def bench_memory(stack: Stack, m: int, short_ttl: int) -> dict[str, Any]:
    """``m`` finished no-ops: used_memory kept 7 days vs recorded, short-lived and swept."""
    redis = Redis.from_url(stack.redis_url)
    await redis.flushdb()
    settings = Settings(_env_file=None, key_prefix=PREFIX, events_maxlen=400_000)  # type: ignore[call-arg]
    queue = TaskQueue(redis, Keys(PREFIX), settings)
    await queue.load()
    empty = int((await redis.info("memory"))["used_memory"])
    await _submit(queue, m)
    stack.worker(database=False)
    wait_until(lambda: _completed(stack.redis_url) >= m, "the memory drain", 300)
    stack.stop_workers()
    kept = int((await redis.info("memory"))["used_memory"])
    stream = int(await redis.memory_usage(queue.keys.events) or 0)
    assert await queue.sweep_finished(limit=m) == 0  # the 7-day default keeps them all

    db = HistoryDB(stack.database_url)
    await db.open()
    await db.migrate()
    # The mechanism as shipped (re-scored finished set + the unchanged sweep); only the TTL is
    # shortened from the default hour so the run does not wait for it.
    short = settings.model_copy(update={"recorded_ttl_seconds": short_ttl})
    recorder = Recorder(redis, queue.keys, db, short, consumer="bench")
    t0 = time.monotonic()
    while await recorder.step():
        pass
    record_s = time.monotonic() - t0
    await db.close()
    await asyncio.sleep(short_ttl + 0.5)
    swept = 0
    while True:
        n = await queue.sweep_finished(limit=5000)
        swept += n
        if n < 5000:
            break
    after = int((await redis.info("memory"))["used_memory"])
    stream_after = int(await redis.memory_usage(queue.keys.events) or 0)
    await redis.aclose()
    return {
        "tasks": m,
        "used_memory_empty_bytes": empty,
        "used_memory_kept_bytes": kept,
        "event_log_bytes_kept": stream,
        "recorded_in_s": round(record_s, 2),
        "swept": swept,
        "used_memory_after_bytes": after,
        "event_log_bytes_after": stream_after,
    }


def _completed(url: str) -> int:
    """Completed tasks by the state counters (raises while Redis does not answer)."""
    client = redis_sync.Redis.from_url(url, socket_connect_timeout=1)
    try:
        raw = client.hget("{" + PREFIX + "}:counts", "COMPLETED")
        return int(raw or 0)  # type: ignore[arg-type]
    finally:
        client.close()


def main() -> None:
    """Run both parts once and write ``results/history-<date>.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="burst drain size")
    parser.add_argument("--rate", type=int, default=1_000, help="paced run, tasks per second")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--memory-tasks", type=int, default=50_000)
    parser.add_argument("--short-ttl", type=int, default=5, help="seconds, for the memory part")
    parser.add_argument(
        "--recorders", type=int, default=1, help="recorder processes in the drain (>= 1)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TASKFLOW_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"),
        help="a PostgreSQL to create the run's database on",
    )  # fmt: skip
    args = parser.parse_args()
    stack = Stack(args.database_url)
    try:
        wait_until(lambda: _completed(stack.redis_url) >= 0, "redis-server to answer", 10)
        rec = asyncio.run(
            bench_recorder(stack, args.tasks, args.rate, args.paced_seconds, args.recorders)
        )
        print(json.dumps({"recorder": rec}), flush=True)
        mem = asyncio.run(bench_memory(stack, args.memory_tasks, args.short_ttl))
        print(json.dumps({"memory": mem}), flush=True)
    finally:
        stack.close()
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"history-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps({"recorder": rec, "memory": mem, "args": vars(args)}, indent=2))
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
