"""``GET /metrics`` after real work: a mixed batch run by a separate ``taskflow-worker`` process,
scraped from two API processes' worth of apps on the same Redis, checked against the JSON routes
and against what was run; the upstream totals after real calls to the fake OpenRouter; auth.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from e2e.e2e_support import Spawner, worker_env
from support import delete_prefix, eventually, make_settings, serve_app
from taskflow_server.api.app import create_app
from taskflow_server.config import Settings
from taskflow_server.llm.monitor import OpenRouterMonitor
from taskflow_server.llm.openrouter import OpenRouterClient, UpstreamError
from taskflow_server.observability.metrics import render
from taskflow_server.observability.scrape import read_snapshot
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.ratelimit import RateLimiter
from taskflow_server.states import STATES
from taskflow_server.store.keys import LANES, PRIORITIES, Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread

TOKEN = "metrics-test-token"
CONTENT_TYPE = "text/plain; version=0.0.4"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of one sample name."""
    return {labels: v for (n, labels), v in samples.items() if n == name}


def check_histogram(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Assert every ``_bucket`` series of ``name`` is cumulative and ends in ``+Inf`` == count;
    returns the counts by label set."""
    counts = series(samples, name + "_count")
    buckets: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    for labels, v in series(samples, name + "_bucket").items():
        le = dict(labels)["le"]
        rest = frozenset((k, x) for k, x in labels if k != "le")
        buckets.setdefault(rest, []).append((float(le), v))
    assert set(buckets) == set(counts), name
    for labels, points in buckets.items():
        points.sort()
        running = [v for _, v in points]
        assert running == sorted(running), (name, labels, points)
        assert points[-1][0] == float("inf") and points[-1][1] == counts[labels], (name, labels)
    return counts


async def scrape(client: httpx.AsyncClient) -> tuple[Samples, str]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(CONTENT_TYPE)
    return parse(r.text), r.text


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own in the test database; its keys go afterwards."""
    name = f"tfmetrics{uuid.uuid4().hex[:8]}"
    yield name
    delete_prefix(redis_url, name)


@dataclass
class Deployment:
    """Two API apps (each its own server and Redis pool) on the same store."""

    settings: Settings
    urls: tuple[str, str]


@pytest.fixture
def deployment(redis_url: str, prefix: str) -> Iterator[Deployment]:
    settings = make_settings(redis_url=redis_url, key_prefix=prefix)
    with (
        serve_app(create_app(settings), name="api-a") as (url_a, _),
        serve_app(create_app(settings), name="api-b") as (url_b, _),
    ):
        yield Deployment(settings, (url_a, url_b))


@pytest.fixture
def spawn(request: pytest.FixtureRequest) -> Iterator[Spawner]:
    """Processes for this test (the e2e suites' spawner); leftovers are killed afterwards."""
    spawner = Spawner(request.node.name)
    try:
        yield spawner
    finally:
        spawner.stop_all()


@pytest.fixture
async def store_redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=False)
    yield client
    await client.aclose()


# ----------------------------------------------------------------------------- the mixed batch


