"""Holds end to end: conditions only time or money fixes stop LLM work without killing it.

Each test runs two ``taskflow-worker`` processes on a private Redis against the fake OpenRouter
as its own process, submits a batch of summaries, lets some complete, then switches the fake to
one of OpenRouter's documented answers (served from ``tests/fixtures/openrouter``):

* a spent key limit (403 with ``limit_source``): the breaker holds (``key_limit``); when the
  limit has room again the monitor lifts the hold and work resumes by itself;
* our own daily budget (``TASKFLOW_BUDGET_USD``): the hold (``budget``) comes from the recorded
  cost; raising the budget through the API lifts it;
* a free model's daily cap (429, reset two hours away): the cool-down is longer than a task may
  wait, so LLM claims stop (``rate_limited``) instead of tasks sleeping until their time limit;
  an operator's breaker reset resumes work;
* a provider's 429 inside a 200 body for 10 s: the shared cool-down paces every worker, so the
  window costs a bounded number of calls.

In every case: no task is dead-lettered, no retry is spent, and every task completes once the
condition is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from e2e_support import (
    POLL,
    TEXT,
    FakeUpstream,
    RedisServer,
    Spawner,
    StartServer,
    assert_all_completed_once,
    new_task,
    open_queue,
    submit_chunked,
    worker_env,
)

from support import eventually, make_settings
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.store.queue import TaskQueue

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TASKS = 60
WORKERS = 2
MAX_IN_FLIGHT = 4


def _summaries(n: int) -> list[Any]:
    return [
        new_task("summarize", {"content": f"{TEXT} Item {i}.", "sentences": 1}) for i in range(n)
    ]


def _env(
    redis_server: RedisServer, upstream: FakeUpstream, prefix: str, **extra: str
) -> dict[str, str]:
    return worker_env(
        redis_server.url,
        prefix,
        TASKFLOW_CONCURRENCY="5",
        TASKFLOW_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
        TASKFLOW_HOLD_CHECK_SECONDS="0.5",
        TASKFLOW_HOLD_PROBE_SECONDS="3",
        TASKFLOW_UPSTREAM_MAX_WAIT="5",
        **upstream.env(),
        **extra,
    )


async def _no_loss_so_far(queue: TaskQueue, ids: list[str]) -> None:
    counts = await queue.counts()
    assert counts["DLQ"] == 0, counts
    records = await queue.get_many(ids)
    assert sum(r.retry_count for r in records if r is not None) == 0


def _held(breaker: CircuitBreaker, reason: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await breaker.status()).get("hold") == reason

    return check


async def _start_batch(queue: TaskQueue, spawn: Spawner, env: dict[str, str]) -> list[str]:
    """Submit the batch, start the workers, and return once work flows (5 completions)."""
    ids = await submit_chunked(queue, _summaries(TASKS))
    for _ in range(WORKERS):
        spawn("taskflow-worker", env=env)

    async def flowing() -> bool:
        return (await queue.counts())["COMPLETED"] >= 5

    await eventually(flowing, "the first completions", 60, every=POLL)
    return ids


async def _run_hold(
    *,
    queue: TaskQueue,
    upstream: FakeUpstream,
    spawn: Spawner,
    env: dict[str, str],
    reason: str,
    mode: str | None,
    fault_off: Callable[[], Awaitable[None]],
    hold_for: float,
    max_calls_while_held: int,
    figures: dict[str, Any],
) -> None:
    """Submit, start the workers, let work flow, switch the fake to ``mode`` (None: the work
    itself causes the hold), check the hold and that nothing is lost, end it, check the end."""
    breaker = CircuitBreaker(queue.redis, queue.keys, "openrouter", make_settings())
    ids = await _start_batch(queue, spawn, env)
    if mode is not None:
        upstream.control(mode={"name": mode, "seconds": None})
    waited_from = time.monotonic()
    await eventually(_held(breaker, reason), f"the {reason} hold", 30, every=POLL)
    held_at = time.monotonic()
    took = held_at - waited_from
    calls_at_hold = upstream.stats()["chat_requests"]
    completed_at_hold = (await queue.counts())["COMPLETED"]
    while time.monotonic() - held_at < hold_for:
        await _no_loss_so_far(queue, ids)
        status = await breaker.status()
        assert status["state"] in ("open", "half-open"), status
        await asyncio.sleep(0.25)
    calls_while_held = upstream.stats()["chat_requests"] - calls_at_hold
    assert calls_while_held <= max_calls_while_held, calls_while_held
    pending = (await queue.counts())["PENDING"]
    assert pending > 0, "the hold should have kept work waiting in its queue"
    await fault_off()
    ended = time.monotonic()

    async def all_done() -> bool:
        return (await queue.counts())["COMPLETED"] == TASKS

    await eventually(all_done, "every task to complete after the hold", 90, every=0.25)
    await assert_all_completed_once(queue, ids)
    await _no_loss_so_far(queue, ids)
    figures.update(
        hold=reason,
        hold_seen_after_s=round(took, 2),
        completed_before_hold=completed_at_hold,
        calls_while_held=calls_while_held,
        held_s=round(ended - held_at, 2),
        resumed_and_finished_s=round(time.monotonic() - ended, 2),
    )


async def test_key_limit_holds_then_resumes_by_itself(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    figures: dict[str, Any],
) -> None:
    env = _env(redis_server, fake_upstream, "holdkey")
    fake_upstream.control(latency=0.5)
    async with open_queue(redis_server.url, "holdkey") as queue:

        async def lift() -> None:
            fake_upstream.control(clear_mode=True)  # the user raised the key's limit

        await _run_hold(
            queue=queue,
            upstream=fake_upstream,
            spawn=spawn,
            env=env,
            reason="key_limit",
            mode="key-limit",
            fault_off=lift,
            hold_for=4.0,
            # What was in flight, then one probe per lift (every 0.5 s) or per probe timeout.
            max_calls_while_held=MAX_IN_FLIGHT + 12,
            figures=figures,
        )


async def test_budget_holds_until_raised(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    start_server: StartServer,
    figures: dict[str, Any],
) -> None:
    prefix = "holdbudget"
    # Each answer costs about $0.002 (~230 tokens of prompt and answer at $0.01 per 1k).
    fake_upstream.control(latency=0.5, cost_per_1k_tokens=0.01)
    env = _env(redis_server, fake_upstream, prefix, TASKFLOW_BUDGET_USD="0.03")
    api = start_server({**env, "TASKFLOW_WORKERS": "0"})
    async with open_queue(redis_server.url, prefix) as queue:

        async def raise_budget() -> None:
            async with api.client() as http:
                answer = await http.put("/api/v1/openrouter/budget", json={"daily_usd": 100.0})
                assert answer.status_code == 200, answer.text
                assert answer.json()["held"] is False

        await _run_hold(
            queue=queue,
            upstream=fake_upstream,
            spawn=spawn,
            env=env,
            reason="budget",
            mode=None,  # the work itself spends the budget
            fault_off=raise_budget,
            hold_for=3.0,
            # Only requests already past the breaker when the hold began may still arrive.
            max_calls_while_held=MAX_IN_FLIGHT,
            figures=figures,
        )
        async with api.client() as http:
            budget = (await http.get("/api/v1/openrouter/budget")).json()
        assert budget["spent_today_usd"] > 0.03 and budget["held"] is False


async def test_daily_cap_stops_claims_instead_of_sleeping_tasks(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    start_server: StartServer,
    figures: dict[str, Any],
) -> None:
    prefix = "holdcap"
    fake_upstream.control(latency=0.5)
    env = _env(redis_server, fake_upstream, prefix)
    api = start_server({**env, "TASKFLOW_WORKERS": "0"})
    async with open_queue(redis_server.url, prefix) as queue:

        async def operator_reset() -> None:
            fake_upstream.control(clear_mode=True)  # a new UTC day (or a paid model)
            async with api.client() as http:
                status = (await http.get("/api/v1/openrouter/status")).json()
                assert status["hold"]["reason"] == "rate_limited"
                assert status["hold"]["seconds_left"] > 3600  # the cap resets hours away
                answer = await http.post("/api/v1/workers/reset-circuit-breaker")
                assert answer.status_code == 200, answer.text

        await _run_hold(
            queue=queue,
            upstream=fake_upstream,
            spawn=spawn,
            env=env,
            reason="rate_limited",
            mode="daily-cap",
            fault_off=operator_reset,
            hold_for=6.0,  # longer than TASKFLOW_UPSTREAM_MAX_WAIT: nothing sleeps that long
            max_calls_while_held=MAX_IN_FLIGHT,
            figures=figures,
        )


async def test_provider_429_in_a_200_body_is_paced_by_the_cool_down(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    figures: dict[str, Any],
) -> None:
    prefix = "hold429"
    window = 10.0
    fake_upstream.control(latency=0.5)
    env = _env(redis_server, fake_upstream, prefix)
    async with open_queue(redis_server.url, prefix) as queue:
        ids = await _start_batch(queue, spawn, env)
        before = fake_upstream.stats()["chat_requests"]
        fake_upstream.control(mode={"name": "provider-429", "seconds": window})
        started = time.monotonic()
        while time.monotonic() - started < window:
            await _no_loss_so_far(queue, ids)
            await asyncio.sleep(0.25)
        during = fake_upstream.stats()["chat_requests"] - before

        async def all_done() -> bool:
            return (await queue.counts())["COMPLETED"] == TASKS

        await eventually(all_done, "every task to complete after the window", 90, every=0.25)
        await assert_all_completed_once(queue, ids)
        await _no_loss_so_far(queue, ids)
    # The first 429 sets a 10 s cool-down for everyone (no Retry-After in the body): the
    # window costs what was in flight, plus at most one wave when the cool-down ends.
    assert during <= 2 * MAX_IN_FLIGHT + 2, during
    figures.update(window_s=window, calls_during_window=during)
