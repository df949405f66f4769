"""The LLM path end to end: real Redis, the fake OpenRouter over real HTTP, in-process workers.

Every test starts :class:`~taskflow_server.worker.worker.Worker` objects whose settings point
``OPENROUTER_BASE_URL`` at a :class:`FakeOpenRouterThread` on 127.0.0.1 (with a key, so the
OpenRouter provider with its shared limiter and breaker is used), submits tasks straight to the
store and follows them to their final state. Faults are injected through the fake's real
``POST /_control`` endpoint. Timings are the production ones shrunk by settings (breaker open
for 0.3 s instead of 30 s, an outage of a few seconds instead of ten minutes); every wait polls
with a deadline, so a failure names what did not happen instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from support import eventually, fake_control, make_settings, redis_now, wait_state
from taskflow_server.config import Settings
from taskflow_server.resilience.breaker import CircuitBreaker, open_breaker, reset_breaker
from taskflow_server.resilience.ratelimit import RateLimiter
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask, TaskRecord
from taskflow_server.tasks import registry
from taskflow_server.tasks.registry import TaskContext, TaskSpec, get_spec
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread
from taskflow_server.worker.worker import Worker

T = TypeVar("T")

KEY = "sk-e2e"
PREFIX = "tfe2e"
KEYS = Keys(PREFIX)
RETRY_AFTER = 3.0
"""The ``Retry-After`` (seconds) the fake puts on 429, 402 in-flight and 503-with-Retry-After."""
JITTER = 0.10
TEXT = (
    "The river rose overnight and flooded the lower town. Volunteers filled sandbags until "
    "dawn. By noon the water had fallen again and the bridge reopened."
)
EXTRACT = "e2e.extract"
"""A test-only ``llm`` task that asks for strict ``json_schema`` output."""
FACTS_SCHEMA: dict[str, Any] = {
    "title": "Facts",
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["topic", "keywords"],
    "additionalProperties": False,
}


# ----------------------------------------------------------------------------- helpers


async def fake_stats(fake: FakeOpenRouterThread) -> dict[str, Any]:
    """The fake's request counters (``GET /_stats``)."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.get(f"{fake.root_url}/_stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


def delay_of(rec: TaskRecord) -> float:
    """The retry delay the store scheduled (due time minus the moment it was scheduled)."""
    assert rec.retry_after is not None and rec.scheduled_at is not None
    return rec.retry_after - rec.scheduled_at


def active_entries(rec: TaskRecord) -> list[float]:
    """When the task entered ACTIVE, from its state history (Redis clock)."""
    return [float(h["ts"]) for h in rec.state_history if h.get("state") == "ACTIVE"]


@dataclass
class Cluster:
    """Workers started for one test, and a queue handle on the same store."""

    workers: list[Worker]
    queue: TaskQueue
    settings: Settings

    @property
    def limiter(self) -> RateLimiter:
        """A handle on the shared rate limiter (every worker's limiter uses the same keys)."""
        upstream = self.workers[0].services.openrouter
        assert upstream is not None
        return upstream.limiter

    @property
    def breaker(self) -> CircuitBreaker:
        """A handle on the shared circuit breaker."""
        upstream = self.workers[0].services.openrouter
        assert upstream is not None
        return upstream.breaker

    async def submit(
        self, count: int, task_type: str = "summarize", payload: dict[str, Any] | None = None
    ) -> list[str]:
        """Submit ``count`` tasks of ``task_type`` in their registered lane; returns the ids."""
        lane = get_spec(task_type).lane
        body = payload if payload is not None else {"content": TEXT, "sentences": 2}
        subs = await self.queue.submit_many(
            [NewTask(task_type, dict(body), lane=lane) for _ in range(count)]
        )
        return [s.task_id for s in subs]

    async def records(self, ids: list[str]) -> list[TaskRecord]:
        """The current record of every id (all must exist)."""
        recs = await self.queue.get_many(ids)
        assert all(r is not None for r in recs)
        return [r for r in recs if r is not None]

    async def wait_state(self, task_id: str, states: set[str], timeout: float = 10.0) -> TaskRecord:
        """Poll until the task is in one of ``states``."""
        return await wait_state(self.queue, task_id, states, timeout)

    async def wait_all(self, ids: list[str], state: str, timeout: float) -> list[TaskRecord]:
        """Poll until every task is in ``state``; fails early when one lands in the DLQ."""

        async def check() -> list[TaskRecord] | None:
            recs = await self.records(ids)
            dead = [r for r in recs if r.state == "DLQ"]
            assert not dead, f"dead-lettered: {[(r.id, r.error_type, r.last_error) for r in dead]}"
            return recs if all(r.state == state for r in recs) else None

        return await eventually(check, f"{len(ids)} tasks to reach {state}", timeout)


