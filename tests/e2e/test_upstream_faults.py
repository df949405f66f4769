"""Upstream faults: a 30 s outage (every call answers 503) and a 429 storm.

* Outage: the shared circuit breaker opens, workers stop claiming LLM tasks instead of burning
  retries, no task reaches the DLQ because of it, and everything completes once the upstream is
  back (the breaker's half-open probe closes it again).
* 429 storm: the first 429's ``Retry-After`` becomes a cool-down shared through Redis; no worker
  sends a request while it lasts (so no 429 beyond those of requests already in flight), and
  every task completes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from e2e_support import (
    POLL,
    TEXT,
    FakeUpstream,
    RedisServer,
    Spawner,
    assert_all_completed_once,
    new_task,
    open_queue,
    submit_chunked,
    worker_env,
)

from support import eventually, make_settings
from taskflow_server.resilience.breaker import CircuitBreaker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

OUTAGE_SECONDS = 30.0


def summaries(n: int) -> list[Any]:
    return [
        new_task("summarize", {"content": f"{TEXT} Note {i}.", "sentences": 1}) for i in range(n)
    ]


async def test_upstream_outage_opens_breaker_and_loses_nothing(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    figures: dict[str, Any],
) -> None:
    prefix = "outage"
    tasks = 500
    env = worker_env(
        redis_server.url,
        prefix,
        TASKFLOW_CONCURRENCY="10",
        TASKFLOW_LEASE_SECONDS="10",
        TASKFLOW_BREAKER_OPEN_SECONDS="3",
        TASKFLOW_BREAKER_MAX_OPEN_SECONDS="6",
        **fake_upstream.env(),
    )
    fake_upstream.control(latency=1.0)
    async with open_queue(redis_server.url, prefix) as queue:
        breaker = CircuitBreaker(
            queue.redis, queue.keys, "openrouter", make_settings(key_prefix=prefix)
        )
        ids = await submit_chunked(queue, summaries(tasks))
        for _ in range(3):
            spawn("taskflow-worker", env=env)

        async def warmed_up() -> bool:
            return (await queue.counts())["COMPLETED"] >= 60

        await eventually(warmed_up, "the first completions", 60, every=POLL)
        fake_upstream.control(outage_seconds=OUTAGE_SECONDS)
        outage_start = time.monotonic()
        at_start = fake_upstream.stats()
        states: set[str] = set()
        completed_during = []
        while time.monotonic() - outage_start < OUTAGE_SECONDS:
            states.add((await breaker.status())["state"])
            counts = await queue.counts()
            completed_during.append(counts["COMPLETED"])
            assert counts["DLQ"] == 0, counts
            await asyncio.sleep(0.25)
        outage_end = time.monotonic()
        during = fake_upstream.stats()
        assert "open" in states, f"the breaker never opened: {states}"
        # Once open, workers claim no LLM task: only what was in flight and the probes get 503.
        calls_in_outage = during["chat_requests"] - at_start["chat_requests"]
        failed_calls = during["by_status"].get("503", 0)

        async def closed_again() -> bool:
            return (await breaker.status())["state"] == "closed"

        waited_from = time.monotonic()
        await eventually(closed_again, "the breaker to close after the outage", 30, every=POLL)
        closed_after = time.monotonic() - waited_from
        before = (await queue.counts())["COMPLETED"]

        async def resumed() -> bool:
            return (await queue.counts())["COMPLETED"] > before

        await eventually(resumed, "completions to resume", 30, every=POLL)
        resumed_after = time.monotonic() - outage_end

        async def all_done() -> bool:
            return (await queue.counts())["COMPLETED"] == tasks

        await eventually(all_done, "every task to complete", 120, every=0.25)
        await assert_all_completed_once(queue, ids)
        records = await queue.get_many(ids)
        max_retries_used = max(r.retry_count for r in records if r is not None)
        assert max_retries_used < 3
    figures.update(
        tasks=tasks,
        outage_s=OUTAGE_SECONDS,
        upstream_calls_during_outage=calls_in_outage,
        answered_503=failed_calls,
        breaker_states_seen=sorted(states),
        breaker_closed_after_outage_s=round(closed_after, 2),
        completions_resumed_after_outage_s=round(resumed_after, 2),
        max_retry_count=max_retries_used,
        dlq=0,
    )


async def test_429_storm_holds_every_worker(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    figures: dict[str, Any],
) -> None:
    prefix = "storm"
    tasks = 300
    storm = 12
    retry_after = 3.0
    env = worker_env(
        redis_server.url,
        prefix,
        TASKFLOW_CONCURRENCY="10",
        TASKFLOW_LEASE_SECONDS="10",
        **fake_upstream.env(),
    )
    fake_upstream.control(latency=0.5, retry_after=retry_after)
    async with open_queue(redis_server.url, prefix) as queue:
        ids = await submit_chunked(queue, summaries(tasks))
        for _ in range(3):
            spawn("taskflow-worker", env=env)

        async def warmed_up() -> bool:
            return (await queue.counts())["COMPLETED"] >= 40

        await eventually(warmed_up, "the first completions", 60, every=POLL)
        fake_upstream.control(enqueue=["429"] * storm)
        samples: list[tuple[float, int, int]] = []
        deadline = time.monotonic() + 60
        while True:
            stats = await asyncio.to_thread(fake_upstream.stats)
            samples.append((time.monotonic(), stats["chat_requests"], stats["rate_limited"]))
            if stats["rate_limited"] >= storm and time.monotonic() - _first_429(samples) > 8:
                break
            assert time.monotonic() < deadline, f"the storm did not play out: {stats}"
            await asyncio.sleep(0.05)
        windows, sent_in_cooldown = _requests_during_cooldowns(samples, retry_after)

        async def all_done() -> bool:
            return (await queue.counts())["COMPLETED"] == tasks

        await eventually(all_done, "every task to complete", 120, every=0.25)
        await assert_all_completed_once(queue, ids)
    final = fake_upstream.stats()
    assert windows >= 1
    assert sent_in_cooldown == 0, f"{sent_in_cooldown} requests went out during a cool-down"
    assert final["rate_limited"] == storm, final  # no 429 beyond the storm's own
    figures.update(
        tasks=tasks,
        storm_429s=storm,
        retry_after_s=retry_after,
        total_429s=final["rate_limited"],
        cooldown_windows_checked=windows,
        requests_sent_during_cooldowns=sent_in_cooldown,
    )


def _first_429(samples: list[tuple[float, int, int]]) -> float:
    for t, _, limited in samples:
        if limited:
            return t
    return time.monotonic()


def _requests_during_cooldowns(
    samples: list[tuple[float, int, int]], retry_after: float, slack: float = 0.4
) -> tuple[int, int]:
    """Requests that reached the upstream inside a cool-down, from polled counters.

    Each rise of the 429 counter starts a cool-down of ``retry_after`` seconds; the first
    ``slack`` seconds (requests already on the wire before every worker saw the cool-down) and
    the last ``slack`` (polling jitter) are left out.
    """
    windows: list[tuple[float, float]] = []
    for (_, _, before), (t, _, after) in itertools.pairwise(samples):
        if after > before:
            windows.append((t + slack, t + retry_after - slack))
    sent = 0
    for (t0, r0, _), (t1, r1, _) in itertools.pairwise(samples):
        if any(lo <= t0 and t1 <= hi for lo, hi in windows):
            sent += r1 - r0
    return len(windows), sent
