"""OpenRouterClient against the fake OpenRouter served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from taskflow_server.config import Rate, Settings
from taskflow_server.llm.fake_openrouter import FakeConfig, FakeOpenRouterThread
from taskflow_server.llm.openrouter import ChatResult, OpenRouterClient, UpstreamError
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.errors import ErrorClass
from taskflow_server.resilience.ratelimit import RateLimiter
from taskflow_server.store.keys import Keys

KEY = "sk-test"
MGMT = "sk-mgmt"
KEYS = Keys("tfllm")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MESSAGES = [{"role": "user", "content": "The river flooded the town. Everyone left. It rained."}]


class Recorder:
    """A CallRecorder that keeps every record."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str | None, dict[str, Any]]] = []

    async def record_call(self, ok: bool, error_class: str | None, usage: dict[str, Any]) -> None:
        self.calls.append((ok, error_class, usage))


@pytest.fixture
def fake(fake_server: FakeOpenRouterThread) -> FakeOpenRouterThread:
    """The module's server with a fresh state for this test."""
    return fake_server.reset(
        FakeConfig(keys=frozenset({KEY}), management_keys=frozenset({MGMT}), retry_after=2.0)
    )


def settings(fake: FakeOpenRouterThread, key: str | None = KEY, **extra: Any) -> Settings:
    return Settings(
        openrouter_api_key=key,
        openrouter_base_url=fake.base_url,
        openrouter_model="fake/model",
        openrouter_timeout=1.0,
        **extra,
    )


@pytest.fixture
async def client(fake: FakeOpenRouterThread) -> AsyncIterator[OpenRouterClient]:
    c = OpenRouterClient(settings(fake))
    yield c
    await c.aclose()


async def test_plain_chat(client: OpenRouterClient, fake: FakeOpenRouterThread) -> None:
    result = await client.chat(MESSAGES, max_tokens=50, temperature=0.1)
    assert isinstance(result, ChatResult)
    assert result.content.startswith("The river flooded the town.")
    assert result.model == "fake/model" and result.provider == "Fake"
    assert result.generation_id and result.generation_id.startswith("gen-")
    assert result.usage["total_tokens"] == (
        result.usage["prompt_tokens"] + result.usage["completion_tokens"]
    )
    assert result.finish_reason == "stop"
    stats = fake.state.snapshot()
    assert stats["ok"] == 1 and stats["by_status"] == {"200": 1}


class Article(BaseModel):
    title: str
    topics: list[str]
    page: int
    score: float
    summary: str | None


class PageResult(BaseModel):
    page_number: int
    status: str
    articles: list[Article]


async def test_json_schema_answer_validates(client: OpenRouterClient) -> None:
    schema = PageResult.model_json_schema()
    result = await client.chat(MESSAGES, response_format=schema)
    parsed = PageResult.model_validate(result.parsed)
    assert parsed.articles and parsed.articles[0].title
    again = await client.chat(MESSAGES, response_format=schema)
    assert again.parsed == result.parsed  # deterministic


async def test_request_body_for_json_schema(client: OpenRouterClient) -> None:
    body = client.build_chat_body(MESSAGES, response_format={"type": "object"}, models=["a", "b"])
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["provider"] == {"require_parameters": True}
    assert body["models"] == ["a", "b"]


async def test_file_parts_echo_the_page_count(client: OpenRouterClient) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Pages /Count 2 >>\n2 0 obj << /Type /Page >>\n"
    pdf += b"3 0 obj << /Type /Page >>\n%%EOF"
    data = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    content = [
        {"type": "text", "text": "Read this."},
        {"type": "file", "file": {"filename": "x.pdf", "file_data": data}},
    ]
    plugins = [{"id": "file-parser", "pdf": {"engine": "native"}}]
    result = await client.chat([{"role": "user", "content": content}], plugins=plugins)
    assert "[file x.pdf: 2 pages]" in result.content


async def test_streaming(client: OpenRouterClient) -> None:
    result = await client.chat(MESSAGES, stream=True)
    assert result.content.startswith("The river flooded the town.")
    assert result.usage["total_tokens"] > 0
    assert result.finish_reason == "stop"