StartWorkers = Callable[..., Awaitable[Cluster]]


def llm_settings(fake: FakeOpenRouterThread, **overrides: Any) -> Settings:
    """Worker settings aimed at the fake, with the breaker's timings shrunk for tests."""
    base: dict[str, Any] = {
        "key_prefix": PREFIX,
        "openrouter_api_key": KEY,
        "openrouter_base_url": fake.base_url,
        "openrouter_model": "fake/model",
        "openrouter_timeout": 5.0,
        "openrouter_connect_timeout": 2.0,
        "rate_limit": None,
        "max_in_flight": 16,
        "breaker_failure_threshold": 3,
        "breaker_min_calls": 1000,
        "breaker_open_seconds": 0.3,
        "breaker_max_open_seconds": 1.0,
    }
    base.update(overrides)
    settings: Settings = make_settings(**base)
    return settings


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake(fake_server: FakeOpenRouterThread) -> FakeOpenRouterThread:
    """The module's fake with a fresh state: one accepted key, no faults, no latency."""
    return fake_server.reset(FakeConfig(keys=frozenset({KEY}), retry_after=RETRY_AFTER, seed=7))


@pytest.fixture
async def start_workers(redis: Redis) -> AsyncIterator[StartWorkers]:
    """Factory: ``await start(fake, count=1, concurrency=4, **settings)``; stops them all after."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(
        fake: FakeOpenRouterThread, count: int = 1, concurrency: int = 4, **overrides: Any
    ) -> Cluster:
        settings = llm_settings(fake, **overrides)
        workers: list[Worker] = []
        for i in range(count):
            worker = Worker(settings, redis, concurrency=concurrency, worker_id=f"e2e-{i}")
            running.append((worker, asyncio.create_task(worker.run(), name=f"e2e-{i}")))
            workers.append(worker)
        queue = TaskQueue(redis, KEYS, settings)
        await queue.load()
        return Cluster(workers, queue, settings)

    yield start
    for worker, _ in running:
        worker.request_stop()
    await asyncio.wait_for(asyncio.gather(*(t for _, t in running)), timeout=20)


class ExtractPayload(BaseModel):
    """Input of the test-only ``e2e.extract`` task."""

    text: str


async def _extract(ctx: TaskContext, payload: ExtractPayload) -> Any:
    """Ask the model for JSON that matches :data:`FACTS_SCHEMA` (a strict json_schema request)."""
    upstream = ctx.services.openrouter
    assert upstream is not None
    answer = await upstream.client.chat(
        [{"role": "user", "content": payload.text}], response_format=FACTS_SCHEMA
    )
    return answer.parsed


@pytest.fixture
def extract_task(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register ``e2e.extract`` (lane ``llm``) for one test only; returns its name."""
    registry.load_builtin_tasks()
    spec = TaskSpec(name=EXTRACT, handler=_extract, payload_model=ExtractPayload, lane="llm")
    monkeypatch.setitem(registry._REGISTRY, EXTRACT, spec)
    return EXTRACT


# ----------------------------------------------------------------------------- error classes

# fault -> (final state, error_type, base delay in seconds or None for the DLQ). "HELD": the task
# went back to PENDING without spending a retry and the breaker holds LLM work for that reason;
# "PAUSED": it went back to PENDING while the shared cool-down ran, then completed, no retry used.
ERROR_CASES: dict[str, tuple[str, str, float | None]] = {
    "429": ("PAUSED", "rate_limited", None),
    "429_metadata_headers": ("PAUSED", "rate_limited", None),
    "402_credits": ("HELD", "credits", None),
    "402_key_limit": ("HELD", "key_limit", None),
    "402_in_flight": ("SCHEDULED", "in_flight_budget", RETRY_AFTER),
    "500": ("SCHEDULED", "unavailable", 5.0),
    "502": ("SCHEDULED", "unavailable", 5.0),
    "503": ("SCHEDULED", "unavailable", 5.0),
    "503_retry_after": ("SCHEDULED", "unavailable", RETRY_AFTER),
    "408": ("SCHEDULED", "timeout", 2.0),
    "504": ("SCHEDULED", "timeout", 2.0),
    "403_moderation": ("DLQ", "content_filtered", None),
    "content_filter": ("DLQ", "content_filtered", None),
    "400": ("DLQ", "invalid_request", None),
    "401": ("DLQ", "auth", None),
    "200_error": ("SCHEDULED", "unavailable", 5.0),  # choices[0].error with code 502
    "empty": ("SCHEDULED", "empty_answer", 30.0),
}


