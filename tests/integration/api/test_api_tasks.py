"""Reading and operating on tasks: detail, lists, retry, cancel, delete, requeue, the stream."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
from api_helpers import LiveApi, data_frames

from taskflow_server.store.queue import TaskQueue

StoreFactory = Callable[[LiveApi], Awaitable[TaskQueue]]
LANES: dict[str, int | None] = {"local": None, "llm": None}


async def _submit(client: httpx.AsyncClient, n: int, task_type: str = "demo.noop") -> list[str]:
    r = await client.post("/api/v1/tasks/batch", json={"tasks": [{"task_type": task_type}] * n})
    assert r.status_code == 201, r.text
    return [item["task_id"] for item in r.json()["items"]]


async def _claim(queue: TaskQueue, n: int) -> list[tuple[str, str]]:
    claims = await queue.claim("test-worker", "tok", n, LANES)
    return [(c.task_id, c.token) for c in claims]


async def test_detail_v1_shape(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    r = await client.post("/api/v1/tasks/summarize/", json={"content": "Rivers flow. Seas wait."})
    task_id = r.json()["task_id"]
    detail = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert detail["task_id"] == task_id
    assert detail["state"] == "PENDING"
    assert detail["content"] == "Rivers flow. Seas wait."
    assert detail["result"] is None
    assert detail["task_type"] == "summarize"
    assert detail["created_at"].endswith("Z") and detail["updated_at"].endswith("Z")
    assert detail["state_history"][0]["state"] == "PENDING"
    assert detail["state_history"][0]["timestamp"].endswith("Z")
    assert detail["error_history"] == []
    assert detail["retry_count"] == 0 and detail["max_retries"] == 3

    queue = await store(api)
    [(tid, token)] = await _claim(queue, 1)
    assert (await client.get(f"/api/v1/tasks/{tid}")).json()["state"] == "ACTIVE"
    await queue.complete_many([(tid, token, {"summary": "Water moves.", "method": "extractive"})])
    done = (await client.get(f"/api/v1/tasks/{tid}/")).json()
    assert done["state"] == "COMPLETED"
    assert done["result"] == "Water moves."  # v1: a string
    assert done["result_data"] == {"summary": "Water moves.", "method": "extractive"}
    assert done["completed_at"].endswith("Z")
    assert [h["state"] for h in done["state_history"]] == ["PENDING", "ACTIVE", "COMPLETED"]

    # Any other result is shown as JSON text.
    [other] = await _submit(client, 1)
    [(oid, otoken)] = await _claim(queue, 1)
    assert oid == other
    await queue.complete_many([(oid, otoken, {"n": 1})])
    assert (await client.get(f"/api/v1/tasks/{oid}")).json()["result"] == '{"n": 1}'


async def test_unknown_ids(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/v1/tasks/nope"),
        ("DELETE", "/api/v1/tasks/nope"),
        ("POST", "/api/v1/tasks/nope/retry"),
        ("POST", "/api/v1/tasks/nope/cancel"),
        ("GET", "/api/v1/tasks/nope/stream"),
    ):
        r = await client.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json() == {"detail": "task nope not found"}
    long_id = "x" * 201
    assert (await client.get(f"/api/v1/tasks/{long_id}")).status_code == 422


async def test_list_and_summaries(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    ids = await _submit(client, 7)
    summarize = (await client.post("/api/v1/tasks/summarize", json={"content": "abc"})).json()
    queue = await store(api)
    claimed = await _claim(queue, 3)  # the three oldest: FIFO
    await queue.complete_many([(claimed[0][0], claimed[0][1], {"ok": True})])
    await queue.fail(
        claimed[1][0], claimed[1][1], mode="dlq", error_type="invalid_input", message="bad"
    )

    r = await client.get(
        "/api/v1/tasks/summaries/",
        params={"page_size": 3, "sort_by": "created_at", "sort_order": "desc"},
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["total_items"], body["page"], body["page_size"], body["total_pages"]) == (
        8,
        1,
        3,
        3,
    )
    assert body["tasks"][0]["task_id"] == summarize["task_id"]  # submitted last
    # Compare instants, not strings: a time on a whole second is written without a fraction
    # ("...:52Z"), which sorts after "...:52.005Z" as text.
    created = [datetime.fromisoformat(t["created_at"]) for t in body["tasks"]]
    assert created == sorted(created, reverse=True)
    row = body["tasks"][0]
    assert row["content_length"] == 3 and row["has_result"] is False
    assert "content" not in row and "result" not in row
    assert row["created_at"].endswith("Z")

    last = (await client.get("/api/v1/tasks/summaries", params={"page_size": 3, "page": 3})).json()
    assert len(last["tasks"]) == 2
    beyond = (
        await client.get("/api/v1/tasks/summaries", params={"page_size": 3, "page": 9})
    ).json()
    assert beyond["tasks"] == [] and beyond["total_items"] == 8

    asc = (await client.get("/api/v1/tasks", params={"sort_order": "asc", "page_size": 8})).json()
    assert {t["task_id"] for t in asc["tasks"][:7]} == set(ids)
    assert asc["tasks"][7]["task_id"] == summarize["task_id"]
    assert asc["tasks"][0]["content"] is not None  # full detail in /tasks

    # State filters: both v1 names.
    for param in ("task_status", "status"):
        done = (await client.get("/api/v1/tasks/summaries/", params={param: "COMPLETED"})).json()
        assert [t["task_id"] for t in done["tasks"]] == [claimed[0][0]]
        assert done["tasks"][0]["has_result"] is True
        assert done["status"] == "COMPLETED"
    dlq = (await client.get("/api/v1/tasks", params={"status": "DLQ"})).json()
    assert [t["task_id"] for t in dlq["tasks"]] == [claimed[1][0]]
    assert dlq["tasks"][0]["last_error"] == "bad"
    pending = (
        await client.get("/api/v1/tasks/summaries", params={"status": "PENDING", "page_size": 2})
    ).json()
    assert pending["total_items"] == 5 and pending["total_pages"] == math.ceil(5 / 2)

    typed = (await client.get("/api/v1/tasks/summaries", params={"task_type": "summarize"})).json()
    assert [t["task_id"] for t in typed["tasks"]] == [summarize["task_id"]]
    none = (await client.get("/api/v1/tasks/summaries", params={"task_type": "pdfxtract"})).json()
    assert (none["tasks"], none["total_items"], none["total_pages"]) == ([], 0, 0)

    # Id search: exact -> a page of one; else a case-insensitive substring.
    exact = (await client.get("/api/v1/tasks/summaries", params={"task_id": ids[3]})).json()
    assert [t["task_id"] for t in exact["tasks"]] == [ids[3]]
    assert (exact["page"], exact["page_size"], exact["total_pages"]) == (1, 1, 1)
    fragment = ids[4][-10:].upper()
    partial = (await client.get("/api/v1/tasks/summaries", params={"task_id": fragment})).json()
    assert ids[4] in [t["task_id"] for t in partial["tasks"]]

    # Sorting by another field.
    by_state = (
        await client.get(
            "/api/v1/tasks/summaries",
            params={"sort_by": "state", "sort_order": "asc", "page_size": 100},
        )
    ).json()
    states = [t["state"] for t in by_state["tasks"]]
    assert states == sorted(states)

    # Dates: today includes everything, tomorrow nothing.
    today = datetime.now(UTC).date()
    all_today = (
        await client.get(
            "/api/v1/tasks/summaries", params={"start_date": str(today), "end_date": str(today)}
        )
    ).json()
    assert all_today["total_items"] == 8
    tomorrow = str(today + timedelta(days=1))
    later = (await client.get("/api/v1/tasks/summaries", params={"start_date": tomorrow})).json()
    assert later["total_items"] == 0
    iso = (
        await client.get("/api/v1/tasks/summaries", params={"end_date": "2000-01-01T00:00:00Z"})
    ).json()
    assert iso["total_items"] == 0


async def test_list_bad_params(client: httpx.AsyncClient) -> None:
    for params in (
        {"page": 0},
        {"page_size": 0},
        {"page_size": 101},
        {"status": "DONE"},
        {"task_status": "PENDING", "status": "DLQ"},
        {"sort_by": "content"},
        {"sort_order": "up"},
        {"start_date": "yesterday"},
        {"start_date": "2024-02-02", "end_date": "2024-02-01"},
        {"page": "one"},
    ):
        r = await client.get("/api/v1/tasks/summaries", params=params)
        assert r.status_code == 422, (params, r.text)
        assert "detail" in r.json()


async def test_retry(api: LiveApi, client: httpx.AsyncClient, store: StoreFactory) -> None:
    [task_id] = await _submit(client, 1)
    r = await client.post(f"/api/v1/tasks/{task_id}/retry")
    assert r.status_code == 400
    assert "PENDING" in r.json()["detail"] and "DLQ" in r.json()["detail"]

    queue = await store(api)
    [(tid, token)] = await _claim(queue, 1)
    await queue.fail(
        tid, token, mode="retry", error_type="timeout", message="slow", delay_seconds=60
    )
    assert (await client.get(f"/api/v1/tasks/{tid}")).json()["state"] == "SCHEDULED"
    assert (await client.post(f"/api/v1/tasks/{tid}/retry")).status_code == 400
    # Move it on: claim again after a manual promotion is not possible; dead-letter a fresh one.
    [second] = await _submit(client, 1)
    [(sid, stoken)] = await _claim(queue, 1)
    assert sid == second
    await queue.fail(sid, stoken, mode="dlq", error_type="invalid_input", message="broken")
    detail = (await client.get(f"/api/v1/tasks/{sid}")).json()
    assert detail["state"] == "DLQ" and detail["error_history"][0]["error"] == "broken"
    assert detail["error_history"][0]["timestamp"].endswith("Z")
    assert detail["dlq_at"] is None or detail["dlq_at"].endswith("Z")

    r = await client.post(f"/api/v1/tasks/{sid}/retry", json={"reset_retry_count": True})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "PENDING" and r.json()["retry_count"] == 0
    assert sid in await queue.queue_ids("retry", 10)
    assert sid not in await queue.queue_ids("dlq", 10)
    assert (
        await client.post(f"/api/v1/tasks/{sid}/retry", json={"reset_retry_count": "maybe"})
    ).status_code == 422


async def test_cancel(api: LiveApi, client: httpx.AsyncClient, store: StoreFactory) -> None:
    first, second = await _submit(client, 2)
    queue = await store(api)
    [(active, _token)] = await _claim(queue, 1)
    assert active == first

    r = await client.post(f"/api/v1/tasks/{second}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "CANCELLED"
    assert second not in await queue.queue_ids("primary", 10)

    r = await client.post(f"/api/v1/tasks/{active}/cancel")
    assert r.status_code == 202
    assert r.json()["state"] == "ACTIVE" and r.json()["cancel_requested"] is True
    assert (await client.get(f"/api/v1/tasks/{active}")).json()["cancel_requested"] is True

    r = await client.post(f"/api/v1/tasks/{second}/cancel")
    assert r.status_code == 409
    assert "CANCELLED" in r.json()["detail"]


async def test_delete(api: LiveApi, client: httpx.AsyncClient, store: StoreFactory) -> None:
    pending, active = await _submit(client, 2)
    queue = await store(api)
    claims = await _claim(queue, 2)
    assert [c[0] for c in claims] == [pending, active]
    [third] = await _submit(client, 1)
    for task_id in (active, third):
        r = await client.delete(f"/api/v1/tasks/{task_id}")
        assert r.status_code == 200
        assert r.json()["task_id"] == task_id
        assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 404
        assert (await client.delete(f"/api/v1/tasks/{task_id}/")).status_code == 404
    assert active not in await queue.queue_ids("active", 10)
    assert third not in await queue.queue_ids("primary", 10)
    counts = await queue.counts()
    assert counts["ACTIVE"] == 1 and counts["PENDING"] == 0


async def test_requeue_orphaned(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    [task_id] = await _submit(client, 1)
    r = await client.post("/api/v1/tasks/requeue-orphaned")
    assert r.status_code == 200
    assert r.json() == {
        "found": 0,
        "requeued": 0,
        "errors": [],
        "task_ids": [],
        "message": "no orphaned task found",
    }
    queue = await store(api)
    for key in queue.keys.primary_queues("local"):
        await queue.redis.lrem(key, 0, task_id)  # simulate the v1 bug: a PENDING task in no queue
    body = (await client.post("/api/v1/tasks/requeue-orphaned/")).json()
    assert (body["found"], body["requeued"], body["task_ids"]) == (1, 1, [task_id])
    assert task_id in await queue.queue_ids("primary", 10) + await queue.queue_ids("retry", 10)


async def test_task_stream(api: LiveApi, client: httpx.AsyncClient, store: StoreFactory) -> None:
    [task_id] = await _submit(client, 1)
    queue = await store(api)
    async with (
        asyncio.timeout(10),
        client.stream("GET", f"/api/v1/tasks/{task_id}/stream") as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        frames = data_frames(r)
        first = (await anext(frames)).json()
        assert (first["type"], first["state"], first["progress"]) == ("status", "PENDING", 0.0)

        [(tid, token)] = await _claim(queue, 1)
        assert (await anext(frames)).json()["state"] == "ACTIVE"
        await queue.progress(tid, token, 0.5, "half way")
        progress = (await anext(frames)).json()
        assert (progress["progress"], progress["progress_message"]) == (0.5, "half way")
        await queue.complete_many([(tid, token, {"ok": True})])
        done = (await anext(frames)).json()
        assert done["state"] == "COMPLETED"
        end = (await anext(frames)).json()
        assert end == {
            "type": "end",
            "task_id": task_id,
            "reason": "finished",
            "state": "COMPLETED",
        }
        assert [f async for f in frames] == []  # the server closed the stream

    # A finished task: one status frame, then the end.
    async with client.stream("GET", f"/api/v1/tasks/{task_id}/stream") as r:
        got = [f.json() async for f in data_frames(r)]
    assert [f["type"] for f in got] == ["status", "end"]


async def test_task_stream_ends_on_delete(client: httpx.AsyncClient) -> None:
    [task_id] = await _submit(client, 1)
    async with asyncio.timeout(10), client.stream("GET", f"/api/v1/tasks/{task_id}/stream") as r:
        frames = data_frames(r)
        first = await anext(frames)
        assert first.json()["state"] == "PENDING"
        assert (await client.delete(f"/api/v1/tasks/{task_id}")).status_code == 200
        last = await anext(frames)
        assert last.json() == {"type": "end", "task_id": task_id, "reason": "deleted"}


async def test_task_stream_ends_on_a_resting_failed_task(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    """FAILED is terminal: a task an older writer left in FAILED ends the stream at once (only a
    manual retry would move it), and the retry route takes it back."""
    [task_id] = await _submit(client, 1)
    queue = await store(api)
    await queue.redis.hset(queue.keys.task(task_id), "state", "FAILED")
    async with asyncio.timeout(10), client.stream("GET", f"/api/v1/tasks/{task_id}/stream") as r:
        got = [f.json() async for f in data_frames(r)]
    assert [(f["type"], f["state"]) for f in got] == [("status", "FAILED"), ("end", "FAILED")]
    states = await client.post("/api/v1/tasks/states", json={"task_ids": [task_id]})
    assert states.json()["tasks"][0]["state"] == "FAILED"
    retried = await client.post(f"/api/v1/tasks/{task_id}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "PENDING"