async def test_mid_stream_error(client: OpenRouterClient, fake: FakeOpenRouterThread) -> None:
    fake.state.queue.append("stream_error")
    with pytest.raises(UpstreamError) as info:
        await client.chat(MESSAGES, stream=True)
    assert info.value.error_class is ErrorClass.UNAVAILABLE  # typed provider_unavailable


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("400", ErrorClass.INVALID_REQUEST),
        ("401", ErrorClass.AUTH),
        ("402_credits", ErrorClass.CREDITS),
        ("402_key_limit", ErrorClass.CREDITS),
        ("402_in_flight", ErrorClass.IN_FLIGHT_BUDGET),
        ("403_moderation", ErrorClass.CONTENT_FILTERED),
        ("408", ErrorClass.TIMEOUT),
        ("429", ErrorClass.RATE_LIMITED),
        ("429_metadata_headers", ErrorClass.RATE_LIMITED),
        ("500", ErrorClass.UNAVAILABLE),
        ("502", ErrorClass.UNAVAILABLE),
        ("503", ErrorClass.UNAVAILABLE),
        ("503_retry_after", ErrorClass.UNAVAILABLE),
        ("504", ErrorClass.TIMEOUT),
        ("200_error", ErrorClass.BAD_OUTPUT),
        ("content_filter", ErrorClass.CONTENT_FILTERED),
        ("empty", ErrorClass.BAD_OUTPUT),
    ],
)
async def test_each_fault_maps_to_its_class(
    fault: str, expected: ErrorClass, fake: FakeOpenRouterThread
) -> None:
    recorder = Recorder()
    c = OpenRouterClient(settings(fake), metrics=recorder)
    fake.state.queue.append(fault)
    try:
        with pytest.raises(UpstreamError) as info:
            await c.chat(MESSAGES)
    finally:
        await c.aclose()
    assert info.value.error_class is expected
    assert recorder.calls == [(False, expected.value, recorder.calls[0][2])]
    if fault in ("429", "402_in_flight", "503_retry_after"):
        assert info.value.retry_after == pytest.approx(2.0, abs=0.05)
    if fault == "429_metadata_headers":
        assert info.value.retry_after is not None and 0 < info.value.retry_after <= 2.0


async def test_bad_json_for_a_schema_request(client: OpenRouterClient, fake: Any) -> None:
    fake.state.queue.append("bad_json")
    with pytest.raises(UpstreamError) as info:
        await client.chat(MESSAGES, response_format={"type": "object"})
    assert info.value.error_class is ErrorClass.BAD_OUTPUT
    assert info.value.usage["total_tokens"] > 0


async def test_unknown_key_is_auth(fake: FakeOpenRouterThread) -> None:
    c = OpenRouterClient(settings(fake, key="sk-wrong"))
    try:
        with pytest.raises(UpstreamError) as info:
            await c.chat(MESSAGES)
        assert info.value.error_class is ErrorClass.AUTH
        with pytest.raises(UpstreamError) as info:
            await c.key_status()
        assert info.value.error_class is ErrorClass.AUTH
    finally:
        await c.aclose()


async def test_slow_answer_is_a_timeout(client: OpenRouterClient, fake: Any) -> None:
    fake.state.config.slow_seconds = 3.0
    fake.state.queue.append("slow")
    with pytest.raises(UpstreamError) as info:
        await client.chat(MESSAGES)
    assert info.value.error_class is ErrorClass.TIMEOUT


async def test_connection_refused_is_a_timeout() -> None:
    s = Settings(
        openrouter_api_key=KEY, openrouter_base_url=f"http://127.0.0.1:{free_port()}/api/v1"
    )
    c = OpenRouterClient(s)
    try:
        with pytest.raises(Exception) as info:
            await c.chat(MESSAGES)
    finally:
        await c.aclose()
    assert getattr(info.value, "error_class", None) is ErrorClass.TIMEOUT


