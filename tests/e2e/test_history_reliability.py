"""The history recorder in real processes against a PostgreSQL of the test's own.

* PostgreSQL stopped for 30 s while tasks run, then started again: every task recorded, none
  twice, each with the state Redis holds; the outage logged once, the recovery once.
* A recorder process SIGKILLed while it holds a batch: the other recorder process takes its
  pending events over (``XAUTOCLAIM``) and every task is recorded.
* Redis memory stays bounded while PostgreSQL is away: the event log keeps its cap, the group's
  pending list stays within one batch, and the tasks that fell out of the log are reconciled
  from Redis when PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from e2e_support import POLL, RedisServer, Spawner, log_text, worker_env
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pg_support import PrivatePostgres, create_database, start_private_postgres
from support import eventually, make_settings
from taskflow_server.history.recorder import GROUP
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test's own, which it may stop and start again."""
    try:
        server = start_private_postgres()
    except (RuntimeError, OSError) as exc:
        reason = f"cannot start a private PostgreSQL for the reliability tests: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.destroy()


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of one query, or ``[]`` while the database does not answer (or lacks the schema)."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return list(conn.execute(sql, args or None).fetchall())
    except psycopg.Error:
        return []


def recorded_count(url: str, state: str = "COMPLETED") -> int:
    rows = query(url, "SELECT count(*) FROM tasks WHERE state = %s", state)
    return int(rows[0][0]) if rows else -1


async def stream_task_events(redis: Redis, keys: Keys) -> set[str]:
    """Ids of every event with a task in the (uncapped in these tests) event log."""
    return {
        eid.decode() for eid, fields in await redis.xrange(keys.events) if fields.get(b"task_id")
    }


async def assert_recorded_once(redis: Redis, queue: TaskQueue, url: str, ids: set[str]) -> None:
    """Rows == tasks; one row per event and no event twice; each final state as Redis says."""
    rows = dict(query(url, "SELECT id, state FROM tasks"))
    assert set(rows) == ids
    records = await queue.get_many(sorted(ids))
    assert all(r is not None and rows[r.id] == r.state for r in records)
    events = {r[0] for r in query(url, "SELECT event_id FROM task_events")}
    assert events == await stream_task_events(redis, queue.keys)
    dupes = query(
        url,
        "SELECT task_id, type, state, at FROM task_events GROUP BY 1, 2, 3, 4 HAVING count(*) > 1",
    )
    assert dupes == []
    attempts = query(url, "SELECT outcome, count(*) FROM attempts GROUP BY 1")
    assert attempts == [("COMPLETED", len(ids))]


def recorder_env(redis_url: str, prefix: str, database_url: str, **extra: str) -> dict[str, str]:
    settings = {"TASKFLOW_DATABASE_URL": database_url, "TASKFLOW_HISTORY_BATCH": "50", **extra}
    return worker_env(redis_url, prefix, **settings)


async def test_postgres_down_for_30_s_loses_and_doubles_nothing(
    redis: Redis, redis_url: str, spawn: Spawner, private_pg: PrivatePostgres
) -> None:
    prefix = "tfhist-outage"
    url = create_database(private_pg.url)
    queue = TaskQueue(redis, Keys(prefix), make_settings(key_prefix=prefix))
    await queue.load()
    proc = spawn("taskflow-worker", env=recorder_env(redis_url, prefix, url))
    tasks = [NewTask("demo.sleep", {"seconds": 0.05}) for _ in range(300)]
    ids = {s.task_id for s in await queue.submit_many(tasks[:100])}

    await eventually(lambda: recorded_count(url) > 0, "the first rows", 60, every=POLL)
    private_pg.stop()  # while tasks run and batches are written
    down = time.monotonic()
    ids |= {s.task_id for s in await queue.submit_many(tasks[100:])}

    async def all_done() -> bool:
        return (await queue.counts())["COMPLETED"] == 300

    await eventually(all_done, "the queue to finish without PostgreSQL", 30, every=POLL)
    assert proc.poll() is None
    while time.monotonic() - down < 30:  # hold the outage for 30 s, watching the worker live
        assert proc.poll() is None, log_text(proc)[-2000:]
        await asyncio.sleep(0.5)
    assert recorded_count(url) == -1  # still down
    private_pg.start()

    await eventually(lambda: recorded_count(url) == 300, "every task recorded", 45, every=POLL)

    async def nothing_pending() -> bool:
        return (await redis.xpending(queue.keys.events, GROUP))["pending"] == 0

    await eventually(nothing_pending, "the recorder to acknowledge everything", 10, every=POLL)
    await assert_recorded_once(redis, queue, url, ids)
    text = log_text(proc)
    assert text.count("history: PostgreSQL is unavailable") == 1, text[-3000:]
    assert text.count("history: recording again after") == 1, text[-3000:]


