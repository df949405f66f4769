"""OpenRouterClient against the fake OpenRouter served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from support import eventually, fake_control, free_port, make_settings, wait_until
from taskflow_server.config import Rate, Settings
from taskflow_server.llm.openrouter import ChatResult, OpenRouterClient, UpstreamError
from taskflow_server.pdf.extract import PageData
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.resilience.ratelimit import RateLimiter
from taskflow_server.store.keys import Keys
from taskflow_server.tasks.pdfxtract import (
    PdfxtractPayload,
    VisionPage,
    page_messages,
    page_schema,
)
from taskflow_server.testing.openrouter import (
    FIXTURES_ENV,
    MODES,
    FakeConfig,
    FakeOpenRouterThread,
    fixtures_dir,
    load_fixture,
    mode_fault,
)

KEY = "sk-test"
MGMT = "sk-mgmt"
KEYS = Keys("tfllm")


MESSAGES = [{"role": "user", "content": "The river flooded the town. Everyone left. It rained."}]


class Recorder:
    """A CallRecorder that keeps every record."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str | None, dict[str, Any]]] = []

    async def record_call(
        self,
        ok: bool,
        error_class: str | None,
        usage: dict[str, Any],
        *,
        status: int | None = None,
        seconds: float | None = None,
    ) -> None:
        self.calls.append((ok, error_class, usage))


@pytest.fixture
def fake(fake_server: FakeOpenRouterThread) -> FakeOpenRouterThread:
    """The module's server with a fresh state for this test."""
    return fake_server.reset(
        FakeConfig(keys=frozenset({KEY}), management_keys=frozenset({MGMT}), retry_after=2.0)
    )