@pytest.mark.parametrize("fault", list(ERROR_CASES))
async def test_each_error_class_ends_in_its_state_with_its_schedule(
    fault: str, fake: FakeOpenRouterThread, start_workers: StartWorkers
) -> None:
    state, error_type, base = ERROR_CASES[fault]
    await fake_control(fake.root_url, enqueue=[fault])
    cluster = await start_workers(fake)
    (task_id,) = await cluster.submit(1)
    if state == "PAUSED":
        rec = await cluster.wait_state(task_id, {"COMPLETED"})
        assert rec.retry_count == 0 and rec.error_type == error_type, rec.last_error
        assert (await fake_stats(fake))["chat_requests"] == 2
        return
    if state == "HELD":

        async def held() -> bool:
            rec = await cluster.queue.get(task_id)
            return rec is not None and rec.state == "PENDING" and rec.error_type == error_type

        await eventually(held, f"the task handed back for the {error_type} hold")
        rec = await cluster.queue.get(task_id)
        assert rec is not None and rec.retry_count == 0
        breaker = await cluster.breaker.status()
        assert breaker["state"] == "open" and breaker["hold"] == error_type, breaker
        assert (await fake_stats(fake))["chat_requests"] == 1
        return
    rec = await cluster.wait_state(task_id, {state, "COMPLETED"})

    assert (rec.state, rec.error_type) == (state, error_type), rec.last_error
    assert (await fake_stats(fake))["chat_requests"] == 1
    if base is None:
        assert rec.retry_count == 0 and rec.dlq_at is not None
    else:
        assert rec.retry_count == 1
        # The schedule (or the upstream's Retry-After) plus 0-10 % jitter.
        assert base - 0.1 <= delay_of(rec) <= base * (1 + JITTER) + 0.01, delay_of(rec)

    breaker = await cluster.breaker.status()
    limits = await cluster.limiter.status()
    assert breaker["state"] == "closed", breaker
    if error_type == "in_flight_budget":
        assert limits["max_in_flight"] < cluster.settings.max_in_flight


@pytest.mark.parametrize(
    ("what", "overrides", "error_type"),
    [
        ("a key the upstream does not know", {"openrouter_api_key": "sk-unknown"}, "auth"),
        ("a path the upstream does not serve", {"base_path": "/api/v0"}, "invalid_request"),
    ],
)
async def test_real_401_and_404_are_dead_lettered(
    what: str,
    overrides: dict[str, Any],
    error_type: str,
    fake: FakeOpenRouterThread,
    start_workers: StartWorkers,
) -> None:
    settings = dict(overrides)
    if "base_path" in settings:
        settings["openrouter_base_url"] = fake.root_url + settings.pop("base_path")
    cluster = await start_workers(fake, **settings)
    (task_id,) = await cluster.submit(1)
    rec = await cluster.wait_state(task_id, {"DLQ", "COMPLETED", "SCHEDULED"})
    assert (rec.state, rec.error_type, rec.retry_count) == ("DLQ", error_type, 0), what
    assert (await cluster.breaker.status())["state"] == "closed"


async def test_bad_json_for_a_schema_request_is_retried_twice_then_dead_lettered(
    fake: FakeOpenRouterThread, start_workers: StartWorkers, extract_task: str
) -> None:
    await fake_control(fake.root_url, enqueue=["bad_json"] * 3)
    cluster = await start_workers(fake)
    (task_id,) = await cluster.submit(1, extract_task, {"text": TEXT})
    rec = await cluster.wait_state(task_id, {"DLQ", "COMPLETED"}, timeout=15)

    assert (rec.state, rec.error_type, rec.retry_count) == ("DLQ", "bad_output", 2)
    assert [e["error_type"] for e in rec.error_history] == ["bad_output"] * 3
    assert (await fake_stats(fake))["chat_requests"] == 3
    # The same request with a well-formed answer completes with the decoded JSON.
    (good,) = await cluster.submit(1, extract_task, {"text": TEXT})
    done = await cluster.wait_state(good, {"COMPLETED", "DLQ", "SCHEDULED"})
    assert done.state == "COMPLETED" and set(done.result) == {"topic", "keywords"}


# ----------------------------------------------------------------------------- the breaker


async def test_outage_opens_the_breaker_dead_letters_nothing_and_work_resumes(
    fake: FakeOpenRouterThread, start_workers: StartWorkers
) -> None:
    """A ten-minute outage, shrunk: 4 s of 503s against a breaker that opens for 0.3-1 s."""
    outage = 4.0
    cluster = await start_workers(fake, count=2, concurrency=4)
    await fake_control(fake.root_url, latency=0.02, outage_seconds=outage)
    ids = await cluster.submit(40)

    seen: set[str] = set()

    async def all_completed() -> list[TaskRecord] | None:
        seen.add((await cluster.breaker.status())["state"])
        recs = await cluster.records(ids)
        dead = [r.id for r in recs if r.state == "DLQ"]
        assert not dead, f"the outage dead-lettered {dead}"
        return recs if all(r.state == "COMPLETED" for r in recs) else None

    recs = await eventually(all_completed, "every task to complete after the outage", 20)

    assert "open" in seen, seen
    assert (await cluster.breaker.status())["state"] == "closed"
    assert (await cluster.queue.depths()).dlq == 0
    stats = await fake_stats(fake)
    refused = stats["by_status"].get("503", 0)
    # Only the failures that opened it, the calls already under way and one probe per
    # half-open reached the upstream; without the breaker every task would fail at least once.
    assert 0 < refused < len(ids) // 2, stats
    # Only failures seen before the breaker opened used a retry; the rest waited PENDING.
    burned = sum(r.retry_count for r in recs)
    assert burned <= cluster.settings.breaker_failure_threshold, [r.retry_count for r in recs]


