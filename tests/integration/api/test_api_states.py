"""``POST /api/v1/tasks/states``: where many tasks stand, without content or result.

Contract: body ``{"task_ids": [1..1000 ids]}``; 200 ``{"tasks": [{task_id, state, updated_at,
retry_count, progress}], "missing": [...]}``, tasks in the order asked with repeats collapsed,
the same bearer auth as every /api route, 422 for an empty or oversized list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from api_helpers import TOKEN, LiveApi

from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask

StoreFactory = Callable[[LiveApi], Awaitable[TaskQueue]]
LANES: dict[str, int | None] = {"local": None, "llm": None}
PATH = "/api/v1/tasks/states"
ITEM_FIELDS = {"task_id", "state", "updated_at", "retry_count", "progress"}
SECRET = "a secret input text nobody polling should receive"


async def _states(client: httpx.AsyncClient, ids: list[str]) -> dict[str, Any]:
    r = await client.post(PATH, json={"task_ids": ids})
    assert r.status_code == 200, r.text
    assert "content" not in r.text and "result" not in r.text and SECRET not in r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"tasks", "missing"}
    for item in body["tasks"]:
        assert set(item) == ITEM_FIELDS, item
    return body


async def _summarize(client: httpx.AsyncClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = await client.post("/api/v1/tasks/summarize", json={"content": f"{SECRET} {i}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["task_id"])
    return ids


async def test_shape_order_and_missing(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    a, b, c, d = await _summarize(client, 4)
    queue = await store(api)
    claims = {cl.task_id: cl for cl in await queue.claim("w", "tok", 3, LANES)}
    assert set(claims) == {a, b, c}  # FIFO
    await queue.complete_many([(a, "tok", {"summary": SECRET, "method": "test"})])
    assert await queue.progress(b, "tok", 0.5, "half way")
    assert await queue.fail(c, "tok", mode="retry", message="flaky", delay_seconds=60) == (
        "SCHEDULED"
    )

    asked = ["nope-1", d, a, b, "nope-2", c, a, "nope-1", d]
    body = await _states(client, asked)
    assert [t["task_id"] for t in body["tasks"]] == [d, a, b, c]  # order asked, once each
    assert body["missing"] == ["nope-1", "nope-2"]
    by_id = {t["task_id"]: t for t in body["tasks"]}
    assert by_id[a]["state"] == "COMPLETED"
    assert by_id[b]["state"] == "ACTIVE" and by_id[b]["progress"] == 0.5
    assert by_id[c]["state"] == "SCHEDULED" and by_id[c]["retry_count"] == 1
    assert by_id[d]["state"] == "PENDING" and by_id[d]["progress"] == 0.0
    for item in body["tasks"]:
        assert item["updated_at"].endswith("Z")
        datetime.fromisoformat(item["updated_at"])

    # The same values the full detail shows, for every task.
    lookup = await client.post("/api/v1/tasks/lookup", json={"task_ids": asked})
    assert lookup.status_code == 200
    for detail in lookup.json()["tasks"]:
        mine = by_id[detail["task_id"]]
        for name in ITEM_FIELDS:
            assert mine[name] == detail[name], (name, mine, detail)
    # A new task's updated_at is its creation time.
    assert by_id[d]["updated_at"] == next(
        t["created_at"] for t in lookup.json()["tasks"] if t["task_id"] == d
    )


async def test_all_missing_and_the_limits(client: httpx.AsyncClient) -> None:
    many = [f"id-{i}" for i in range(1000)]
    body = await _states(client, many)
    assert body == {"tasks": [], "missing": many}
    bads: list[dict[str, Any]] = [
        {"task_ids": []},
        {"task_ids": [*many, "one-more"]},
        {},
        {"task_ids": "abc"},
        {"task_ids": [1, 2]},
        {"task_ids": ["a", None]},
    ]
    for bad in bads:
        r = await client.post(PATH, json=bad)
        assert r.status_code == 422, (bad, r.text[:200])
        assert "detail" in r.json()
    # GET is the one-task route, as for /lookup: no task has the id "states".
    assert (await client.get(PATH)).json() == {"detail": "task states not found"}
    # The body is /lookup's: what it accepts, this accepts (an unknown field is ignored).
    extra = {"task_ids": ["a"], "extra": True}
    assert (await client.post("/api/v1/tasks/lookup", json=extra)).status_code == 200
    assert (await client.post(PATH, json=extra)).json() == {"tasks": [], "missing": ["a"]}


async def test_a_deleted_or_damaged_task(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    gone, damaged = await _summarize(client, 2)
    assert (await client.delete(f"/api/v1/tasks/{gone}")).status_code == 200
    queue = await store(api)
    await queue.redis.hset(
        queue.keys.task(damaged),
        mapping={
            b"state": b"BOGUS",
            b"progress": b"NaN",
            b"retry_count": b"\xff many",
            b"updated_at": b"1e300",
        },
    )
    body = await _states(client, [gone, damaged])
    assert body["missing"] == [gone]
    [item] = body["tasks"]
    assert item["state"] == "FAILED"  # a state no version writes, shown as the detail does
    assert item["progress"] == 0.0 and item["retry_count"] == 0
    assert item["updated_at"].startswith("1970-01-01")


async def test_big_payloads_stay_out(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    """A task with a large payload and result costs the poller a few dozen bytes."""
    queue = await store(api)
    [made] = await queue.submit_many(
        [NewTask(task_type="demo.noop", payload={"blob_of_text": "x" * 200_000})]
    )
    [claim] = await queue.claim("w", "tok", 1, LANES)
    await queue.complete_many([(claim.task_id, "tok", {"big": "y" * 200_000})])
    r = await client.post(PATH, json={"task_ids": [made.task_id]})
    assert r.status_code == 200
    assert len(r.content) < 300, len(r.content)
    assert r.json()["tasks"][0]["state"] == "COMPLETED"


@pytest.mark.parametrize("slash", ["", "/"])
async def test_needs_the_token(secured: LiveApi, slash: str) -> None:
    body = {"task_ids": ["x"]}
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await anonymous.post(PATH + slash, json=body, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = await anonymous.post(PATH + slash, json=body, params={"token": TOKEN})
        assert r.status_code == 401  # ?token= is for event streams only
    async with secured.client() as client:
        r = await client.post(PATH + slash, json=body)
        assert r.status_code == 200 and r.json() == {"tasks": [], "missing": ["x"]}