def settings(fake: FakeOpenRouterThread, key: str | None = KEY, **extra: Any) -> Settings:
    return make_settings(
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
        ("402_key_limit", ErrorClass.KEY_LIMIT),
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
        ("200_error", ErrorClass.UNAVAILABLE),
        ("content_filter", ErrorClass.CONTENT_FILTERED),
        ("empty", ErrorClass.EMPTY_ANSWER),
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
    s = make_settings(
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
        with pytest.raises(TaskError) as info:
            await c.chat(MESSAGES)
        assert info.value.error_class is ErrorClass.UNAVAILABLE
        assert fake.state.snapshot()["chat_requests"] == before

        async def probe_allowed() -> bool:
            return await breaker.allowance() == 1

        await eventually(probe_allowed, "the breaker to hand out a probe", 3)
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
        # OpenRouter documents rate_limit as deprecated and answers -1 whatever the bucket.
        assert data["rate_limit"] == {"requests": -1, "interval": "10s"}
        fake.state.config.report_rate_limit = True
        assert (await c.key_status())["rate_limit"] == {"requests": 50, "interval": "10s"}
        assert await c.credits() is None  # not a management key
        credits = await m.credits()
        assert credits == {"total_credits": 100.0, "total_usage": 0.0}
    finally:
        await c.aclose()
        await m.aclose()


async def test_key_limit_spent_gives_the_403_fixture(fake: FakeOpenRouterThread) -> None:
    fake.state.config.key_limit = 0.0001
    fake.state.config.cost_per_1k_tokens = 1.0
    c = OpenRouterClient(settings(fake))
    try:
        await c.chat(MESSAGES)
        key = await c.key_status()
        assert key["limit_remaining"] < 0
        assert key["rate_limit"] == {"requests": -1, "interval": "10s"}
        with pytest.raises(UpstreamError) as info:
            await c.chat(MESSAGES)
        assert info.value.error_class is ErrorClass.KEY_LIMIT
    finally:
        await c.aclose()
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{fake.base_url}/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
    expected = load_fixture(FIXTURES / "403-key-limit.json")
    assert answer.status_code == expected["status"] == 403
    assert answer.json() == expected["body"]
    assert [e["fault"] for e in fake.state.log][-2:] == ["key_limit", "key_limit"]
    assert fake.state.snapshot()["answers"] == {"key_limit": 2}


async def test_key_limit_without_fixtures_keeps_the_old_402(fake: FakeOpenRouterThread) -> None:
    fake.reset(FakeConfig(key_limit=0.0, fixtures=None))
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{fake.base_url}/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
    assert answer.status_code == 402
    assert answer.json()["error"]["metadata"]["limit_source"] == "openrouter_key_limit"


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
    view = await fake_control(fake.root_url, enqueue=["502"], latency=0.01)
    assert view["queued_faults"] == ["502"]
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        bad = await http.post("/_control", json={"enqueue": ["nope"]})
        assert bad.status_code == 400
        await fake_control(fake.root_url, outage_seconds=5)
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
        view = await fake_control(fake.root_url, fault_rules=rules)
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
        view = await fake_control(fake.root_url, clear_rules=True)
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
            "taskflow_server.testing.openrouter",
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

        def key_answer() -> httpx.Response | None:
            try:
                return httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/key",
                    headers={"Authorization": f"Bearer {KEY}"},
                )
            except httpx.TransportError:
                return None

        r = wait_until(key_answer, "the fake to answer", 15, every=0.05)
        assert r.status_code == 200
        assert r.json()["data"]["rate_limit"] == {"requests": -1, "interval": "10s"}
        stats = httpx.get(f"http://127.0.0.1:{port}/_stats").json()
        assert stats["by_status"] == {"200": 1}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ----------------------------------------------------------------------------- fixtures

_TEMPLATE = re.compile(r"\{now_(ms|s)(?:([+-])(-?\d+))?\}")
_DATA_LINE = re.compile(r"^data:.*$", re.MULTILINE)


def _template_value(match: re.Match[str], moment: float) -> int:
    unit, sign, number = match.groups()
    offset = int(number or 0) * (-1 if sign == "-" else 1)
    return (int(moment * 1000) if unit == "ms" else int(moment)) + offset


def assert_matches(expected: Any, actual: Any, t0: float, t1: float, where: str = "") -> None:
    """``actual`` equals the raw fixture value ``expected`` once its ``{now_ms+N}`` templates
    are filled with a time between ``t0`` and ``t1`` (the request's start and end)."""
    if isinstance(expected, str) and _TEMPLATE.search(expected):
        assert isinstance(actual, str), f"{where}: {actual!r} is not a string"
        pattern = r"(-?\d+)".join(re.escape(text) for text in _TEMPLATE.split(expected)[::4])
        found = re.fullmatch(pattern, actual)
        assert found, f"{where}: {actual!r} does not fit {expected!r}"
        for match, value in zip(_TEMPLATE.finditer(expected), found.groups(), strict=True):
            low, high = _template_value(match, t0), _template_value(match, t1)
            assert low <= int(value) <= high, f"{where}: {value} not in [{low}, {high}]"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        assert set(actual) == set(expected), f"{where}: keys {set(actual)} != {set(expected)}"
        for key, value in expected.items():
            assert_matches(value, actual[key], t0, t1, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, not {len(expected)}"
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_matches(want, got, t0, t1, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def raw_fixture(stem: str) -> dict[str, Any]:
    """The fixture file as written (templates unfilled)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{stem}.json").read_text(encoding="utf-8"))
    return data


def assert_served(stem: str, answer: httpx.Response, t0: float, t1: float) -> None:
    """``answer`` is fixture ``stem`` sent the way the fixture format says."""
    raw = raw_fixture(stem)
    assert answer.status_code == (200 if "stream" in raw else raw["status"]), stem
    for name, value in (raw.get("headers") or {}).items():
        assert name in answer.headers, f"{stem}: header {name} missing"
        assert_matches(value, answer.headers[name], t0, t1, f"{stem}: header {name}")
    text = answer.content.decode("utf-8")
    prefix = raw.get("prefix") or ""
    assert text.startswith(prefix), f"{stem}: the prefix does not come first"
    text = text[len(prefix) :]
    if "body" in raw:
        assert_matches(raw["body"], json.loads(text), t0, t1, f"{stem}: body")
    elif "text" in raw:
        assert_matches(raw["text"], text, t0, t1, f"{stem}: text")
    else:
        assert answer.headers["content-type"].startswith("text/event-stream"), stem
        lines = [line for line in text.split("\n") if line]
        assert_matches(raw["stream"], lines, t0, t1, f"{stem}: stream")
        for event in _DATA_LINE.finditer(text):
            assert text[event.end() : event.end() + 2] == "\n\n", f"{stem}: no blank line"


FIXTURES: Path = fixtures_dir() or Path("tests/fixtures/openrouter")
ALL_FIXTURES = sorted(path.stem for path in FIXTURES.glob("*.json"))
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_the_fixtures_directory_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FIXTURES_ENV, raising=False)
    found = fixtures_dir()
    assert found is not None and found.parts[-3:] == ("tests", "fixtures", "openrouter")
    assert ALL_FIXTURES, "no fixtures in the directory"
    monkeypatch.setenv(FIXTURES_ENV, "/somewhere/else")
    assert fixtures_dir() == Path("/somewhere/else")


def test_load_fixture_fills_the_time_templates(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    fixture = {
        "status": 429,
        "headers": {"X-RateLimit-Reset": "{now_ms+7200000}", "Retry-After": "{now_s-30}"},
        "body": {"error": {"metadata": {"at": ["{now_ms}", "reset {now_s+-5} s", 7]}}},
        "expect": {"note": "{now_ms+1}"},
    }
    path.write_text(json.dumps(fixture))
    loaded = load_fixture(path, now=1000.5)
    assert loaded["headers"] == {"X-RateLimit-Reset": "8200500", "Retry-After": "970"}
    assert loaded["body"]["error"]["metadata"]["at"] == ["1000500", "reset 995 s", 7]
    assert loaded["expect"] == {"note": "{now_ms+1}"}  # only the answer's parts are filled
    path.write_text(json.dumps({"status": 200, "body": {}, "text": "both"}))
    with pytest.raises(ValueError, match="exactly one"):
        load_fixture(path)


@pytest.mark.parametrize("stem", ALL_FIXTURES)
async def test_every_fixture_is_served_as_written(stem: str, fake: FakeOpenRouterThread) -> None:
    raw = raw_fixture(stem)
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        if raw.get("endpoint") == "/key":
            await fake_control(fake.root_url, key_fixture=stem)
            t0 = time.time()
            answer = await http.get("/api/v1/key", headers=AUTH)
        else:
            await fake_control(fake.root_url, enqueue=[f"fixture:{stem}"])
            t0 = time.time()
            body = {"messages": MESSAGES, "stream": "stream" in raw, **raw.get("request", {})}
            answer = await http.post("/api/v1/chat/completions", json=body, headers=AUTH)
        t1 = time.time()
    assert_served(stem, answer, t0, t1)
    if raw.get("endpoint") != "/key":
        assert fake.state.snapshot()["answers"] == {f"fixture:{stem}": 1}


async def test_fixture_faults_in_rules_and_random_failures(fake: FakeOpenRouterThread) -> None:
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        rule = {"match": "flooded", "fault": "fixture:503-unavailable", "times": 1}
        await fake_control(fake.root_url, fault_rules=[rule])
        first = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
        assert first.status_code == 503
        random_faults = {"fail_rate": 1.0, "fail_statuses": {"fixture:402-insufficient-credits": 1}}
        await fake_control(fake.root_url, **random_faults)
        second = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
    assert second.status_code == 402
    assert second.json() == raw_fixture("402-insufficient-credits")["body"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"enqueue": ["fixture:no-such-answer"]}, "unknown fixture 'no-such-answer'"),
        ({"fault_rules": [{"match": "", "fault": "fixture:nope"}]}, "unknown fixture 'nope'"),
        ({"fail_statuses": {"fixture:nope": 1}}, "unknown fixture 'nope'"),
        ({"enqueue": ["fixture:key-normal"]}, "answers /key"),
        ({"key_fixture": "403-key-limit"}, "does not answer /key"),
        ({"key_fixture": "nope"}, "unknown fixture 'nope'"),
        ({"mode": {"name": "no-such-mode", "seconds": 1}}, "unknown mode 'no-such-mode'"),
        ({"mode": {"name": "fixture:nope", "seconds": None}}, "unknown fixture 'nope'"),
        ({"mode": {"name": "outage", "seconds": -1}}, "seconds must be positive"),
    ],
)
async def test_the_control_endpoint_refuses_what_it_cannot_serve(
    change: dict[str, Any], message: str, fake: FakeOpenRouterThread
) -> None:
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        answer = await http.post("/_control", json=change)
    assert answer.status_code == 400
    assert message in answer.json()["detail"]


async def test_fixture_faults_need_a_fixtures_directory(fake: FakeOpenRouterThread) -> None:
    fake.reset(FakeConfig(fixtures=None))
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        answer = await http.post("/_control", json={"enqueue": ["fixture:403-key-limit"]})
        assert answer.status_code == 400 and FIXTURES_ENV in answer.json()["detail"]
        answer = await http.post("/_control", json={"mode": "key-limit"})
        assert answer.status_code == 400 and "403-key-limit.json" in answer.json()["detail"]
        # Modes with a built-in equivalent still work.
        await fake_control(fake.root_url, mode="outage")
        answer = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
    assert answer.status_code == 503


# ----------------------------------------------------------------------------- modes


async def wait_for(
    http: httpx.AsyncClient,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Poll ``/_stats`` until ``check`` holds for it; returns those stats."""

    async def stats_if() -> dict[str, Any] | None:
        stats: dict[str, Any] = (await http.get("/_stats")).json()
        return stats if check(stats) else None

    return await eventually(stats_if, what, timeout)


def schema_request() -> dict[str, Any]:
    schema = PageResult.model_json_schema()
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "strict": True, "schema": schema}}
    return {"messages": MESSAGES, "response_format": fmt}


@pytest.mark.parametrize("mode", list(MODES))
async def test_each_mode_answers_as_its_fixture_then_ends(
    mode: str, fake: FakeOpenRouterThread
) -> None:
    stem = mode_fault(fake.state.config, mode).removeprefix("fixture:")
    assert (FIXTURES / f"{stem}.json").is_file(), f"mode {mode} is not backed by a fixture"
    seconds = 2.0
    async with httpx.AsyncClient(base_url=fake.root_url) as http:

        async def ask() -> tuple[httpx.Response, float, float]:
            t0 = time.time()
            answer = await http.post(
                "/api/v1/chat/completions", json=schema_request(), headers=AUTH
            )
            return answer, t0, time.time()

        started = time.monotonic()
        view = await fake_control(fake.root_url, mode={"name": mode, "seconds": seconds})
        assert view["mode"]["name"] == mode
        on = [await ask(), await ask()]
        stats = await wait_for(http, lambda s: s["mode"] is None, f"the {mode} mode to end")
        assert time.monotonic() - started >= seconds - 0.05  # it lasted its seconds
        after, _, _ = await ask()
    # Both requests came within the window (a loopback request takes milliseconds).
    assert stats["modes"][mode] == {
        "answers": 2,
        "chat_requests": 2,
        "started": 1,
        "ended": 1,
        "on": False,
    }
    assert stats["answers"] == {f"mode:{mode}": 2}
    for answer, t0, t1 in on:
        assert_served(stem, answer, t0, t1)
    assert after.status_code == 200 and after.text.startswith("{")
    PageResult.model_validate_json(after.json()["choices"][0]["message"]["content"])


async def test_modes_run_one_after_the_other_and_can_be_cleared(
    fake: FakeOpenRouterThread,
) -> None:
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        schedule = [{"name": "outage", "seconds": 0.4}, {"name": "credits", "seconds": 0.4}]
        view = await fake_control(fake.root_url, mode=schedule)
        assert [m["name"] for m in view["mode_schedule"]] == ["outage", "credits"]
        first = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
        await wait_for(
            http, lambda s: (s["mode"] or {}).get("name") == "credits", "the credits mode"
        )
        second = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
        stats = await wait_for(http, lambda s: s["mode"] is None, "the schedule to end")
        assert first.status_code == 503 and second.status_code == 402
        assert stats["modes"]["outage"]["answers"] == stats["modes"]["credits"]["answers"] == 1
        # A mode without seconds lasts until cleared.
        await fake_control(fake.root_url, mode={"name": "daily-cap", "seconds": None})
        limited = await http.post(
            "/api/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH
        )
        assert limited.status_code == 429
        view = await fake_control(fake.root_url, clear_mode=True)
        assert view["mode"] is None
        ok = await http.post("/api/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH)
        assert ok.status_code == 200


def _taskflow_command() -> list[str]:
    script = Path(sys.executable).with_name("taskflow")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "taskflow_sdk.cli"]


def test_cli_flags_start_a_mode() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *_taskflow_command(),
            "fake-openrouter",
            "--port",
            str(port),
            "--latency",
            "0.1",
            "--fault",
            "key-limit",
            "--key",
            KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def control_view() -> dict[str, Any] | None:
            try:
                view: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/_control").json()
                return view
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                return None

        view = wait_until(control_view, "the fake to answer", 15, every=0.05)
        assert view["mode"]["name"] == "key-limit" and view["mode"]["remaining"] is None
        assert view["latency"] == 0.1
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/chat/completions",
            json={"messages": MESSAGES},
            headers=AUTH,
        )
        assert answer.status_code == 403
        assert answer.json() == raw_fixture("403-key-limit")["body"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_cli_flags_are_refused() -> None:
    for flags in (["--fault", "no-such-mode"], ["--fault", "outage:-3"], ["--key-fixture", "nope"]):
        done = subprocess.run(
            [*_taskflow_command(), "fake-openrouter", "--port", "0", *flags],
            capture_output=True,
            timeout=30,
        )
        assert done.returncode != 0, flags
        assert b"fake-openrouter" in done.stderr, done.stderr


# ----------------------------------------------------------------------------- page articles

PAGE_TEXT = """THE HARBOUR TIMES

Harbour Festival Draws Record Crowds

Boats, music and a long night of fireworks on the quay.

By Mara Lindqvist

Thousands of visitors filled the quay on Saturday for the harbour festival.
The organisers said it was the busiest year since the festival began.

Stalls sold out of smoked fish before noon.

Council Votes On Tram Line

The council voted on Thursday to study a tram line along the coast road.
Continued on page 3
"""


def page_request(text: str, number: int = 2) -> dict[str, Any]:
    page = PageData(page_number=number, has_text_layer=bool(text), text=text, png=b"png")
    payload = PdfxtractPayload(blob="0" * 64, filename="harbour.pdf")
    messages = page_messages(page, 4, payload, False)
    schema = {"name": "page", "strict": True, "schema": page_schema()}
    return {"messages": messages, "response_format": {"type": "json_schema", "json_schema": schema}}


async def ask_page(fake: FakeOpenRouterThread, text: str, number: int = 2) -> VisionPage:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{fake.base_url}/chat/completions", json=page_request(text, number), headers=AUTH
        )
    assert answer.status_code == 200
    return VisionPage.model_validate_json(answer.json()["choices"][0]["message"]["content"])