async def test_429_sets_the_shared_cooldown(redis: Redis, fake: FakeOpenRouterThread) -> None:
    limiter = RateLimiter(redis, KEYS, "openrouter", None, 10)
    c = OpenRouterClient(settings(fake), limiter=limiter)
    fake.state.queue.append("429")
    try:
        with pytest.raises(UpstreamError):
            await c.chat(MESSAGES)
        remaining = (await limiter.status())["cooldown_remaining"]
        assert 1.5 <= remaining <= 2.0
        # The next call waits for the cool-down instead of hitting the upstream again.
        started = time.monotonic()
        await c.chat(MESSAGES)
        assert time.monotonic() - started >= 1.4
    finally:
        await c.aclose()
    assert fake.state.snapshot()["by_status"] == {"429": 1, "200": 1}


async def test_in_flight_budget_lowers_concurrency(redis: Redis, fake: Any) -> None:
    limiter = RateLimiter(redis, KEYS, "openrouter", None, 10)
    c = OpenRouterClient(settings(fake), limiter=limiter)
    fake.state.queue.append("402_in_flight")
    try:
        with pytest.raises(UpstreamError):
            await c.chat(MESSAGES)
    finally:
        await c.aclose()
    assert (await limiter.status())["max_in_flight"] == 1


async def test_breaker_sees_every_outcome(redis: Redis, fake: FakeOpenRouterThread) -> None:
    s = settings(fake, breaker_failure_threshold=2, breaker_open_seconds=0.3)
    breaker = CircuitBreaker(redis, KEYS, "openrouter", s)
    c = OpenRouterClient(s, breaker=breaker)
    try:
        fake.state.queue.extend(["502", "503"])
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await c.chat(MESSAGES)
        assert await breaker.is_open()
        # While open the client refuses at once, without calling the upstream.
        before = fake.state.snapshot()["chat_requests"]
        with pytest.raises(UpstreamError) as info:
            await c.chat(MESSAGES)
        assert info.value.error_class is ErrorClass.UNAVAILABLE
        assert fake.state.snapshot()["chat_requests"] == before
        deadline = time.monotonic() + 3
        while await breaker.allowance() != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await c.chat(MESSAGES)  # the probe succeeds
        assert (await breaker.status())["state"] == "closed"
    finally:
        await c.aclose()


async def test_key_and_credits(fake: FakeOpenRouterThread) -> None:
    fake.state.config.key_limit = 5.0
    fake.state.set_rate(Rate.parse("50/10s"))
    c = OpenRouterClient(settings(fake))
    m = OpenRouterClient(settings(fake, key=MGMT))
    try:
        data = await c.key_status()
        assert data["limit"] == 5.0 and data["limit_remaining"] == 5.0
        assert data["rate_limit"] == {"requests": 50, "interval": "10s"}
        assert await c.credits() is None  # not a management key
        credits = await m.credits()
        assert credits == {"total_credits": 100.0, "total_usage": 0.0}
    finally:
        await c.aclose()
        await m.aclose()


async def test_key_limit_spent_gives_402(fake: FakeOpenRouterThread) -> None:
    fake.state.config.key_limit = 0.0001
    fake.state.config.cost_per_1k_tokens = 1.0
    c = OpenRouterClient(settings(fake))
    try:
        await c.chat(MESSAGES)
        assert (await c.key_status())["limit_remaining"] < 0
        with pytest.raises(UpstreamError) as info:
            await c.chat(MESSAGES)
        assert info.value.error_class is ErrorClass.CREDITS
    finally:
        await c.aclose()


async def test_limiter_keeps_a_rate_limited_upstream_free_of_429(
    redis: Redis, fake: FakeOpenRouterThread
) -> None:
    fake.state.set_rate(Rate.parse("10/1s"))
    # 20 % below the upstream's rate: requests the limiter spaced out can still reach the server
    # bunched when the machine stalls the loop for a moment, and 10 % left too little slack.
    limiter = RateLimiter(redis, KEYS, "openrouter", Rate.parse("8/1s"), 20)
    c = OpenRouterClient(settings(fake), limiter=limiter)
    try:
        await asyncio.gather(*(c.chat(MESSAGES) for _ in range(25)))
    finally:
        await c.aclose()
    stats = fake.state.snapshot()
    assert stats["ok"] == 25 and stats["rate_limited"] == 0


