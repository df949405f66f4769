"""The daily budget and holds through the API: a live server, a real Redis, the fake OpenRouter.

``GET/PUT /api/v1/openrouter/budget`` read and set the cap every process shares; when today's
recorded cost reaches it the breaker holds LLM work (reason ``budget``), ``/openrouter/status``
and the workers view say so, and raising the budget lifts the hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from api_helpers import LiveApi
from redis.asyncio import Redis

from taskflow_server.llm.monitor import OpenRouterMonitor
from taskflow_server.llm.openrouter import OpenRouterClient
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.store.keys import Keys
from taskflow_server.testing.openrouter import FakeOpenRouterThread

KEY = "sk-budget-test"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenRouterThread]:
    """A fake OpenRouter on loopback for the server's key checks."""
    with FakeOpenRouterThread() as server:
        yield server


@pytest.fixture
def priced(live_api: Callable[..., LiveApi], upstream: FakeOpenRouterThread) -> LiveApi:
    """An API-only server talking to the fake upstream, with a $1.00 daily budget."""
    return live_api(
        openrouter_api_key=KEY,
        openrouter_base_url=upstream.base_url,
        workers=0,
        budget_usd=1.0,
    )


def _monitor(api: LiveApi, redis: Redis) -> OpenRouterMonitor:
    settings = api.settings
    keys = Keys(settings.key_prefix)
    breaker = CircuitBreaker(redis, keys, "openrouter", settings)
    client = OpenRouterClient(settings, breaker=breaker)
    return OpenRouterMonitor(redis, keys, settings, client)


async def test_budget_is_read_set_and_validated(priced: LiveApi) -> None:
    async with priced.client() as http:
        first = await http.get("/api/v1/openrouter/budget")
        assert first.status_code == 200, first.text
        assert first.json() == {
            "daily_usd": 1.0,
            "spent_today_usd": 0.0,
            "remaining_usd": 1.0,
            "held": False,
        }
        raised = await http.put("/api/v1/openrouter/budget", json={"daily_usd": 2.5})
        assert raised.status_code == 200 and raised.json()["daily_usd"] == 2.5
        assert (await http.get("/api/v1/openrouter/budget")).json()["remaining_usd"] == 2.5
        removed = await http.put("/api/v1/openrouter/budget", json={"daily_usd": None})
        assert removed.json()["daily_usd"] is None and removed.json()["remaining_usd"] is None
        for bad in ({"daily_usd": -1}, {"daily_usd": "lots"}, {}, {"daily_usd": 1, "x": 2}):
            answer = await http.put("/api/v1/openrouter/budget", json=bad)
            assert answer.status_code == 422, (bad, answer.text)
            assert "detail" in answer.json()


async def test_a_spent_budget_holds_and_raising_it_lifts_the_hold(
    priced: LiveApi, redis: Redis
) -> None:
    monitor = _monitor(priced, redis)
    try:
        await monitor.record_call(True, None, {"prompt_tokens": 10, "cost": 0.6})
        await monitor.record_call(True, None, {"prompt_tokens": 10, "cost": 0.5})
        async with priced.client() as http:
            budget = (await http.get("/api/v1/openrouter/budget")).json()
            assert budget["held"] is True
            assert budget["spent_today_usd"] == pytest.approx(1.1)
            assert budget["remaining_usd"] == 0.0
            status = (await http.get("/api/v1/openrouter/status")).json()
            assert status["hold"]["reason"] == "budget"
            assert status["hold"]["until"] is not None  # midnight UTC
            assert status["status"] == "credits_exhausted"
            assert status["budget"]["held"] is True
            workers = (await http.get("/api/v1/workers/")).json()
            assert workers["circuit_breaker"]["hold"] == "budget"
            raised = await http.put("/api/v1/openrouter/budget", json={"daily_usd": 5.0})
            assert raised.json()["held"] is False
            status = (await http.get("/api/v1/openrouter/status")).json()
            assert status["hold"] is None
    finally:
        await monitor.client.aclose()  # type: ignore[union-attr]


async def test_status_shows_a_key_limit_hold(priced: LiveApi, redis: Redis) -> None:
    monitor = _monitor(priced, redis)
    try:
        assert monitor.client is not None and monitor.client.breaker is not None
        await monitor.client.breaker.hold("key_limit")
        async with priced.client() as http:
            status = (await http.get("/api/v1/openrouter/status")).json()
        assert status["hold"]["reason"] == "key_limit" and status["hold"]["until"] is None
        assert "limit" in status["hold"]["message"]
    finally:
        await monitor.client.aclose()  # type: ignore[union-attr]


async def test_offline_server_reports_no_hold(client: httpx.AsyncClient) -> None:
    status = (await client.get("/api/v1/openrouter/status")).json()
    assert status["hold"] is None
    assert status["budget"]["spent_today_usd"] == 0.0