async def test_page_articles_come_from_the_text_layer(fake: FakeOpenRouterThread) -> None:
    page = await ask_page(fake, PAGE_TEXT)
    assert [a.title for a in page.articles] == [
        "Harbour Festival Draws Record Crowds",
        "Council Votes On Tram Line",
    ]
    festival, tram = page.articles
    assert festival.author == "Mara Lindqvist"
    assert festival.subtitle == "Boats, music and a long night of fireworks on the quay."
    assert festival.body.startswith("Thousands of visitors filled the quay on Saturday")
    assert "\n\nStalls sold out of smoked fish before noon." in festival.body
    assert festival.summary.startswith("Thousands of visitors")
    assert festival.topics and all(t == t.lower() for t in festival.topics)
    assert tram.continued_on_page == 3 and tram.continued_from_page is None
    assert "Continued" not in tram.body and "HARBOUR TIMES" not in festival.body
    assert await ask_page(fake, PAGE_TEXT) == page  # deterministic


async def test_scanned_pages_get_made_up_news(fake: FakeOpenRouterThread) -> None:
    pages = [await ask_page(fake, "", number) for number in range(1, 7)]
    counts = {len(page.articles) for page in pages}
    assert counts <= {1, 2, 3} and len(counts) > 1
    titles = [a.title for page in pages for a in page.articles]
    assert len(set(titles)) > len(titles) // 2  # pages differ
    for article in (a for page in pages for a in page.articles):
        assert 3 <= len(article.title.split()) <= 8 and not article.title.endswith(".")
        assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", article.author)
        assert len(re.findall(r"[.!?](?:\s|$)", article.body)) >= 4
        assert article.summary and article.body.startswith(article.summary.split(".")[0])
        assert 2 <= len(article.topics) <= 5
    assert await ask_page(fake, "", 3) == pages[2]  # deterministic
