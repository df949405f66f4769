"""Health routes: open without a token, /health always 200, /ready 503 when Redis is down."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from api_helpers import TOKEN, LiveApi


async def test_health_routes(api: LiveApi, client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["components"]["redis"]["status"] == "healthy"
    assert body["components"]["redis"]["latency_ms"] >= 0
    assert body["components"]["workers"]["status"] == "none"
    assert body["timestamp"].endswith("Z")
    assert body["note"]

    assert (await client.get("/live")).json() == {"status": "alive", "detail": None}
    assert (await client.get("/ready")).json()["status"] == "ready"

    info = (await client.get("/")).json()
    assert info["name"] == "AsyncTaskFlow"
    assert info["auth_required"] is False
    assert info["docs"] == "/docs"


async def test_health_is_open_with_a_token(secured: LiveApi) -> None:
    async with httpx.AsyncClient(base_url=secured.url) as anonymous:
        for path in ("/", "/health", "/live", "/ready", "/health/", "/openapi.json", "/docs"):
            r = await anonymous.get(path)
            assert r.status_code == 200, path
        assert (await anonymous.get("/")).json()["auth_required"] is True


async def test_redis_down(live_api: Callable[..., LiveApi]) -> None:
    from support import free_port

    dead = live_api(redis_url=f"redis://127.0.0.1:{free_port()}/0", api_token=TOKEN)
    async with dead.client() as client:
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "unhealthy"
        assert health.json()["components"]["redis"]["status"] == "unhealthy"

        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready"

        # A route that needs the store answers 503 with JSON, never a 500 or a traceback.
        status = await client.get("/api/v1/queues/status")
        assert status.status_code == 503
        assert "Redis" in status.json()["detail"]
        assert status.headers["retry-after"] == "1"
        submit = await client.post("/api/v1/tasks/summarize/", json={"content": "hello"})
        assert submit.status_code == 503
