"""The OpenRouter monitor against the fake OpenRouter and a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from support import eventually, free_port, make_settings
from taskflow_server.config import Rate, Settings
from taskflow_server.llm.monitor import OpenRouterMonitor
from taskflow_server.llm.openrouter import OpenRouterClient
from taskflow_server.llm.provider import OfflineProvider, OpenRouterProvider, make_provider
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.ratelimit import RateLimiter
from taskflow_server.store.keys import Keys
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread

KEY = "sk-test"
KEYS = Keys("tfllm")


V1_FIELDS = {
    "status",
    "message",
    "balance",
    "usage_today",
    "usage_month",
    "last_check",
    "error_details",
    "consecutive_failures",
    "circuit_breaker_open",
    "cache_hit",
}


@pytest.fixture
def fake(fake_server: FakeOpenRouterThread) -> FakeOpenRouterThread:
    return fake_server.reset(FakeConfig(keys=frozenset({KEY}), cost_per_1k_tokens=0.5))


def settings(base_url: str, key: str | None = KEY, **extra: Any) -> Settings:
    return make_settings(
        openrouter_api_key=key, openrouter_base_url=base_url, openrouter_timeout=2.0, **extra
    )


def monitor_for(
    redis: Redis, s: Settings, *, limiter: RateLimiter | None = None, breaker: Any = None
) -> OpenRouterMonitor:
    client = OpenRouterClient(s, limiter=limiter, breaker=breaker)
    monitor = OpenRouterMonitor(redis, KEYS, s, client)
    client.metrics = monitor
    return monitor


async def close(monitor: OpenRouterMonitor) -> None:
    if monitor.client is not None:
        await monitor.client.aclose()


async def test_offline_is_api_key_missing(redis: Redis) -> None:
    s = make_settings(openrouter_api_key=None)
    status = await OpenRouterMonitor(redis, KEYS, s, None).status()
    assert set(status) >= V1_FIELDS
    assert status["status"] == "api_key_missing"
    assert status["provider"] == "offline"
    assert "offline" in status["message"]
    assert status["last_check"].endswith("Z")


async def test_active_status_is_cached_and_force_refresh_works(
    redis: Redis, fake: FakeOpenRouterThread
) -> None:
    monitor = monitor_for(redis, settings(fake.base_url))
    try:
        first = await monitor.status()
        assert set(first) >= V1_FIELDS
        assert first["status"] == "active" and first["cache_hit"] is False
        assert first["usage_today"] == 0.0  # a new key with no usage is active, not exhausted
        checks = fake.state.snapshot()["requests"]
        second = await monitor.status()
        assert second["cache_hit"] is True and second["status"] == "active"
        assert fake.state.snapshot()["requests"] == checks  # served from Redis
        ttl_ms = await redis.pttl(KEYS.openrouter("status"))
        assert 55_000 <= ttl_ms <= 60_000
        third = await monitor.status(force_refresh=True)
        assert third["cache_hit"] is False
        assert fake.state.snapshot()["requests"] > checks
    finally:
        await close(monitor)


async def test_cache_expires(redis: Redis, fake: FakeOpenRouterThread) -> None:
    monitor = monitor_for(redis, settings(fake.base_url, monitor_cache_seconds=0.2))
    try:
        assert (await monitor.status())["cache_hit"] is False
        assert (await monitor.status())["cache_hit"] is True

        async def expired() -> bool:
            return not (await monitor.status())["cache_hit"]

        await eventually(expired, "the 0.2 s status cache to expire", 3)
    finally:
        await close(monitor)


async def test_invalid_key(redis: Redis, fake: FakeOpenRouterThread) -> None:
    monitor = monitor_for(redis, settings(fake.base_url, key="sk-wrong"))
    try:
        status = await monitor.status()
    finally:
        await close(monitor)
    assert status["status"] == "api_key_invalid"
    assert status["error_details"]["error_class"] == "auth"


async def test_credits_exhausted_when_the_key_limit_is_spent(
    redis: Redis, fake: FakeOpenRouterThread
) -> None:
    fake.state.config.key_limit = 0.0
    monitor = monitor_for(redis, settings(fake.base_url))
    try:
        status = await monitor.status()
    finally:
        await close(monitor)
    assert status["status"] == "credits_exhausted"
    assert status["limit_remaining"] == 0.0 and status["balance"] == 0.0


async def test_unreachable_upstream_is_error(redis: Redis) -> None:
    monitor = monitor_for(redis, settings(f"http://127.0.0.1:{free_port()}/api/v1"))
    try:
        status = await monitor.status()
    finally:
        await close(monitor)
    assert status["status"] == "error"
    assert status["error_details"]["error_class"] == "timeout"


async def test_live_overlay_of_cooldown_and_breaker(
    redis: Redis, fake: FakeOpenRouterThread
) -> None:
    s = settings(fake.base_url)
    limiter = RateLimiter(redis, KEYS, "openrouter", None, 8)
    breaker = CircuitBreaker(redis, KEYS, "openrouter", s)
    monitor = monitor_for(redis, s, limiter=limiter, breaker=breaker)
    try:
        assert (await monitor.status())["status"] == "active"
        await limiter.set_cooldown(5)
        cached = await monitor.status()
        assert cached["cache_hit"] and cached["status"] == "rate_limited"
        await breaker.record_failure("credits")
        status = await monitor.status()
        assert status["circuit_breaker_open"] is True
        assert status["status"] == "credits_exhausted"
        assert status["breaker"]["state"] == "open"
    finally:
        await close(monitor)


async def test_key_rate_limit_is_shown_but_never_adopted(
    redis: Redis, fake: FakeOpenRouterThread
) -> None:
    fake.state.set_rate(Rate.parse("50/10s"))
    limiter = RateLimiter(redis, KEYS, "openrouter", None, 8)
    monitor = monitor_for(redis, settings(fake.base_url), limiter=limiter)
    try:
        status = await monitor.status()
    finally:
        await close(monitor)
    # OpenRouter documents /key's rate_limit as deprecated (live keys answer -1): shown, not used.
    assert status["rate_limit"]["interval"] == "10s"  # as /key sent it
    assert await limiter.effective_rate() is None


async def test_metrics_count_calls_tokens_cost_and_failures(
    redis: Redis, fake: FakeOpenRouterThread
) -> None:
    monitor = monitor_for(redis, settings(fake.base_url))
    assert monitor.client is not None
    messages = [{"role": "user", "content": "Short text. Two sentences."}]
    try:
        await monitor.client.chat(messages)
        await monitor.client.chat(messages)
        fake.state.queue.extend(["502", "429"])
        for _ in range(2):
            with pytest.raises(Exception):  # noqa: B017 - any classified failure
                await monitor.client.chat(messages)
        assert (await monitor.status())["consecutive_failures"] == 2
        report = await monitor.metrics(days=3)
    finally:
        await close(monitor)
    assert report["days"] == 3 and report["generated_at"].endswith("Z")
    assert len(report["metrics"]) == 3
    today = report["metrics"][datetime.now(UTC).strftime("%Y-%m-%d")]
    assert today["total_calls"] == 4
    assert today["successful_calls"] == 2 and today["failed_calls"] == 2
    assert today["failures_by_class"] == {"unavailable": 1, "rate_limited": 1}
    assert today["prompt_tokens"] > 0 and today["completion_tokens"] > 0
    assert today["cost"] > 0
    assert "state_active" in today
    key = KEYS.openrouter(f"metrics:{datetime.now(UTC).strftime('%Y-%m-%d')}")
    ttl = await redis.ttl(key)
    assert 29 * 86400 < ttl <= 30 * 86400


async def test_seconds_per_state(redis: Redis, fake: FakeOpenRouterThread) -> None:
    s = settings(fake.base_url)
    limiter = RateLimiter(redis, KEYS, "openrouter", None, 8)
    monitor = monitor_for(redis, s, limiter=limiter)

    async def seconds_in(state: str) -> float:
        (today,) = (await monitor.metrics(days=1))["metrics"].values()
        return float(today.get(f"state_{state}", 0.0))

    async def at_least(state: str, seconds: float) -> bool:
        return await seconds_in(state) >= seconds

    try:
        await monitor.status()
        # The current state's time grows with the clock (Redis TIME), without another call.
        await eventually(lambda: at_least("active", 0.2), "0.2 s counted as active")
        await limiter.set_cooldown(5)
        assert (await monitor.status())["status"] == "rate_limited"
        active = await seconds_in("active")  # closed by the change of state
        assert active >= 0.2
        await eventually(lambda: at_least("rate_limited", 0.1), "0.1 s counted as rate_limited")
        assert await seconds_in("active") == pytest.approx(active, abs=0.002)
    finally:
        await close(monitor)


async def test_make_provider(redis: Redis, fake: FakeOpenRouterThread) -> None:
    offline = make_provider(make_settings(openrouter_api_key=None), redis, KEYS)
    assert isinstance(offline, OfflineProvider)
    assert (offline.name, offline.model) == ("offline", "extractive")
    online = make_provider(settings(fake.base_url), redis, KEYS)
    try:
        assert isinstance(online, OpenRouterProvider)
        assert online.client.breaker is online.breaker
        assert online.client.limiter is online.limiter
        result = await online.summarize("The dam broke. The valley flooded. Nobody was hurt.")
        assert result.provider == "openrouter" and result.summary
        assert result.usage["total_tokens"] > 0
        report = await online.monitor.metrics(days=1)
        (today,) = report["metrics"].values()
        assert today["successful_calls"] == 1
    finally:
        await online.aclose()