async def test_metrics_match_the_store_after_a_worker_process_ran_a_mixed_batch(
    deployment: Deployment, spawn: Spawner, redis_url: str, prefix: str, store_redis: Redis
) -> None:
    worker = spawn("taskflow-worker", env=worker_env(redis_url, prefix))
    a, b = (httpx.AsyncClient(base_url=u, timeout=10.0) for u in deployment.urls)
    async with a, b:

        async def submit(task_type: str, payload: dict[str, Any], **extra: Any) -> str:
            r = await a.post(
                "/api/v1/tasks", json={"task_type": task_type, "payload": payload, **extra}
            )
            assert r.status_code == 201, r.text
            return str(r.json()["task_id"])

        async def state(task_id: str) -> str:
            return str((await a.get(f"/api/v1/tasks/{task_id}")).json()["state"])

        async def states() -> dict[str, int]:
            return dict((await a.get("/api/v1/queues/status")).json()["states"])

        for i in range(20):
            await submit("demo.noop", {}, priority=PRIORITIES[i % 3])
        # bad_output: retried on a short schedule (2 s), then dead-lettered.
        flaky = [await submit("demo.fail", {"error_class": "bad_output"}) for _ in range(3)]
        permanent = [await submit("demo.fail", {"error_class": "invalid_input"}) for _ in range(2)]
        sleepers = [await submit("demo.sleep", {"seconds": 60}) for _ in range(2)]

        for sleeper in sleepers:
            await eventually(lambda s=sleeper: _is(state(s), "ACTIVE"), "a sleeper to run", 30)
            r = await a.post(f"/api/v1/tasks/{sleeper}/cancel")
            assert r.status_code in (200, 202), r.text

        async def settled() -> bool:
            s = await states()
            return (s["COMPLETED"], s["DLQ"], s["CANCELLED"], s["ACTIVE"]) == (20, 5, 2, 0)

        await eventually(settled, "the batch to settle", 45, every=0.1)
        retried = 0
        for task_id in flaky:
            retried += int((await a.get(f"/api/v1/tasks/{task_id}")).json()["retry_count"])
        assert retried >= 3
        r = await a.post(f"/api/v1/tasks/{permanent[0]}/cancel")  # DLQ -> CANCELLED: no attempt
        assert r.status_code == 200 and r.json()["state"] == "CANCELLED"

        # The worker process is seen through its heartbeat (every 0.5 s: the last one may
        # still show the cancelled sleepers running).
        async def idle_worker() -> Samples | None:
            samples, _ = await scrape(b)
            return samples if value(samples, "taskflow_worker_slots_in_use") == 0 else None

        samples = await eventually(idle_worker, "a heartbeat with no task running", 10)
        assert value(samples, "taskflow_workers_online") == 1
        assert value(samples, "taskflow_worker_slots") == 20  # worker_env's concurrency

        # Stop the worker, then leave some work queued so the depth gauges are not all zero.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        for prio in ("high", "high", "high", "low", "low"):
            await submit("demo.noop", {}, priority=prio)

        status = (await a.get("/api/v1/queues/status")).json()
        samples_a, text_a = await scrape(a)
        samples_b, _ = await scrape(b)

    # Gauges equal the JSON status.
    for s in STATES:
        assert value(samples_a, "taskflow_tasks", state=s) == status["states"][s], s
    for prio in PRIORITIES:
        depth = sum(
            value(samples_a, "taskflow_queue_depth", lane=ln, priority=prio) for ln in LANES
        )
        assert depth == status["queues"]["primary_by_priority"][prio], prio
    retry = sum(value(samples_a, "taskflow_queue_depth", lane=ln, priority="retry") for ln in LANES)
    assert retry == status["queues"]["retry"]
    for queue in ("scheduled", "dlq", "active"):
        assert value(samples_a, "taskflow_queue_length", queue=queue) == status["queues"][queue]
    assert status["queues"]["primary_by_priority"] == {"high": 3, "default": 0, "low": 2}
    assert value(samples_a, "taskflow_blobs") == status["blobs"]["count"]
    assert value(samples_a, "taskflow_blob_bytes") == status["blobs"]["bytes"]
    assert value(samples_a, "taskflow_workers_online") == 0  # a graceful stop forgets itself
    keys = Keys(prefix)
    assert value(samples_a, "taskflow_event_log_entries") == await store_redis.xlen(keys.events)
    assert value(samples_a, "taskflow_redis_memory_bytes") > 0
    assert value(samples_a, "taskflow_breaker_state", breaker="openrouter", state="closed") == 1

    # Finished work, as run.
    finished = {
        (dict(k)["outcome"], dict(k)["task_type"]): v
        for k, v in series(samples_a, "taskflow_tasks_finished_total").items()
    }
    assert finished == {
        ("completed", "demo.noop"): 20,
        ("failed", "demo.fail"): retried,
        ("dlq", "demo.fail"): 5,
        ("cancelled", "demo.sleep"): 2,
        ("cancelled", "demo.fail"): 1,
    }
    assert series(samples_a, "taskflow_task_retries_total") == {
        frozenset({("error_class", "bad_output")}): retried
    }
    assert series(samples_a, "taskflow_dead_letters_total") == {
        frozenset({("error_class", "bad_output")}): 3,
        frozenset({("error_class", "invalid_input")}): 2,
    }

    # Histograms: cumulative, +Inf == count; one observation per ended attempt / claim.
    durations = check_histogram(samples_a, "taskflow_task_duration_seconds")
    attempts = {(dict(k)["outcome"], dict(k)["task_type"]): v for k, v in durations.items()}
    waiting_cancellations = 1
    assert attempts == {k: v for k, v in finished.items() if k != ("cancelled", "demo.fail")}
    claims = 20 + (3 + retried) + 2 + 2
    assert sum(attempts.values()) == sum(finished.values()) - waiting_cancellations == claims
    sleeper_time = value(
        samples_a, "taskflow_task_duration_seconds_sum", outcome="cancelled", task_type="demo.sleep"
    )
    assert 0 < sleeper_time < 2 * 30  # cancelled well before their 60 s were up
    waits = check_histogram(samples_a, "taskflow_task_queue_wait_seconds")
    assert {dict(k)["task_type"]: v for k, v in waits.items()} == {
        "demo.noop": 20,
        "demo.fail": 3 + retried + 2,
        "demo.sleep": 2,
    }
    assert sum(waits.values()) == claims

    # The other app reads the same numbers (Redis memory moves by itself).
    memory = ("taskflow_redis_memory_bytes", frozenset())
    samples_a.pop(memory)
    samples_b.pop(memory)
    assert samples_a == samples_b
    assert "# TYPE taskflow_tasks_finished_total counter" in text_a