async def test_a_sigkilled_recorder_s_events_are_taken_over(
    redis: Redis, redis_url: str, spawn: Spawner, private_pg: PrivatePostgres
) -> None:
    prefix = "tfhist-kill"
    url = create_database(private_pg.url)
    queue = TaskQueue(redis, Keys(prefix), make_settings(key_prefix=prefix))
    await queue.load()
    ids = {
        s.task_id
        for s in await queue.submit_many(
            [NewTask("demo.sleep", {"seconds": 0.2}) for _ in range(1000)]
        )
    }
    env = recorder_env(redis_url, prefix, url, TASKFLOW_HISTORY_BATCH="20")
    victim = spawn("taskflow-worker", "--workers", "0", env=env)
    survivor = spawn("taskflow-worker", "--workers", "0", env=env)
    spawn("taskflow-worker", env=worker_env(redis_url, prefix, TASKFLOW_CONCURRENCY="20"))

    async def victim_holds_a_batch() -> list[str]:
        try:
            consumers = await redis.xinfo_consumers(queue.keys.events, GROUP)
        except ResponseError:  # no group yet: the recorders are starting
            return []
        for c in consumers:
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if f"-{victim.pid}-" in name and c["pending"] > 0:
                os.kill(victim.pid, signal.SIGKILL)
                pending = await redis.xpending_range(queue.keys.events, GROUP, "-", "+", 100, name)
                return [p["message_id"].decode() for p in pending]
        return []

    held = await eventually(victim_holds_a_batch, "the victim to hold a batch", 40, every=0.005)
    victim.wait(timeout=10)

    async def all_done() -> bool:
        return (await queue.counts())["COMPLETED"] == 1000

    await eventually(all_done, "the tasks to finish", 60, every=POLL)
    await eventually(lambda: recorded_count(url) == 1000, "every task recorded", 60, every=POLL)

    async def nothing_pending() -> bool:
        return (await redis.xpending(queue.keys.events, GROUP))["pending"] == 0

    await eventually(nothing_pending, "the victim's events taken over", 40, every=POLL)
    recorded = {r[0] for r in query(url, "SELECT event_id FROM task_events")}
    assert set(held) <= recorded
    assert survivor.poll() is None
    await assert_recorded_once(redis, queue, url, ids)


async def test_redis_memory_stays_bounded_while_postgres_is_away(
    spawn: Spawner, private_pg: PrivatePostgres, figures: dict[str, Any]
) -> None:
    prefix, cap, batch, n = "tfhist-mem", 1000, 100, 3000
    server = RedisServer(appendonly=False).start()
    try:
        url = create_database(private_pg.url)
        redis = Redis.from_url(server.url, decode_responses=False)
        queue = TaskQueue(redis, Keys(prefix), make_settings(key_prefix=prefix))
        await queue.load()
        env = recorder_env(
            server.url,
            prefix,
            url,
            TASKFLOW_EVENTS_MAXLEN=str(cap),
            TASKFLOW_HISTORY_BATCH=str(batch),
            TASKFLOW_CONCURRENCY="100",
        )
        proc = spawn("taskflow-worker", env=env)
        await eventually(
            lambda: query(url, "SELECT 1 FROM schema_version"), "the schema", 60, every=POLL
        )
        private_pg.stop()
        baseline = int((await redis.info("memory"))["used_memory"])
        ids = {
            s.task_id for s in await queue.submit_many([NewTask("demo.noop", {})] * n)
        }  # ~3 events each: three times the cap
        peak_len = peak_pending = peak_mem = 0
        while (await queue.counts())["COMPLETED"] < n:
            peak_len = max(peak_len, int(await redis.xlen(queue.keys.events)))
            peak_pending = max(
                peak_pending, int((await redis.xpending(queue.keys.events, GROUP))["pending"])
            )
            peak_mem = max(peak_mem, int((await redis.info("memory"))["used_memory"]))
            assert proc.poll() is None
            await asyncio.sleep(0.05)
        for _ in range(20):  # the recorder keeps retrying its one batch
            peak_len = max(peak_len, int(await redis.xlen(queue.keys.events)))
            peak_pending = max(
                peak_pending, int((await redis.xpending(queue.keys.events, GROUP))["pending"])
            )
            peak_mem = max(peak_mem, int((await redis.info("memory"))["used_memory"]))
            await asyncio.sleep(0.05)
        growth = peak_mem - baseline
        figures.update(
            tasks=n, events_cap=cap, peak_stream_len=peak_len, peak_pending=peak_pending,
            used_memory_growth_bytes=growth,
        )  # fmt: skip
        # Approximate trimming frees whole stream nodes (100 entries): the log stays near its cap.
        assert peak_len <= cap + 250
        assert peak_pending <= batch  # one recorder holds at most one batch
        # A finished no-op task costs well under 2 KiB in Redis (hash, submitted entry, zset);
        # the capped log ~0.3 MiB: an event backlog for PostgreSQL would go far past this.
        assert growth <= n * 2048 + 4 * 2**20

        private_pg.start()
        await eventually(lambda: recorded_count(url) == n, "every task recorded", 60, every=POLL)
        assert {r[0] for r in query(url, "SELECT id FROM tasks")} == ids
        assert "dropped events before they were recorded" in log_text(proc)
        # Recorded tasks now expire recorded_ttl_seconds after recording, not 7 days after.
        now_s, now_us = await redis.time()
        horizon = now_s * 1000 + now_us // 1000 - (7 * 24 - 1) * 3600 * 1000 + 60_000
        short = await redis.zcount(queue.keys.finished, "-inf", horizon)
        assert short == n
        await redis.aclose()
    finally:
        server.stop()