async def test_manual_open_stops_llm_claims_within_a_second_and_reset_resumes(
    redis: Redis, fake: FakeOpenRouterThread, start_workers: StartWorkers
) -> None:
    cluster = await start_workers(fake, count=2, concurrency=3)
    await fake_control(fake.root_url, latency=0.1)
    ids = await cluster.submit(60)

    async def some_completed() -> bool:
        return (await cluster.queue.counts())["COMPLETED"] >= 6

    await eventually(some_completed, "the first completions")
    opened_at = await redis_now(redis)
    await open_breaker(redis, KEYS, reason="maintenance", settings=cluster.settings)

    async def nothing_active() -> bool:
        return (await cluster.queue.counts())["ACTIVE"] == 0

    await eventually(nothing_active, "running tasks to finish or be handed back", timeout=1.0)
    quiet_from = await redis_now(redis)
    requests_then = (await fake_stats(fake))["chat_requests"]
    # Watch for 1.5 s: no task may enter ACTIVE and no request may reach the upstream.
    while await redis_now(redis) < quiet_from + 1.5:
        assert (await cluster.queue.counts())["ACTIVE"] == 0
        await asyncio.sleep(0.05)
    assert (await fake_stats(fake))["chat_requests"] == requests_then
    recs = await cluster.records(ids)
    late = [t for r in recs for t in active_entries(r) if t > opened_at + 1.0]
    assert not late, f"{len(late)} claim(s) more than 1 s after the breaker opened"
    assert sum(r.state == "PENDING" for r in recs) > 0
    assert (await cluster.breaker.status())["state"] == "open"

    await reset_breaker(redis, KEYS, settings=cluster.settings)
    recs = await cluster.wait_all(ids, "COMPLETED", timeout=20)
    assert all(r.retry_count == 0 for r in recs), "the manual open used a retry"


# ----------------------------------------------------------------------------- rate limiting


async def test_cooldown_after_a_429_storm_holds_every_worker(
    redis: Redis, fake: FakeOpenRouterThread, start_workers: StartWorkers
) -> None:
    """After the first 429 no worker sends anything until the shared cool-down has passed.

    One in-flight slot for everyone, so the fake sees requests in the order they were sent and
    "after the first 429" is well defined; the storm (50 queued 429s) stands for an upstream
    that would refuse everything during its Retry-After.
    """
    cluster = await start_workers(fake, count=2, concurrency=4, max_in_flight=1)
    await fake_control(fake.root_url, latency=0.02)
    ids = await cluster.submit(24)

    async def both_busy() -> bool:
        done = (await cluster.queue.counts())["COMPLETED"]
        return done >= 2 and all(w.active_count > 0 for w in cluster.workers)

    await eventually(both_busy, "both workers to hold tasks")
    await fake_control(fake.root_url, enqueue=["429"] * 50)

    async def cooling() -> float:
        return await cluster.limiter.cooldown_remaining()

    remaining = await eventually(cooling, "the cool-down after the first 429", timeout=5)
    requests_then = (await fake_stats(fake))["chat_requests"]
    # The upstream's window is over after Retry-After.
    await fake_control(fake.root_url, clear_queue=True)
    assert remaining > RETRY_AFTER - 0.5

    async def almost_over() -> bool:
        return await cluster.limiter.cooldown_remaining() < 0.1

    await eventually(almost_over, "the end of the cool-down", timeout=RETRY_AFTER + 1)
    assert (await fake_stats(fake))["chat_requests"] == requests_then, "a worker sent in the pause"
    pause_end = await redis_now(redis)

    recs = await cluster.wait_all(ids, "COMPLETED", timeout=20)
    stats = await fake_stats(fake)
    assert stats["by_status"].get("429", 0) == 1, stats
    assert sum(r.retry_count for r in recs) == 0  # the cool-down paused it: no retry spent
    resumed = {r.worker_id for r in recs if (r.completed_at or 0) > pause_end}
    assert resumed == {w.id for w in cluster.workers}, resumed