async def test_server_side_bucket_answers_real_429s(fake: FakeOpenRouterThread) -> None:
    fake.state.set_rate(Rate.parse("2/10s"))
    async with httpx.AsyncClient() as http:
        headers = {"Authorization": f"Bearer {KEY}"}
        answers = [
            await http.post(
                f"{fake.base_url}/chat/completions", json={"messages": MESSAGES}, headers=headers
            )
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[2]
    assert int(limited.headers["Retry-After"]) >= 1
    assert int(limited.headers["X-RateLimit-Reset"]) > time.time() * 1000
    assert limited.json()["error"]["metadata"]["error_type"] == "rate_limit_exceeded"


async def test_control_endpoint_and_stats(fake: FakeOpenRouterThread) -> None:
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        r = await http.post("/_control", json={"enqueue": ["502"], "latency": 0.01})
        assert r.status_code == 200 and r.json()["queued_faults"] == ["502"]
        bad = await http.post("/_control", json={"enqueue": ["nope"]})
        assert bad.status_code == 400
        await http.post("/_control", json={"outage_seconds": 5})
        headers = {"Authorization": f"Bearer {KEY}"}
        first = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=headers
        )
        second = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=headers
        )
        assert first.status_code == 502  # the scripted fault comes first
        assert second.status_code == 503 and "Retry-After" in second.headers
        missing = await http.post("/api/v1/chat/completions", json={}, headers=headers)
        assert missing.status_code == 400
        stats = (await http.get("/_stats")).json()
        assert stats["by_status"] == {"502": 1, "503": 1, "400": 1}
        await http.post("/_reset")
        assert (await http.get("/_stats")).json()["requests"] == 0


async def test_fault_rules_match_requests_and_the_log_records_them(
    fake: FakeOpenRouterThread,
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}

    def ask(text: str) -> dict[str, Any]:
        content = [{"type": "text", "text": text}, image]
        return {"messages": [{"role": "user", "content": content}]}

    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        bad = await http.post("/_control", json={"fault_rules": [{"match": "x", "fault": "?"}]})
        assert bad.status_code == 400
        rules = [
            {"match": "page 2", "fault": "bad_json", "times": 2},
            {"match": "page 3", "fault": "502", "times": None},
        ]
        view = (await http.post("/_control", json={"fault_rules": rules})).json()
        assert [r["remaining"] for r in view["fault_rules"]] == [2, None]
        statuses = []
        for text in ["page 1", "page 2", "page 2", "page 2", "page 3", "page 3"]:
            answer = await http.post("/api/v1/chat/completions", json=ask(text), headers=headers)
            statuses.append(answer.status_code)
        assert statuses == [200, 200, 200, 200, 502, 502]
        log = (await http.get("/_requests")).json()
        assert [e["fault"] for e in log] == [None, "bad_json", "bad_json", None, "502", "502"]
        assert log[1]["content"] == '{"this is": not valid JSON'
        assert all(e["parts"] == ["text", "image_url"] for e in log)
        assert (await http.get("/_stats")).json()["content_parts"] == {"text": 6, "image_url": 6}
        view = (await http.post("/_control", json={"clear_rules": True})).json()
        assert view["fault_rules"] == []
        await http.post("/_reset")
        assert (await http.get("/_requests")).json() == []


async def test_random_failures_are_deterministic_for_a_seed(fake: FakeOpenRouterThread) -> None:
    async def run() -> list[int]:
        fake.reset(FakeConfig(fail_rate=0.5, seed=7))
        async with httpx.AsyncClient() as http:
            return [
                (
                    await http.post(
                        f"{fake.base_url}/chat/completions",
                        json={"messages": MESSAGES},
                        headers={"Authorization": "Bearer any"},
                    )
                ).status_code
                for _ in range(20)
            ]

    first, second = await run(), await run()
    assert first == second
    assert set(first) == {200, 502, 503}


def test_runs_as_a_subprocess() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskflow_server.llm.fake_openrouter",
            "--port",
            str(port),
            "--rate-limit",
            "100/10s",
            "--seed",
            "3",
            "--key",
            KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/key",
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the fake never answered"
                time.sleep(0.05)
        assert r.status_code == 200
        assert r.json()["data"]["rate_limit"] == {"requests": 100, "interval": "10s"}
        stats = httpx.get(f"http://127.0.0.1:{port}/_stats").json()
        assert stats["by_status"] == {"200": 1}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
