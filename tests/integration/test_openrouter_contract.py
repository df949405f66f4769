"""Every documented OpenRouter answer (tests/fixtures/openrouter/*.json) against the client.

For each fixture: (a) the pure classification (``classify_error`` / ``parse_chat_response``)
gives the expected class and delays; (b) the fake OpenRouter serves the fixture over real HTTP
to an ``OpenRouterClient`` wired to a real ``RateLimiter`` and ``CircuitBreaker`` on the test
Redis, and the class, the breaker's count, the shared cool-down and the hold are checked.
The expectations are the team's (see the README next to the fixtures and docs/llm.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from support import fake_control, make_settings
from taskflow_server.config import Settings
from taskflow_server.llm.monitor import OpenRouterMonitor
from taskflow_server.llm.openrouter import (
    ChatResult,
    OpenRouterClient,
    UpstreamError,
    classify_error,
    parse_chat_response,
)
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.errors import retry_delay
from taskflow_server.resilience.ratelimit import RateLimiter
from taskflow_server.store.keys import Keys
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread, load_fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openrouter"
PATHS = sorted(FIXTURES.glob("*.json"))
KEY = "sk-contract"
KEYS = Keys("tfcontract")
MESSAGES = [{"role": "user", "content": "The river flooded the town. Everyone left. It rained."}]
TOLERANCE = 0.10


def _raw(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _approx(expected: float) -> Any:
    return pytest.approx(expected, rel=TOLERANCE, abs=0.2)


def _data_chunks(stream: list[Any]) -> Iterator[dict[str, Any]]:
    for line in stream:
        if isinstance(line, str) and line.startswith("data:"):
            payload = line[5:].strip()
            if payload != "[DONE]":
                yield json.loads(payload)


def _check_error(exc: UpstreamError, expect: dict[str, Any]) -> None:
    assert exc.error_class.value == expect["class"]
    if expect.get("retry_after_s") is not None:
        assert exc.retry_after is not None
        assert exc.retry_after == _approx(expect["retry_after_s"])
    if expect.get("affordable_tokens") is not None:
        assert getattr(exc, "affordable_tokens", None) == expect["affordable_tokens"]


# ----------------------------------------------------------------------------- (a) pure


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_classification(path: Path) -> None:
    fixture = load_fixture(path)
    expect = fixture["expect"]
    headers = dict(fixture.get("headers") or {})
    if fixture.get("endpoint") == "/key":
        return  # the live check asks the monitor and looks at the limiter
    if "stream" in fixture:
        errors = [c for c in _data_chunks(fixture["stream"]) if isinstance(c.get("error"), dict)]
        if expect["class"] == "ok":
            assert not errors
            return
        assert errors, "a failing stream fixture needs an error chunk"
        with pytest.raises(UpstreamError) as info:
            parse_chat_response(errors[0], headers)
        _check_error(info.value, expect)
        return
    status = int(fixture.get("status") or 200)
    body = fixture["body"] if "body" in fixture else fixture["text"]
    if status != 200:
        _check_error(classify_error(status, body, headers), expect)
        return
    if expect["class"] == "ok":
        result = parse_chat_response(body, headers)
        assert isinstance(result, ChatResult)
        if expect.get("truncated"):
            assert result.finish_reason == "length"
        return
    with pytest.raises(UpstreamError) as info:
        parse_chat_response(body, headers)
    _check_error(info.value, expect)
    for attempt, base in enumerate(expect.get("schedule_s") or []):
        delay = retry_delay(expect["class"], attempt)
        assert delay is not None and base <= delay <= base * (1 + TOLERANCE)


# ----------------------------------------------------------------------------- (b) live


def _settings(fake: FakeOpenRouterThread) -> Settings:
    return make_settings(
        openrouter_api_key=KEY,
        openrouter_base_url=fake.base_url,
        openrouter_model="fake/model",
        openrouter_timeout=5.0,
        breaker_failure_threshold=50,
        breaker_min_calls=50,
    )


async def _enqueue(fake: FakeOpenRouterThread, stems: list[str]) -> None:
    await fake_control(fake.root_url, enqueue=[f"fixture:{s}" for s in stems])


async def _chat_requests(fake: FakeOpenRouterThread) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        return list((await http.get("/_requests")).json())


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
async def test_live(path: Path, redis: Redis, fake_server: FakeOpenRouterThread) -> None:
    raw = _raw(path)
    expect = raw["expect"]
    key_answer = raw.get("endpoint") == "/key"
    fake = fake_server.reset(
        FakeConfig(
            keys=frozenset({KEY}),
            fixtures=FIXTURES,
            key_fixture=path.stem if key_answer else None,
        )
    )
    settings = _settings(fake)
    limiter = RateLimiter(redis, KEYS, "openrouter", None, 10)
    breaker = CircuitBreaker(redis, KEYS, "openrouter", settings)
    client = OpenRouterClient(settings, limiter=limiter, breaker=breaker)
    try:
        if key_answer:
            await _check_key_answer(redis, settings, client, limiter, expect)
            return
        # A cut answer is asked again once with more room; serve the cut answer both times.
        repeats = 2 if expect.get("truncated") else 1
        await _enqueue(fake, [path.stem] * repeats)
        before = (await breaker.status())["failure_count"]
        max_tokens = (raw.get("request") or {}).get("max_tokens")
        call = client.chat(MESSAGES, max_tokens=max_tokens, stream="stream" in raw)
        if expect["action"] == "complete":
            result = await call
            assert isinstance(result, ChatResult)
            await _check_completed(fake, result, expect, max_tokens)
        else:
            with pytest.raises(UpstreamError) as info:
                await call
            _check_error(info.value, expect)
        status = await breaker.status()
        grew = status["failure_count"] - before
        assert grew == (1 if expect["breaker"] == "counts" else 0)
        remaining = await limiter.cooldown_remaining()
        if expect.get("cooldown_s") is not None:
            assert remaining == _approx(expect["cooldown_s"])
        else:
            assert remaining == pytest.approx(0.0, abs=0.05)
        assert status.get("hold") == expect.get("hold")
    finally:
        await client.aclose()


async def _check_completed(
    fake: FakeOpenRouterThread, result: ChatResult, expect: dict[str, Any], max_tokens: Any
) -> None:
    requests = await _chat_requests(fake)
    if expect.get("affordable_tokens") is not None:
        # Re-sent once at once with what the key can afford; the second answer is normal.
        assert len(requests) == 2
        if "max_tokens" in requests[1]:
            assert requests[1]["max_tokens"] == expect["affordable_tokens"]
    elif expect.get("truncated"):
        # Asked again once with twice the room; cut again, the result is kept as truncated.
        assert len(requests) == 2
        if max_tokens is not None and "max_tokens" in requests[1]:
            assert requests[1]["max_tokens"] == 2 * max_tokens
        assert getattr(result, "truncated", None) is True
    else:
        assert len(requests) == 1
        assert result.content


async def _check_key_answer(
    redis: Redis,
    settings: Settings,
    client: OpenRouterClient,
    limiter: RateLimiter,
    expect: dict[str, Any],
) -> None:
    data = await client.key_status()
    assert isinstance(data, dict)
    monitor = OpenRouterMonitor(redis, KEYS, settings, client)
    await monitor.status(force_refresh=True)
    if "rate" in expect and expect["rate"] is None:
        assert await limiter.effective_rate() is None
