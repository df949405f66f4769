"""The history recorder against a real Redis and a real PostgreSQL (one fresh database per test).

Tasks are moved through their states with the store's own scripts (no worker), so every check
compares the rows with the Redis records they came from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from support import eventually, free_port, make_settings
from taskflow_server.config import Settings
from taskflow_server.history.db import HistoryDB
from taskflow_server.history.recorder import GROUP, Recorder, task_row, write_rows
from taskflow_server.runtime import Runtime
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask

LANES: dict[str, int | None] = {"local": None}
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "cost": 0.00042}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[HistoryDB]:
    """The history database of one test, migrated, closed afterwards."""
    history = HistoryDB(database_url)
    await history.open()
    await history.migrate()
    try:
        yield history
    finally:
        await history.close()


def settings(**overrides: Any) -> Settings:
    """Test settings; the recorder writes in batches of 50 unless told."""
    return make_settings(history_batch=overrides.pop("history_batch", 50), **overrides)


async def drain(recorder: Recorder) -> int:
    """Step until a step records nothing; returns the events recorded."""
    total = 0
    for _ in range(1000):
        n = await recorder.step()
        if n == 0:
            return total
        total += n
    raise AssertionError("the recorder never caught up")


async def rows(db: HistoryDB, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with db.pool.connection() as conn:
        cur = await conn.execute(sql, args or None)
        return list(await cur.fetchall())


async def snapshot(db: HistoryDB) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the three tables, in a stable order."""
    return {
        "tasks": await rows(db, "SELECT * FROM tasks ORDER BY id"),
        "task_events": await rows(db, "SELECT * FROM task_events ORDER BY event_id"),
        "attempts": await rows(db, "SELECT * FROM attempts ORDER BY task_id, attempt"),
    }


async def run_one(queue: TaskQueue, result: Any = None) -> str:
    """Claim the next task and complete it; returns its id."""
    (claim,) = await queue.claim("w1", "tok", 1, LANES)
    assert await queue.complete_many([(claim.task_id, "tok", result)]) == [True]
    return claim.task_id


async def mixed_run(queue: TaskQueue) -> dict[str, str]:
    """One task per ending: completed, failed-then-completed, dead-lettered, cancelled."""
    subs = await queue.submit_many(
        [
            NewTask("demo.noop", {}, metadata={"batch": "b-7", "who": "test"}, max_retries=2),
            NewTask("demo.flaky", {}, idempotency_key="key-2", max_retries=2),
            NewTask("demo.fail", {}, max_retries=2),
            NewTask("demo.noop", {}, priority="low"),
        ]
    )
    ok, flaky, dead, cancelled = (s.task_id for s in subs)
    result = {"summary": "short", "provider": "openrouter", "model": "m-1", "usage": USAGE}
    assert await run_one(queue, result) == ok
    (claim,) = await queue.claim("w1", "t2", 1, LANES)
    assert claim.task_id == flaky
    assert await queue.fail(flaky, "t2", mode="retry", error_type="unavailable", message="503")
    (claim,) = await queue.claim("w2", "t3", 1, LANES)
    assert claim.task_id == dead
    assert await queue.fail(dead, "t3", mode="dlq", error_type="invalid_input", message="bad")
    await queue.cancel(cancelled)
    await eventually(lambda: queue.promote_due(), "the retry to be due", 5)
    (claim,) = await queue.claim("w2", "t4", 1, LANES)
    assert claim.task_id == flaky
    assert await queue.complete_many([(flaky, "t4", {"ok": True})]) == [True]
    return {"ok": ok, "flaky": flaky, "dead": dead, "cancelled": cancelled}


