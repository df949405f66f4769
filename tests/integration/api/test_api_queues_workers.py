"""Queues (status, contents, DLQ, the v1 status stream), workers, breaker, OpenRouter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from api_helpers import LiveApi, data_frames

from taskflow_server.store.queue import TaskQueue

StoreFactory = Callable[[LiveApi], Awaitable[TaskQueue]]
LANES: dict[str, int | None] = {"local": None, "llm": None}


async def _submit(client: httpx.AsyncClient, items: list[dict[str, object]]) -> list[str]:
    r = await client.post("/api/v1/tasks/batch", json={"tasks": items})
    assert r.status_code == 201, r.text
    return [item["task_id"] for item in r.json()["items"]]


async def test_queue_status(api: LiveApi, client: httpx.AsyncClient, store: StoreFactory) -> None:
    empty = (await client.get("/api/v1/queues/status")).json()
    assert empty["queues"] == {
        "primary": 0,
        "retry": 0,
        "scheduled": 0,
        "dlq": 0,
        "active": 0,
        "primary_by_priority": {"high": 0, "default": 0, "low": 0},
    }
    assert set(empty["states"]) == {
        "PENDING",
        "ACTIVE",
        "SCHEDULED",
        "COMPLETED",
        "FAILED",
        "DLQ",
        "CANCELLED",
    }
    assert 0 <= empty["retry_ratio"] <= 1

    ids = await _submit(
        client,
        [
            {"task_type": "demo.noop", "priority": "low"},
            {"task_type": "demo.noop", "priority": "high"},
            {"task_type": "demo.noop"},
            {"task_type": "demo.noop"},
        ],
    )
    queue = await store(api)
    [claim] = await queue.claim("w", "t", 1, LANES)
    assert claim.task_id == ids[1]  # high first
    [second] = await queue.claim("w", "t2", 1, LANES)
    await queue.fail(second.task_id, "t2", mode="dlq", error_type="invalid_input", message="x")

    status = (await client.get("/api/v1/queues/status/")).json()
    assert status["queues"]["primary"] == 2 and isinstance(status["queues"]["primary"], int)
    assert status["queues"]["primary_by_priority"] == {"high": 0, "default": 1, "low": 1}
    assert (status["queues"]["active"], status["queues"]["dlq"]) == (1, 1)
    assert status["states"]["PENDING"] == 2 and status["states"]["DLQ"] == 1

    assert second.task_id == ids[2]  # then default, FIFO
    primary = (await client.get("/api/v1/queues/primary/tasks", params={"limit": 10})).json()
    assert primary == [ids[3], ids[0]]  # the order they will be taken: default, then low
    assert (await client.get("/api/v1/queues/active/tasks")).json() == [claim.task_id]
    assert (await client.get("/api/v1/queues/dlq/tasks/")).json() == [second.task_id]
    assert (await client.get("/api/v1/queues/retry/tasks")).json() == []
    assert len((await client.get("/api/v1/queues/primary/tasks", params={"limit": 1})).json()) == 1

    dlq = (await client.get("/api/v1/queues/dlq", params={"limit": 5})).json()
    assert [t["task_id"] for t in dlq] == [second.task_id]
    assert dlq[0]["state"] == "DLQ" and dlq[0]["error_type"] == "invalid_input"

    for path, params in (
        ("/api/v1/queues/bogus/tasks", {}),
        ("/api/v1/queues/primary/tasks", {"limit": 0}),
        ("/api/v1/queues/primary/tasks", {"limit": 1001}),
        ("/api/v1/queues/dlq", {"limit": -1}),
    ):
        r = await client.get(path, params=params)
        assert r.status_code == 422, (path, params)


async def test_status_stream_v1(api: LiveApi, client: httpx.AsyncClient) -> None:
    async with asyncio.timeout(10), client.stream("GET", "/api/v1/queues/status/stream") as r:
        assert r.status_code == 200
        # No wildcard CORS (the dashboard reads it same-origin, through its proxy; other
        # origins are allowed by TASKFLOW_CORS_ORIGINS only).
        assert "access-control-allow-origin" not in r.headers
        assert r.headers["x-accel-buffering"] == "no"
        frames = data_frames(r)
        first = await anext(frames)
        assert first.event is None and first.id is None  # unnamed, like v1
        initial = first.json()
        assert initial["type"] == "initial_status"
        for key in ("primary", "retry", "scheduled", "dlq"):
            assert isinstance(initial["queue_depths"][key], int)
        assert initial["state_counts"]["COMPLETED"] == 0
        assert initial["retry_ratio"] is not None
        assert initial["timestamp"].endswith("Z")

        # 50 changes in a burst are coalesced into a few full snapshots (<= 4 a second).
        started = time.monotonic()
        await _submit(client, [{"task_type": "demo.noop"}] * 25)
        await _submit(client, [{"task_type": "demo.noop"}] * 25)
        updates = []
        while True:
            update = (await anext(frames)).json()
            assert update["type"] == "queue_update"
            updates.append((time.monotonic(), update))
            if update["queue_depths"]["primary"] == 50:
                break
        assert len(updates) <= 2 + 4 * (time.monotonic() - started)
        assert updates[-1][1]["state_counts"]["PENDING"] == 50


async def test_workers_and_breaker(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    none = (await client.get("/api/v1/workers/")).json()
    assert none["total_workers"] == 0 and none["worker_details"] == []
    assert none["overall_status"] == "degraded"

    queue = await store(api)
    await queue.heartbeat(
        "worker-a",
        {
            "host": "box",
            "pid": 42,
            "started": time.time(),
            "concurrency": 8,
            "active": 1,
            "completed": 5,
            "failed": 1,
            "active_tasks": ["t1"],
        },
    )
    body = (await client.get("/api/v1/workers")).json()
    assert (body["total_workers"], body["healthy_workers"], body["stale_workers"]) == (1, 1, 0)
    assert body["overall_status"] == "healthy"
    [worker] = body["worker_details"]
    assert worker["worker_id"] == "worker-a" and worker["status"] == "healthy"
    assert worker["circuit_breaker"]["state"] == "closed"
    assert isinstance(worker["last_heartbeat"], float) and worker["heartbeat_age"] < 5
    assert (worker["host"], worker["pid"], worker["concurrency"], worker["completed"]) == (
        "box",
        42,
        8,
        5,
    )
    assert worker["active_tasks"] == ["t1"]
    assert body["circuit_breaker_states"] == {"closed": 1}

    opened = await client.post(
        "/api/v1/workers/open-circuit-breaker", json={"reason": "maintenance"}
    )
    assert opened.status_code == 200, opened.text
    assert opened.json()["breaker"]["state"] == "open"
    assert opened.json()["successful_opens"] == 1
    assert opened.json()["results"] == [
        {"worker_id": "worker-a", "status": "success", "state": "open"}
    ]
    seen = (await client.get("/api/v1/workers/")).json()
    assert seen["worker_details"][0]["circuit_breaker"]["state"] == "open"
    assert "maintenance" in seen["worker_details"][0]["circuit_breaker"]["note"]

    reset = await client.post("/api/v1/workers/reset-circuit-breaker/")
    assert reset.status_code == 200
    assert reset.json()["breaker"]["state"] == "closed" and reset.json()["successful_resets"] == 1
    assert (await client.post("/api/v1/workers/open-circuit-breaker")).status_code == 200  # no body
    bad = await client.post("/api/v1/workers/open-circuit-breaker", json={"reason": "x" * 501})
    assert bad.status_code == 422


async def test_openrouter_offline(client: httpx.AsyncClient) -> None:
    status = await client.get("/api/v1/openrouter/status", params={"force_refresh": True})
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "api_key_missing"
    metrics = await client.get("/api/v1/openrouter/metrics/", params={"days": 3})
    assert metrics.status_code == 200
    assert metrics.json()["days"] == 3 and len(metrics.json()["metrics"]) == 3
    for params in ({"days": 0}, {"days": 31}, {"days": "week"}):
        assert (await client.get("/api/v1/openrouter/metrics", params=params)).status_code == 422
    assert (
        await client.get("/api/v1/openrouter/status", params={"force_refresh": "perhaps"})
    ).status_code == 422
