"""Every transition script against a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from support import eventually, make_settings
from taskflow_server.store import queue as queue_module
from taskflow_server.store.audit import audit
from taskflow_server.store.events import EventLog
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import (
    CANCEL_REQUESTED,
    EXTENDED,
    LOST,
    InvalidTransitionError,
    TaskNotFoundError,
    TaskQueue,
)
from taskflow_server.store.records import NewTask

ALL_LANES: dict[str, int | None] = {"llm": None, "local": None}


def noop(priority: str = "default", **kw: object) -> NewTask:
    return NewTask("demo.noop", {}, priority=priority, **kw)  # type: ignore[arg-type]


async def assert_consistent(queue: TaskQueue) -> None:
    report = await audit(queue.redis, queue.keys)
    assert report.ok, report.problems


async def test_priority_then_fifo(queue: TaskQueue) -> None:
    order = ["low", "default", "high", "default", "high", "low"]
    subs = await queue.submit_many([noop(p) for p in order])
    claims = await queue.claim("w", "t", 10, ALL_LANES)
    got = [c.task_id for c in claims]
    ids = [s.task_id for s in subs]
    assert got == [ids[2], ids[4], ids[1], ids[3], ids[0], ids[5]]
    await assert_consistent(queue)


async def test_claim_respects_n_and_lane_limits(queue: TaskQueue) -> None:
    await queue.submit_many([NewTask("summarize", {"content": "x"}, lane="llm") for _ in range(3)])
    await queue.submit_many([noop() for _ in range(3)])
    assert await queue.claim("w", "t", 10, {"llm": 0, "local": None}) != []
    assert await queue.claim("w", "t", 10, {"llm": 0, "local": None}) == []
    probe = await queue.claim("w", "t2", 10, {"llm": 1, "local": None})
    assert len(probe) == 1 and probe[0].task_type == "summarize"
    rest = await queue.claim("w", "t3", 10, ALL_LANES)
    assert len(rest) == 2
    await assert_consistent(queue)


async def test_retry_queue_gets_its_share(redis: Redis) -> None:
    q = TaskQueue(redis, Keys("tftest"), make_settings(retry_share=0.25))
    await q.load()
    # Ten tasks fail once and wait in the retry queue; forty fresh ones wait in primary.
    first = await q.submit_many([NewTask("demo.noop", {"kind": "r"}) for _ in range(10)])
    claims = await q.claim("w", "t", 10, ALL_LANES)
    for c in claims:
        assert (
            await q.fail(c.task_id, "t", mode="retry", error_type="timeout", message="x")
            == "SCHEDULED"
        )
    assert await q.promote_due() == 10
    await q.submit_many([NewTask("demo.noop", {"kind": "p"}) for _ in range(40)])
    taken = await q.claim("w", "t2", 20, ALL_LANES)
    from_retry = sum(1 for c in taken if c.payload.get("kind") == "r")
    assert from_retry == 5  # one claim in four prefers retries: 20 claims -> 5
    assert {s.task_id for s in first} >= {c.task_id for c in taken if c.payload.get("kind") == "r"}


async def test_schedule_then_promote_when_due(queue: TaskQueue) -> None:
    (sub,) = await queue.submit_many([noop()])
    (c,) = await queue.claim("w", "t", 1, ALL_LANES)
    state = await queue.fail(
        c.task_id, "t", mode="retry", error_type="timeout", message="slow", delay_seconds=0.3
    )
    assert state == "SCHEDULED"
    rec = await queue.get(sub.task_id)
    assert rec and rec.retry_count == 1 and rec.retry_after is not None
    assert await queue.promote_due() == 0
    await eventually(queue.promote_due, "the retry to come due and be promoted", 5, every=0.05)
    rec = await queue.get(sub.task_id)
    assert rec and rec.state == "PENDING"
    assert await queue.queue_ids("retry") == [sub.task_id]
    assert [h["state"] for h in rec.state_history] == [
        "PENDING",
        "ACTIVE",
        "FAILED",
        "SCHEDULED",
        "PENDING",
    ]
    await assert_consistent(queue)


async def test_retries_exhausted_go_to_dlq(queue: TaskQueue) -> None:
    (sub,) = await queue.submit_many([noop(max_retries=1)])
    c = (await queue.claim("w", "t1", 1, ALL_LANES))[0]
    assert (
        await queue.fail(c.task_id, "t1", mode="retry", error_type="timeout", message="a")
        == "SCHEDULED"
    )
    await queue.redis.zadd(queue.keys.scheduled, {sub.task_id: 0})  # make it due now
    await queue.promote_due()
    c = (await queue.claim("w", "t2", 1, ALL_LANES))[0]
    assert (
        await queue.fail(c.task_id, "t2", mode="retry", error_type="timeout", message="b") == "DLQ"
    )
    rec = await queue.get(sub.task_id)
    assert rec and rec.state == "DLQ" and len(rec.error_history) == 2
    assert await queue.queue_ids("dlq") == [sub.task_id]
    await assert_consistent(queue)


async def test_idempotent_submit_returns_first_task(queue: TaskQueue) -> None:
    a = await queue.submit(noop(idempotency_key="same"))
    b = await queue.submit(noop(idempotency_key="same"))
    assert a.created and not b.created and a.task_id == b.task_id
    assert (await queue.counts())["PENDING"] == 1


async def test_stale_lease_cannot_complete_or_fail(queue: TaskQueue) -> None:
    (sub,) = await queue.submit_many([noop()])
    c = (await queue.claim("w", "old", 1, ALL_LANES))[0]
    # The lease expires and another worker takes the task over.
    await queue.redis.zadd(queue.keys.active, {c.task_id: 0})
    assert await queue.reap_expired() == (1, 0)
    c2 = (await queue.claim("w2", "new", 1, ALL_LANES))[0]
    assert c2.task_id == sub.task_id and c2.lost_leases == 1
    assert await queue.complete_many([(sub.task_id, "old", "late")]) == [False]
    assert (
        await queue.fail(sub.task_id, "old", mode="dlq", error_type="x", message="y")
    ).startswith("stale:")
    assert await queue.extend([(sub.task_id, "old"), (sub.task_id, "new")], 30) == [LOST, EXTENDED]
    assert await queue.complete_many([(sub.task_id, "new", "fresh")]) == [True]
    rec = await queue.get(sub.task_id)
    assert rec and rec.state == "COMPLETED" and rec.result == "fresh"
    await assert_consistent(queue)


async def test_poison_task_dead_lettered_after_lost_leases(redis: Redis) -> None:
    q = TaskQueue(redis, Keys("tftest"), make_settings(max_lost_leases=2))
    await q.load()
    (sub,) = await q.submit_many([noop()])
    for i in range(2):
        (c,) = await q.claim("w", f"t{i}", 1, ALL_LANES)
        await redis.zadd(q.keys.active, {c.task_id: 0})
        await q.reap_expired()
    rec = await q.get(sub.task_id)
    assert rec and rec.state == "DLQ" and rec.error_type == "poison"
    report = await audit(redis, q.keys)
    assert report.ok, report.problems


@pytest.mark.parametrize("state", ["PENDING", "SCHEDULED", "DLQ", "ACTIVE", "COMPLETED"])
async def test_cancel_in_each_state(queue: TaskQueue, state: str) -> None:
    (sub,) = await queue.submit_many([noop(max_retries=1 if state == "SCHEDULED" else 0)])
    if state != "PENDING":
        (c,) = await queue.claim("w", "t", 1, ALL_LANES)
        if state == "SCHEDULED":
            await queue.fail(
                c.task_id, "t", mode="retry", error_type="timeout", message="m", delay_seconds=60
            )
        elif state == "DLQ":
            await queue.fail(c.task_id, "t", mode="dlq", error_type="invalid_input", message="m")
        elif state == "COMPLETED":
            await queue.complete_many([(c.task_id, "t", 1)])
    if state == "COMPLETED":
        with pytest.raises(InvalidTransitionError):
            await queue.cancel(sub.task_id)
        return
    rec = await queue.cancel(sub.task_id)
    if state == "ACTIVE":
        assert rec.state == "ACTIVE" and rec.cancel_requested
        assert await queue.extend([(sub.task_id, "t")], 30) == [CANCEL_REQUESTED]
        assert await queue.fail(sub.task_id, "t", mode="cancel") == "CANCELLED"
    else:
        assert rec.state == "CANCELLED"
    await assert_consistent(queue)


async def test_manual_retry_only_from_dlq(queue: TaskQueue) -> None:
    (sub,) = await queue.submit_many([noop()])
    with pytest.raises(InvalidTransitionError):
        await queue.retry(sub.task_id)
    (c,) = await queue.claim("w", "t", 1, ALL_LANES)
    await queue.fail(c.task_id, "t", mode="retry", error_type="timeout", message="m")
    await queue.redis.zadd(queue.keys.scheduled, {sub.task_id: 0})
    await queue.promote_due()
    (c,) = await queue.claim("w", "t2", 1, ALL_LANES)
    await queue.fail(c.task_id, "t2", mode="dlq", error_type="invalid_input", message="m")
    rec = await queue.retry(sub.task_id, reset_retry_count=True)
    assert rec.state == "PENDING" and rec.retry_count == 0
    assert await queue.queue_ids("retry") == [sub.task_id]
    with pytest.raises(TaskNotFoundError):
        await queue.retry("nope")
    await assert_consistent(queue)


@pytest.mark.parametrize("was", ["PENDING", "SCHEDULED"])
async def test_manual_retry_of_a_cancelled_task(queue: TaskQueue, was: str) -> None:
    """A CANCELLED task goes back as PENDING: out of the finished set, counters moved once."""
    (sub,) = await queue.submit_many([noop()])
    if was == "SCHEDULED":
        (c,) = await queue.claim("w", "t", 1, ALL_LANES)
        await queue.fail(
            c.task_id, "t", mode="retry", error_type="timeout", message="m", delay_seconds=60
        )
    rec = await queue.cancel(sub.task_id)
    assert rec.state == "CANCELLED"
    assert await queue.redis.zscore(queue.keys.finished, sub.task_id) is not None
    assert (await queue.counts())["CANCELLED"] == 1
    retried = await queue.retry(sub.task_id)
    assert retried.state == "PENDING"
    assert await queue.redis.zscore(queue.keys.finished, sub.task_id) is None
    assert await queue.queue_ids("retry") == [sub.task_id]
    counts = await queue.counts()
    assert counts["CANCELLED"] == 0 and counts["PENDING"] == 1 and sum(counts.values()) == 1
    await assert_consistent(queue)
    (c,) = await queue.claim("w", "t2", 1, ALL_LANES)
    assert c.task_id == sub.task_id
    await queue.complete_many([(c.task_id, "t2", 1)])
    assert (await queue.get(sub.task_id)).state == "COMPLETED"  # type: ignore[union-attr]
    with pytest.raises(InvalidTransitionError):  # a COMPLETED task is still refused
        await queue.retry(sub.task_id)
    await assert_consistent(queue)


@pytest.mark.parametrize("state", ["PENDING", "ACTIVE", "SCHEDULED", "DLQ", "COMPLETED"])
async def test_delete_removes_everywhere(queue: TaskQueue, state: str) -> None:
    (sub,) = await queue.submit_many([noop(idempotency_key="k")])
    if state != "PENDING":
        (c,) = await queue.claim("w", "t", 1, ALL_LANES)
        if state == "SCHEDULED":
            await queue.fail(
                c.task_id, "t", mode="retry", error_type="timeout", message="m", delay_seconds=60
            )
        elif state == "DLQ":
            await queue.fail(c.task_id, "t", mode="dlq", error_type="invalid_input", message="m")
        elif state == "COMPLETED":
            await queue.complete_many([(c.task_id, "t", 1)])
    assert await queue.delete(sub.task_id)
    assert not await queue.delete(sub.task_id)
    assert await queue.get(sub.task_id) is None
    assert sum((await queue.counts()).values()) == 0
    if state == "ACTIVE":  # the worker's late result is dropped
        assert await queue.complete_many([(sub.task_id, "t", 1)]) == [False]
    again = await queue.submit(noop(idempotency_key="k"))
    assert again.created
    await assert_consistent(queue)


async def test_events_follow_transitions(queue: TaskQueue) -> None:
    log = EventLog(queue.redis, queue.keys)
    start = await log.last_id()
    (sub,) = await queue.submit_many([noop()])
    (c,) = await queue.claim("w", "t", 1, ALL_LANES)
    await queue.progress(c.task_id, "t", 0.5, "half")
    await queue.complete_many([(c.task_id, "t", {"ok": True})])
    events = await log.read(after=start)
    assert [(e.type, e.state) for e in events] == [
        ("task_created", "PENDING"),
        ("task_state_changed", "ACTIVE"),
        ("task_progress", "ACTIVE"),
        ("task_state_changed", "COMPLETED"),
    ]
    assert all(e.task_id == sub.task_id for e in events)
    assert events[2].data["progress"] == 0.5


async def test_requeue_orphaned_finds_nothing_when_healthy_and_repairs_damage(
    queue: TaskQueue,
) -> None:
    subs = await queue.submit_many([noop() for _ in range(5)])
    assert (await queue.requeue_orphaned())["found"] == 0
    await queue.redis.lrem(queue.keys.queue("local", "default"), 0, subs[0].task_id)
    report = await queue.requeue_orphaned()
    assert report["found"] == 1 and report["task_ids"] == [subs[0].task_id]
    await assert_consistent(queue)


async def test_sweep_deletes_old_finished_tasks(redis: Redis) -> None:
    q = TaskQueue(redis, Keys("tftest"), make_settings(result_ttl_seconds=60))
    await q.load()
    (sub,) = await q.submit_many([noop()])
    (c,) = await q.claim("w", "t", 1, ALL_LANES)
    await q.complete_many([(c.task_id, "t", 1)])
    assert await q.sweep_finished() == 0
    await redis.zadd(q.keys.finished, {sub.task_id: 1})  # finished long ago
    assert await q.sweep_finished() == 1
    assert await q.get(sub.task_id) is None
    assert (await q.counts())["COMPLETED"] == 0
    report = await audit(redis, q.keys)
    assert report.ok, report.problems


async def test_depths_and_queue_listing(queue: TaskQueue) -> None:
    await queue.submit_many([noop("high"), noop("low"), noop("default")])
    d = await queue.depths()
    assert d.by_priority == {"high": 1, "default": 1, "low": 1} and d.primary == 3
    assert len(await queue.queue_ids("primary")) == 3
    with pytest.raises(ValueError):
        await queue.queue_ids("bogus")
    ids, total = await queue.list_ids(limit=2)
    assert total == 3 and len(ids) == 2


async def test_queued_task_hash_holds_only_what_changes(queue: TaskQueue) -> None:
    (sub,) = await queue.submit_many(
        [
            NewTask(
                "summarize",
                {"content": "x" * 500},
                lane="llm",
                priority="high",
                max_retries=7,
                idempotency_key="only-once",
                metadata={"source": "test"},
            )
        ]
    )
    raw = await queue.redis.hgetall(queue.keys.task(sub.task_id))
    assert set(raw) == {b"state", b"sid"}  # everything else is in the submitted stream
    record = await queue.get(sub.task_id)
    assert record is not None
    assert (record.task_type, record.lane, record.priority) == ("summarize", "llm", "high")
    assert (record.max_retries, record.idempotency_key) == (7, "only-once")
    assert record.metadata == {"source": "test"}
    sid_ms = int(raw[b"sid"].split(b"-")[0])
    assert record.created_at == pytest.approx(sid_ms / 1000)
    assert await queue.payload(sub.task_id) == {"content": "x" * 500}
    assert await queue.redis.xlen(queue.keys.submitted) == 1
    assert await queue.delete(sub.task_id)
    assert await queue.redis.xlen(queue.keys.submitted) == 0
    await assert_consistent(queue)


async def test_listing_walks_creation_order_in_bounded_calls(
    queue: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "PAGE_BUDGET", 4)  # many script calls per page
    ids = [s.task_id for s in await queue.submit_many([noop() for _ in range(23)])]
    for gone in (ids[3], ids[17]):
        assert await queue.delete(gone)
    alive = [i for i in ids if i not in (ids[3], ids[17])]

    page, total = await queue.list_ids(offset=5, limit=7)
    assert page == alive[::-1][5:12] and total == 21
    page, total = await queue.list_ids(desc=False, offset=18, limit=10)
    assert page == alive[18:] and total == 21
    record = await queue.get(alive[0])
    assert record is not None
    page, dated_total = await queue.list_ids(start=record.created_at - 1, end=None, limit=100)
    assert page == alive[::-1] and dated_total == 21
    page, dated_total = await queue.list_ids(start=record.created_at - 1, offset=2, limit=5)
    assert page == alive[::-1][2:7] and dated_total == 21  # counted past the page
    assert await queue.list_ids(start=record.created_at + 3600) == ([], 0)

    chunks = [c async for c in queue.iter_ids(chunk=5, desc=False)]
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 1]
    assert [i for c in chunks for i in c] == alive
    newest_first = [i async for c in queue.iter_ids(chunk=6) for i in c]
    assert newest_first == alive[::-1]


async def test_deleting_every_task_gives_back_the_submitted_streams_memory(
    queue: TaskQueue,
) -> None:
    # Stream entries are freed a node (a few KB) at a time: once every task of a node is gone.
    big = "y" * 1024
    subs = await queue.submit_many([NewTask("demo.noop", {"data": big}) for _ in range(300)])
    full = await queue.redis.memory_usage(queue.keys.submitted, samples=0)
    assert full is not None and full > 300 * 1024
    for sub in subs:
        assert await queue.delete(sub.task_id)
    assert await queue.redis.xlen(queue.keys.submitted) == 0
    left = await queue.redis.memory_usage(queue.keys.submitted, samples=0)
    assert left is None or left < 1024
    await assert_consistent(queue)