async def test_migrations_apply_to_an_empty_database_once(database_url: str) -> None:
    history = HistoryDB(database_url)
    await history.open()
    try:
        applied = await history.migrate()
        assert applied == [1]
        assert await history.version() == 1
        tables = {
            r[0]
            for r in await rows(
                history, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert {"tasks", "task_events", "attempts", "schema_version"} <= tables
        assert await history.migrate() == []  # a re-run is a no-op
        assert await history.version() == 1
    finally:
        await history.close()


async def test_a_mixed_run_is_recorded_as_redis_holds_it(redis: Redis, db: HistoryDB) -> None:
    queue = TaskQueue(redis, Keys("tftest"), settings())
    await queue.load()
    ids = await mixed_run(queue)
    recorder = Recorder(redis, queue.keys, db, settings(), consumer="r1")
    events = await redis.xlen(queue.keys.events)
    assert await drain(recorder) == events

    got = {
        r[0]: r
        for r in await rows(
            db,
            "SELECT id, task_type, lane, priority, state, attempts, retry_count, error_class,"
            " error_message, provider, model, prompt_tokens, completion_tokens, cost_usd,"
            " idempotency_key, batch, metadata, result, created_at, finished_at FROM tasks",
        )
    }
    assert set(got) == set(ids.values())
    for rec in await queue.get_many(list(ids.values())):
        assert rec is not None
        row = got[rec.id]
        assert row[1:5] == (rec.task_type, rec.lane, rec.priority, rec.state)
        assert row[6] == rec.retry_count
        assert row[7] == rec.error_type and row[8] == rec.last_error
        assert row[14] == rec.idempotency_key
        assert row[16] == rec.metadata
        assert row[17] == rec.result
        assert abs(row[18].timestamp() - rec.created_at) < 0.002
    ok = got[ids["ok"]]
    assert ok[4] == "COMPLETED" and ok[5] == 1
    assert ok[9:13] == ("openrouter", "m-1", 120, 30)
    assert ok[13] == Decimal("0.00042")
    assert ok[15] == "b-7" and ok[19] is not None
    assert got[ids["flaky"]][4:7] == ("COMPLETED", 2, 1)
    assert got[ids["dead"]][4] == "DLQ" and got[ids["dead"]][19] is not None
    assert got[ids["cancelled"]][4:6] == ("CANCELLED", 0)

    attempts = await rows(
        db,
        "SELECT task_id, attempt, outcome, error_class, error, worker_id, ended_at IS NOT NULL"
        " FROM attempts ORDER BY task_id, attempt",
    )
    by_task: dict[str, list[tuple[Any, ...]]] = {}
    for a in attempts:
        by_task.setdefault(a[0], []).append(a[1:])
    assert by_task[ids["ok"]] == [(1, "COMPLETED", None, None, "w1", True)]
    assert by_task[ids["flaky"]] == [
        (1, "FAILED", "unavailable", "503", "w1", True),
        (2, "COMPLETED", None, None, "w2", True),
    ]
    assert by_task[ids["dead"]] == [(1, "DLQ", "invalid_input", "bad", "w2", True)]
    assert ids["cancelled"] not in by_task  # cancelled while waiting: never ran

    stream = await redis.xrange(queue.keys.events)
    with_task = {eid.decode() for eid, fields in stream if fields.get(b"task_id")}
    recorded = await rows(db, "SELECT event_id, task_id, type, old_state, state FROM task_events")
    assert {r[0] for r in recorded} == with_task
    flaky_states = [
        r[3:5]
        for r in sorted(recorded, key=lambda r: tuple(map(int, r[0].split("-"))))
        if r[1] == ids["flaky"]
    ]
    assert flaky_states == [
        (None, "PENDING"),
        ("PENDING", "ACTIVE"),
        ("ACTIVE", "SCHEDULED"),
        ("SCHEDULED", "PENDING"),
        ("PENDING", "ACTIVE"),
        ("ACTIVE", "COMPLETED"),
    ]
    pending = await redis.xpending(queue.keys.events, GROUP)
    assert pending["pending"] == 0


async def test_queued_and_running_tasks_are_recorded_then_completed(
    redis: Redis, db: HistoryDB
) -> None:
    queue = TaskQueue(redis, Keys("tftest"), settings())
    await queue.load()
    subs = await queue.submit_many(
        [NewTask("demo.noop", {}, metadata={"batch": "b-9"}) for _ in range(3)]
    )
    ids = [s.task_id for s in subs]
    (claim,) = await queue.claim("w1", "tok", 1, LANES)
    recorder = Recorder(redis, queue.keys, db, settings(), consumer="r1")
    await drain(recorder)
    # In flight at their newest event: rows from the events (state, type, creation time).
    got = {r[0]: r[1:] for r in await rows(db, "SELECT id, state, task_type FROM tasks")}
    assert got == {
        tid: ("ACTIVE" if tid == claim.task_id else "PENDING", "demo.noop") for tid in ids
    }
    # Settled: the full record replaces the row (metadata, batch, attempts).
    assert await queue.complete_many([(claim.task_id, "tok", {"ok": True})]) == [True]
    await drain(recorder)
    (row,) = await rows(
        db, "SELECT state, batch, attempts, result FROM tasks WHERE id = %s", claim.task_id
    )
    assert row == ("COMPLETED", "b-9", 1, {"ok": True})
    (attempt,) = await rows(
        db, "SELECT attempt, worker_id, outcome FROM attempts WHERE task_id = %s", claim.task_id
    )
    assert attempt == (1, "w1", "COMPLETED")


async def test_a_replay_from_the_start_changes_nothing(redis: Redis, db: HistoryDB) -> None:
    queue = TaskQueue(redis, Keys("tftest"), settings())
    await queue.load()
    await mixed_run(queue)
    recorder = Recorder(redis, queue.keys, db, settings(history_batch=3), consumer="r1")
    await drain(recorder)
    before = await snapshot(db)
    assert len(before["tasks"]) == 4 and before["task_events"] and before["attempts"]

    await redis.xgroup_setid(queue.keys.events, GROUP, "0")
    again = Recorder(redis, queue.keys, db, settings(history_batch=7), consumer="r2")
    assert await drain(again) == await redis.xlen(queue.keys.events)
    assert await snapshot(db) == before


async def test_an_older_read_never_overwrites_a_newer_row(redis: Redis, db: HistoryDB) -> None:
    queue = TaskQueue(redis, Keys("tftest"), settings())
    await queue.load()
    (sub,) = await queue.submit_many([NewTask("demo.noop", {})])
    await queue.claim("w1", "tok", 1, LANES)
    stale = await queue.get(sub.task_id)  # ACTIVE, as a slow recorder would have read it
    assert stale is not None and stale.state == "ACTIVE"
    await queue.complete_many([(sub.task_id, "tok", {"n": 1})])
    recorder = Recorder(redis, queue.keys, db, settings(), consumer="r1")
    await drain(recorder)
    async with db.pool.connection() as conn:
        await write_rows(conn, tasks=[task_row(stale, "0-1")])
    (row,) = await rows(db, "SELECT state, result FROM tasks")
    assert row == ("COMPLETED", {"n": 1})


async def test_two_recorders_share_the_work_and_take_over_a_dead_ones(
    redis: Redis, db: HistoryDB
) -> None:
    queue = TaskQueue(redis, Keys("tftest"), settings())
    await queue.load()
    subs = await queue.submit_many([NewTask("demo.noop", {}) for _ in range(40)])
    for _ in range(40):
        await run_one(queue, {"ok": 1})
    one = Recorder(redis, queue.keys, db, settings(history_batch=10), consumer="one")
    await one.ensure_group()
    # A recorder that read 25 events and died before writing them.
    dead = await redis.xreadgroup(GROUP, "dead", {queue.keys.events: ">"}, count=25)
    dead_ids = {eid.decode() for eid, _ in dead[0][1]}
    two = Recorder(
        redis, queue.keys, db, settings(history_batch=10), consumer="two", claim_idle_ms=1000
    )

    async def held_by_dead() -> int:
        held = await redis.xpending_range(queue.keys.events, GROUP, "-", "+", 100, "dead")
        return len(held)

    # Not idle for claim_idle_ms yet: a live recorder's entries are not taken.
    assert await two.step() > 0
    assert await held_by_dead() == 25
    done_one = done_two = 0
    while True:
        a, b = await one.step(), await two.step()
        done_one, done_two = done_one + a, done_two + b
        if a == 0 and b == 0:
            break
    assert done_one > 0 and done_two > 0  # both took part
    await eventually(lambda: two.step(), "the dead recorder's entries to be taken over", 10)
    await drain(two)
    assert await held_by_dead() == 0
    assert (await redis.xpending(queue.keys.events, GROUP))["pending"] == 0
    recorded = {r[0] for r in await rows(db, "SELECT event_id FROM task_events")}
    assert dead_ids <= recorded
    assert len(recorded) == await redis.xlen(queue.keys.events)
    states = await rows(db, "SELECT state, count(*) FROM tasks GROUP BY state")
    assert states == [("COMPLETED", len(subs))]


async def test_events_trimmed_before_recording_are_reconciled_from_redis(
    redis: Redis, db: HistoryDB, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = settings(events_maxlen=100, history_batch=100)
    queue = TaskQueue(redis, Keys("tftest"), cfg)
    await queue.load()
    recorder = Recorder(redis, queue.keys, db, cfg, consumer="r1")
    await recorder.ensure_group()  # the recorder exists, but is not running
    subs = await queue.submit_many([NewTask("demo.noop", {}) for _ in range(150)])
    for _ in range(150):
        await run_one(queue, {"ok": 1})
    (failing,) = await queue.submit_many([NewTask("demo.fail", {}, max_retries=0)])
    (claim,) = await queue.claim("w1", "tx", 1, LANES)
    await queue.fail(claim.task_id, "tx", mode="dlq", error_type="invalid_input", message="x")
    info = await redis.xinfo_stream(queue.keys.events)
    assert info["entries-added"] > info["length"]  # the log dropped events nobody had read

    with caplog.at_level(logging.WARNING, logger="taskflow_server.history.recorder"):
        await drain(recorder)
    assert recorder.reconciled > 0
    assert any("dropped events" in r.getMessage() for r in caplog.records)
    got = dict(await rows(db, "SELECT id, state FROM tasks"))
    expected = {s.task_id: "COMPLETED" for s in subs} | {failing.task_id: "DLQ"}
    assert got == expected
    (n_attempts,) = await rows(db, "SELECT count(*) FROM attempts")
    assert n_attempts == (151,)


async def test_a_recorded_task_leaves_redis_after_the_short_ttl(
    redis: Redis, db: HistoryDB
) -> None:
    # The settings floor is 60 s; the test copies the settings with 2 s to stay short.
    cfg = settings(result_ttl_seconds=3600).model_copy(update={"recorded_ttl_seconds": 2})
    queue = TaskQueue(redis, Keys("tftest"), cfg)
    await queue.load()
    recorded, unrecorded = (
        s.task_id for s in await queue.submit_many([NewTask("demo.noop", {})] * 2)
    )
    await run_one(queue, {"n": 1})
    recorder = Recorder(redis, queue.keys, db, cfg, consumer="r1")
    await drain(recorder)
    await run_one(queue, {"n": 2})  # finished after the recorder's last step: not recorded
    score = await redis.zscore(queue.keys.finished, recorded)
    now_s, now_us = await redis.time()
    now_ms = now_s * 1000 + now_us // 1000
    assert score is not None
    assert 0 < score - (now_ms - 3600_000) <= 2000  # expires 2 s after recording, not 1 h after
    assert await queue.sweep_finished() == 0  # not yet

    async def recorded_swept() -> bool:
        await queue.sweep_finished()
        return await queue.get(recorded) is None

    await eventually(recorded_swept, "the recorded task to be swept", 10, every=0.2)
    assert await queue.get(unrecorded) is not None  # keeps result_ttl_seconds
    assert await rows(db, "SELECT id, state FROM tasks WHERE id = %s", recorded) == [
        (recorded, "COMPLETED")
    ]


async def test_a_runtime_records_and_rides_out_an_unreachable_database(
    redis: Redis, redis_url: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    down = Runtime(settings(redis_url=redis_url, key_prefix="tfrt", database_url=nowhere))
    with caplog.at_level(logging.ERROR, logger="taskflow_server.runtime"):
        await down.start(wait_timeout=10)
        assert down.queue is not None
        subs = await down.queue.submit_many([NewTask("demo.noop", {}) for _ in range(5)])

        async def all_done() -> bool:
            assert down.queue is not None
            return (await down.queue.counts())["COMPLETED"] == len(subs)

        await eventually(all_done, "the queue to work without PostgreSQL", 20)
        await eventually(
            lambda: any("does not answer" in r.getMessage() for r in caplog.records),
            "a clear error about the database",
            20,
        )
    assert not down.history_ready.is_set()
    await asyncio.wait_for(down.stop(), 15)  # no wait for the database it never reached

    # An API-only process (no workers) still records, and exposes the database it opened.
    up = Runtime(settings(redis_url=redis_url, key_prefix="tfrt", database_url=database_url))
    up.n_workers = 0
    await up.start(wait_timeout=10)
    try:
        await asyncio.wait_for(up.history_ready.wait(), 20)
        history = up.history
        assert history is not None and up.recorder is not None

        async def recorded() -> bool:
            got = await rows(history, "SELECT count(*) FROM tasks WHERE state = 'COMPLETED'")
            return bool(got) and got[0][0] == len(subs)

        await eventually(recorded, "the earlier tasks to be recorded", 20, every=0.1)
    finally:
        await asyncio.wait_for(up.stop(), 15)