async def _is(current: Any, wanted: str) -> bool:
    return bool(await current == wanted)


# ----------------------------------------------------------------------------- upstream totals


async def test_upstream_calls_tokens_cost_and_breaker_transitions(
    store_redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    with FakeOpenRouterThread() as fake:
        fake.reset(FakeConfig(keys=frozenset({"sk-test"})))
        settings = make_settings(
            openrouter_api_key="sk-test",
            openrouter_base_url=fake.base_url,
            openrouter_model="fake/model",
            openrouter_timeout=2.0,
            breaker_failure_threshold=2,
            breaker_open_seconds=30,
            key_prefix=prefix,
        )
        breaker = CircuitBreaker(store_redis, keys, "openrouter", settings)
        limiter = RateLimiter(store_redis, keys, "openrouter", None, 8)
        monitor = OpenRouterMonitor(store_redis, keys, settings, None)
        client = OpenRouterClient(settings, limiter=limiter, breaker=breaker, metrics=monitor)
        messages = [{"role": "user", "content": "The river flooded the town. Everyone left."}]
        usage: dict[str, float] = {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
        try:
            for _ in range(3):
                result = await client.chat(messages, max_tokens=50)
                for k in usage:
                    usage[k] += float(result.usage.get(k, 0))
            fake.state.queue.extend(["502", "503"])
            for _ in range(2):
                with pytest.raises(UpstreamError):
                    await client.chat(messages, max_tokens=50)
        finally:
            await client.aclose()
        assert await breaker.is_open()

    samples = parse(render(await read_snapshot(store_redis, keys, settings)).decode())
    calls = {
        (dict(k)["status"], dict(k)["outcome"]): v
        for k, v in series(samples, "taskflow_upstream_requests_total").items()
    }
    assert calls == {("200", "ok"): 3, ("502", "unavailable"): 1, ("503", "unavailable"): 1}
    latency = check_histogram(samples, "taskflow_upstream_latency_seconds")
    assert latency == {frozenset(): 5}
    assert value(samples, "taskflow_upstream_latency_seconds_sum") > 0
    assert usage["prompt_tokens"] > 0
    assert value(samples, "taskflow_upstream_tokens_total", kind="prompt") == usage["prompt_tokens"]
    assert (
        value(samples, "taskflow_upstream_tokens_total", kind="completion")
        == (usage["completion_tokens"])
    )
    assert value(samples, "taskflow_upstream_cost_usd_total") == pytest.approx(usage["cost"])
    assert value(
        samples, "taskflow_breaker_transitions_total",
        from_state="closed", to_state="open", breaker="openrouter",
    ) == 1  # fmt: skip
    assert value(samples, "taskflow_breaker_state", breaker="openrouter", state="open") == 1
    assert value(samples, "taskflow_limiter_in_flight", limiter="openrouter") == 0
    assert value(samples, "taskflow_limiter_max_in_flight", limiter="openrouter") == (
        settings.max_in_flight
    )


# ----------------------------------------------------------------------------- auth


async def test_metrics_needs_the_token_when_one_is_set(redis_url: str, prefix: str) -> None:
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, api_token=TOKEN)
    with serve_app(create_app(settings), name="api-secured") as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = await http.get("/metrics", headers=headers)
                assert r.status_code == 401, headers
                assert r.headers["www-authenticate"] == "Bearer"
                assert "token" in r.json()["detail"]
            r = await http.get("/metrics", params={"token": TOKEN})
            assert r.status_code == 401  # ?token= is for event streams only
            r = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith(CONTENT_TYPE)
            assert parse(r.text)[("taskflow_tasks", frozenset({("state", "PENDING")}))] == 0


# ----------------------------------------------------------------------------- lost leases


async def test_requeued_lost_and_poison_attempts_are_counted(
    store_redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    settings = make_settings(lease_seconds=0.3, max_lost_leases=2, key_prefix=prefix)
    queue = TaskQueue(store_redis, keys, settings)
    await queue.load()
    stalled = await queue.submit(NewTask("demo.noop", {}))
    handed_back = await queue.submit(NewTask("demo.sleep", {"seconds": 1}))

    claims = await queue.claim("w1", "t1", 2, {"local": None})
    assert {c.task_id for c in claims} == {stalled.task_id, handed_back.task_id}
    assert await queue.fail(handed_back.task_id, "t1", mode="requeue") == "PENDING"

    async def reaped() -> tuple[int, int] | None:
        found = await queue.reap_expired()
        return found if found != (0, 0) else None

    assert await eventually(reaped, "the stalled task's lease to expire", 10) == (1, 0)
    claims = await queue.claim("w2", "t2", 2, {"local": None})  # both again
    assert await queue.fail(handed_back.task_id, "t2", mode="requeue") == "PENDING"
    assert await eventually(reaped, "the second lease to expire", 10) == (0, 1)  # poison

    samples = parse(render(await read_snapshot(store_redis, keys, settings)).decode())
    finished = {
        (dict(k)["outcome"], dict(k)["task_type"]): v
        for k, v in series(samples, "taskflow_tasks_finished_total").items()
    }
    assert finished == {
        ("lost", "demo.noop"): 1,
        ("dlq", "demo.noop"): 1,
        ("requeued", "demo.sleep"): 2,
    }
    assert series(samples, "taskflow_dead_letters_total") == {
        frozenset({("error_class", "poison")}): 1
    }
    durations = check_histogram(samples, "taskflow_task_duration_seconds")
    assert sum(durations.values()) == 4  # every attempt that ended
    lost = frozenset({("outcome", "lost"), ("task_type", "demo.noop")})
    assert samples[("taskflow_task_duration_seconds_sum", lost)] >= 0.3  # it held its lease
    waits = check_histogram(samples, "taskflow_task_queue_wait_seconds")
    assert sum(waits.values()) == 4  # four claims
    assert value(samples, "taskflow_tasks", state="PENDING") == 1
    assert value(samples, "taskflow_tasks", state="DLQ") == 1
