"""Saved parts (``checkpoint.lua``): written only under the lease, kept while the task may run
again, dropped by the scripts that end it for good. Real Redis."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from support import make_settings
from taskflow_server.store.audit import audit
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import Claim, NewTask

ALL_LANES: dict[str, int | None] = {"llm": None, "local": None}
PAGE = {"fp": "abc", "page": {"articles": [{"title": "T", "body": "B"}]}, "usage": {"cost": 0.5}}


async def running(queue: TaskQueue, token: str = "tok", **kw: Any) -> Claim:
    """Submit one task and claim it under ``token``."""
    await queue.submit(NewTask("demo.noop", {}, **kw))
    (claim,) = await queue.claim("w", token, 1, ALL_LANES)
    return claim


async def assert_consistent(queue: TaskQueue) -> None:
    report = await audit(queue.redis, queue.keys)
    assert report.ok, report.problems


async def test_key_layout() -> None:
    assert Keys("tf").parts("abc") == "{tf}:parts:abc"


async def test_saved_under_the_lease_with_the_result_retention(redis: Redis) -> None:
    queue = TaskQueue(redis, Keys("tftest"), make_settings(result_ttl_seconds=3600))
    await queue.load()
    claim = await running(queue)
    assert await queue.save_part(claim.task_id, claim.token, "page:1", PAGE)
    assert await queue.save_part(claim.task_id, claim.token, "chunk:0:1:ff", "text")
    assert await queue.parts(claim.task_id) == {"page:1": PAGE, "chunk:0:1:ff": "text"}
    ttl = await redis.ttl(queue.keys.parts(claim.task_id))
    assert 3590 <= ttl <= 3600
    # A later write replaces the part and sets the expiry again.
    await redis.expire(queue.keys.parts(claim.task_id), 10)
    assert await queue.save_part(claim.task_id, claim.token, "page:1", {"v": 2})
    assert (await queue.parts(claim.task_id))["page:1"] == {"v": 2}
    assert await redis.ttl(queue.keys.parts(claim.task_id)) > 3000
    await assert_consistent(queue)


async def test_refused_without_the_lease(queue: TaskQueue) -> None:
    claim = await running(queue)
    assert not await queue.save_part(claim.task_id, "someone-else", "page:1", PAGE)
    assert not await queue.save_part("no-such-task", claim.token, "page:1", PAGE)
    assert await queue.parts(claim.task_id) == {}
    assert not await queue.redis.exists(queue.keys.parts(claim.task_id))
    # Not running any more (requeued): the old holder's write is refused too.
    assert await queue.fail(claim.task_id, claim.token, mode="requeue") == "PENDING"
    assert not await queue.save_part(claim.task_id, claim.token, "page:1", PAGE)
    assert await queue.parts(claim.task_id) == {}


async def test_a_reap_keeps_them_and_a_stale_worker_cannot_write(redis: Redis) -> None:
    queue = TaskQueue(redis, Keys("tftest"), make_settings(lease_seconds=0.05))
    await queue.load()
    first = await running(queue, token="old")
    assert await queue.save_part(first.task_id, "old", "page:1", {"by": "old"})
    await redis.zadd(queue.keys.active, {first.task_id: 0})  # the lease ran out
    assert await queue.reap_expired() == (1, 0)
    assert await queue.parts(first.task_id) == {"page:1": {"by": "old"}}
    (second,) = await queue.claim("w2", "new", 1, ALL_LANES)
    assert second.task_id == first.task_id
    assert not await queue.save_part(first.task_id, "old", "page:2", {"by": "old"})
    assert await queue.save_part(first.task_id, "new", "page:2", {"by": "new"})
    assert await queue.parts(first.task_id) == {"page:1": {"by": "old"}, "page:2": {"by": "new"}}


async def test_kept_across_retries_and_the_dlq(queue: TaskQueue) -> None:
    claim = await running(queue, max_retries=1)
    tid = claim.task_id
    assert await queue.save_part(tid, claim.token, "page:1", PAGE)
    # Transient failure -> SCHEDULED -> promoted -> claimed again: the part is still there.
    assert await queue.fail(tid, claim.token, mode="retry", error_type="unavailable") == "SCHEDULED"
    assert await queue.parts(tid) == {"page:1": PAGE}
    assert await queue.promote_due() == 1
    (again,) = await queue.claim("w", "tok2", 1, ALL_LANES)
    assert again.task_id == tid and await queue.parts(tid) == {"page:1": PAGE}
    assert await queue.save_part(tid, "tok2", "page:2", {"n": 2})
    # Retries used up -> DLQ: kept, so a manual retry from the DLQ profits from it.
    assert await queue.fail(tid, "tok2", mode="retry", error_type="unavailable") == "DLQ"
    assert set(await queue.parts(tid)) == {"page:1", "page:2"}
    assert (await queue.retry(tid)).state == "PENDING"
    assert set(await queue.parts(tid)) == {"page:1", "page:2"}
    # Requeued (graceful stop): kept too.
    (third,) = await queue.claim("w", "tok3", 1, ALL_LANES)
    assert third.task_id == tid
    assert await queue.fail(tid, "tok3", mode="requeue") == "PENDING"
    assert set(await queue.parts(tid)) == {"page:1", "page:2"}
    await assert_consistent(queue)


async def test_deleted_when_completed(queue: TaskQueue) -> None:
    a = await running(queue, token="ta")
    b = await running(queue, token="tb")
    assert await queue.save_part(a.task_id, "ta", "page:1", PAGE)
    assert await queue.save_part(b.task_id, "tb", "page:1", PAGE)
    # One call completes both; b's lease is not the one given, so b keeps its parts.
    assert await queue.complete_many([(a.task_id, "ta", {"ok": 1}), (b.task_id, "x", {})]) == [
        True,
        False,
    ]
    assert not await queue.redis.exists(queue.keys.parts(a.task_id))
    assert await queue.parts(b.task_id) == {"page:1": PAGE}
    assert await queue.complete_many([(b.task_id, "tb", {"ok": 2})]) == [True]
    assert not await queue.redis.exists(queue.keys.parts(b.task_id))
    await assert_consistent(queue)


async def test_deleted_when_cancelled(queue: TaskQueue) -> None:
    # A task in the DLQ (parts kept there) cancelled at once.
    dead = await running(queue, token="td")
    assert await queue.save_part(dead.task_id, "td", "page:1", PAGE)
    assert await queue.fail(dead.task_id, "td", mode="dlq", error_type="invalid_input") == "DLQ"
    assert (await queue.cancel(dead.task_id)).state == "CANCELLED"
    assert not await queue.redis.exists(queue.keys.parts(dead.task_id))

    # A running task: the cancel request alone keeps the parts; honouring it drops them.
    live = await running(queue, token="tl")
    assert await queue.save_part(live.task_id, "tl", "page:1", PAGE)
    assert (await queue.cancel(live.task_id)).state == "ACTIVE"
    assert await queue.parts(live.task_id) == {"page:1": PAGE}
    assert await queue.fail(live.task_id, "tl", mode="cancel") == "CANCELLED"
    assert not await queue.redis.exists(queue.keys.parts(live.task_id))
    await assert_consistent(queue)


async def test_deleted_with_the_task(queue: TaskQueue) -> None:
    claim = await running(queue)
    assert await queue.save_part(claim.task_id, claim.token, "page:1", PAGE)
    assert await queue.delete(claim.task_id)
    assert not await queue.redis.exists(queue.keys.parts(claim.task_id))
    await assert_consistent(queue)


async def test_undecodable_values_are_left_out(queue: TaskQueue) -> None:
    claim = await running(queue)
    assert await queue.save_part(claim.task_id, claim.token, "good", [1, 2])
    await queue.redis.hset(queue.keys.parts(claim.task_id), "bad", b"{not json")
    assert await queue.parts(claim.task_id) == {"good": [1, 2]}
