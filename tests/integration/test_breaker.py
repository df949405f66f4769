"""The shared circuit breaker on a real Redis."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from redis.asyncio import Redis

from support import eventually, make_settings, until_redis_time
from taskflow_server.config import Settings
from taskflow_server.resilience.breaker import (
    CircuitBreaker,
    breaker_status,
    open_breaker,
    reset_breaker,
)
from taskflow_server.resilience.errors import ErrorClass
from taskflow_server.store.events import EventLog
from taskflow_server.store.keys import Keys

KEYS = Keys("tfllm")


def settings(**overrides: float) -> Settings:
    values: dict[str, float] = {
        "breaker_failure_threshold": 3,
        "breaker_failure_rate": 0.5,
        "breaker_window_seconds": 60.0,
        "breaker_min_calls": 1000,
        "breaker_open_seconds": 0.2,
        "breaker_max_open_seconds": 0.5,
        "hold_probe_seconds": 0.2,
    }
    values.update(overrides)
    return make_settings(**values)


def make(redis: Redis, probe_seconds: float = 5.0, **overrides: float) -> CircuitBreaker:
    return CircuitBreaker(redis, KEYS, "up", settings(**overrides), probe_seconds=probe_seconds)


async def wait_for_state(breaker: CircuitBreaker, state: str, within: float = 3.0) -> None:
    async def reached() -> bool:
        return bool((await breaker.status())["state"] == state)

    await eventually(reached, f"the breaker to become {state}", within)


async def allowance_is(breaker: CircuitBreaker, answer: int | None) -> bool:
    """Asks for an allowance (which may take the probe) and says whether it was ``answer``."""
    return bool(await breaker.allowance() == answer)


async def test_closed_by_default(redis: Redis) -> None:
    breaker = make(redis)
    assert await breaker.allowance() is None
    assert not await breaker.is_open()
    status = await breaker.status()
    assert status["state"] == "closed" and status["failure_count"] == 0


async def test_opens_after_n_consecutive_failures(redis: Redis) -> None:
    breaker = make(redis)
    await breaker.record_failure(ErrorClass.UNAVAILABLE)
    await breaker.record_failure("timeout")
    assert (await breaker.status())["failure_count"] == 2
    await breaker.record_success()  # a success breaks the run
    assert (await breaker.status())["failure_count"] == 0
    for _ in range(3):
        await breaker.record_failure(ErrorClass.UNAVAILABLE)
    assert await breaker.is_open()
    assert await breaker.allowance() == 0
    status = await breaker.status()
    assert status["state"] == "open"
    assert status["reason"] == "consecutive_failures"
    assert status["last_error_class"] == "unavailable"
    assert 0 < status["seconds_to_half_open"] <= 0.2


async def test_neutral_failures_do_not_count(redis: Redis) -> None:
    breaker = make(redis)
    for cls in ("rate_limited", "content_filtered", "invalid_request", "bad_output", "auth"):
        for _ in range(5):
            await breaker.record_failure(cls)
    assert (await breaker.status())["state"] == "closed"


@pytest.mark.parametrize("cls", [ErrorClass.CREDITS, ErrorClass.KEY_LIMIT, ErrorClass.BUDGET])
async def test_a_spent_limit_holds_at_once(redis: Redis, cls: ErrorClass) -> None:
    breaker = make(redis, hold_probe_seconds=30.0)
    await breaker.record_failure(cls)
    status = await breaker.status()
    assert status["state"] == "open" and status["reason"] == cls.value
    assert status["hold"] == cls.value
    assert status["hold_until"] == pytest.approx(status["opened_at"] + 30.0, abs=0.05)
    assert await breaker.allowance() == 0


async def test_a_hold_until_lifted_then_one_probe_then_closed(redis: Redis) -> None:
    worker_a, worker_b = make(redis), make(redis)
    await worker_a.hold("key_limit")
    status = await worker_b.status()
    assert status["hold"] == "key_limit" and status["hold_until"] is None
    # Longer than every timeout (0.2 s) on the breaker's clock: a hold without an end stays.
    await until_redis_time(redis, status["opened_at"] + 0.3, "every timeout to pass")
    assert await worker_b.allowance() == 0
    assert not await worker_b.lift("budget")  # another reason's lift does not end it
    assert await worker_b.lift("key_limit")
    answers = [await worker_a.allowance(), await worker_b.allowance()]
    assert sorted(answers, key=str) == [0, 1]  # exactly one probe
    await worker_a.record_success()
    status = await worker_b.status()
    assert status["state"] == "closed" and status["hold"] is None


async def test_the_same_hold_again_keeps_the_later_end(redis: Redis) -> None:
    breaker = make(redis)
    await breaker.hold("rate_limited", 60.0)
    first = (await breaker.status())["hold_until"]
    await breaker.hold("rate_limited", 5.0)
    assert (await breaker.status())["hold_until"] == first
    await breaker.hold("rate_limited", 120.0)
    assert (await breaker.status())["hold_until"] == pytest.approx(first + 60.0, abs=0.5)


async def test_a_hold_replaces_an_outage_and_is_announced(redis: Redis) -> None:
    breaker = make(redis, breaker_open_seconds=30.0)
    for _ in range(3):
        await breaker.record_failure(ErrorClass.UNAVAILABLE)
    assert (await breaker.status())["reason"] == "consecutive_failures"
    await breaker.hold("credits", 60.0)
    status = await breaker.status()
    assert status["state"] == "open" and status["hold"] == "credits"
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(KEYS.events))
    last = {k.decode(): v.decode() for k, v in entries[-1][1].items()}
    assert (last["type"], last["reason"], last["hold"]) == (
        "breaker_state_changed",
        "credits",
        "credits",
    )
    await breaker.reset()
    assert (await breaker.status())["hold"] is None


async def test_failure_rate_opens(redis: Redis) -> None:
    breaker = make(redis, breaker_failure_threshold=100, breaker_min_calls=10)
    for i in range(10):
        if i % 2:
            await breaker.record_failure(ErrorClass.TIMEOUT)
        else:
            await breaker.record_success()
    status = await breaker.status()
    assert status["state"] == "open" and status["reason"] == "failure_rate"


async def test_half_open_gives_exactly_one_probe_across_callers(redis: Redis) -> None:
    breakers = [make(redis) for _ in range(5)]  # five "workers"
    for _ in range(3):
        await breakers[0].record_failure(ErrorClass.UNAVAILABLE)
    await wait_for_state(breakers[0], "half-open")
    answers = await asyncio.gather(*(b.allowance() for b in breakers for _ in range(20)))
    assert answers.count(1) == 1
    assert answers.count(0) == 99
    # The probe succeeds: closed for everyone.
    await breakers[3].record_success()
    assert [await b.allowance() for b in breakers] == [None] * 5


async def test_failed_probe_reopens_with_a_longer_timeout(redis: Redis) -> None:
    breaker = make(redis, breaker_open_seconds=0.2, breaker_max_open_seconds=0.5)
    for _ in range(3):
        await breaker.record_failure(ErrorClass.UNAVAILABLE)
    first = await breaker.status()
    assert first["open_until"] - first["opened_at"] == pytest.approx(0.2, abs=0.01)
    await wait_for_state(breaker, "half-open")
    assert await breaker.allowance() == 1
    await breaker.record_failure(ErrorClass.TIMEOUT)
    second = await breaker.status()
    assert second["state"] == "open" and second["reason"] == "probe_failed"
    assert second["open_until"] - second["opened_at"] == pytest.approx(0.4, abs=0.01)
    await wait_for_state(breaker, "half-open")
    assert await breaker.allowance() == 1
    await breaker.record_failure(ErrorClass.TIMEOUT)
    third = await breaker.status()
    assert third["open_until"] - third["opened_at"] == pytest.approx(0.5, abs=0.01)  # capped
    await wait_for_state(breaker, "half-open")
    assert await breaker.allowance() == 1
    await breaker.record_success()
    assert (await breaker.status())["opens"] == 0  # the next open starts short again


async def test_a_lost_probe_is_handed_out_again(redis: Redis) -> None:
    breaker = make(redis, probe_seconds=0.2)
    await breaker.record_failure(ErrorClass.CREDITS)
    await wait_for_state(breaker, "half-open")
    assert await breaker.allowance() == 1  # this worker then "dies"
    assert await breaker.allowance() == 0
    await eventually(lambda: allowance_is(breaker, 1), "the lost probe to be handed out", 3)


async def test_released_probe_goes_to_the_next_caller(redis: Redis) -> None:
    breaker = make(redis)
    await breaker.record_failure(ErrorClass.CREDITS)
    await wait_for_state(breaker, "half-open")
    assert await breaker.allowance() == 1
    await breaker.release_probe()
    assert await breaker.allowance() == 1


async def test_a_neutral_answer_to_the_probe_closes(redis: Redis) -> None:
    breaker = make(redis)
    await breaker.record_failure(ErrorClass.CREDITS)
    await wait_for_state(breaker, "half-open")
    assert await breaker.allowance() == 1
    await breaker.record_failure(ErrorClass.INVALID_REQUEST)
    assert (await breaker.status())["state"] == "closed"


async def test_manual_open_holds_until_reset_for_every_worker(redis: Redis) -> None:
    worker_a, worker_b = make(redis), make(redis)
    status = await open_breaker(redis, KEYS, "up", reason="maintenance", settings=settings())
    assert status["state"] == "open" and status["held"] and status["reason"] == "maintenance"
    assert status["seconds_to_half_open"] is None
    # Longer than the open timeout (0.2 s) on the breaker's clock: a held breaker stays open.
    await until_redis_time(redis, status["opened_at"] + 0.3, "the open timeout to pass")
    assert await worker_a.allowance() == 0
    assert await worker_b.is_open()
    status = await reset_breaker(redis, KEYS, "up", settings=settings())
    assert status["state"] == "closed"
    assert await worker_a.allowance() is None and await worker_b.allowance() is None


async def test_manual_open_for_some_seconds(redis: Redis) -> None:
    breaker = make(redis)
    await breaker.open("test", seconds=0.1)
    assert await breaker.is_open()
    await wait_for_state(breaker, "half-open")
    assert await breaker.allowance() == 1


async def test_reset_clears_counters(redis: Redis) -> None:
    breaker = make(redis)
    for _ in range(3):
        await breaker.record_failure(ErrorClass.UNAVAILABLE)
    await breaker.reset()
    status = await breaker_status(redis, KEYS, "up", settings=settings())
    assert status["state"] == "closed"
    assert status["failure_count"] == 0 and status["opens"] == 0


async def test_every_change_of_state_is_one_event_on_the_log(redis: Redis) -> None:
    breaker = make(redis)
    log = EventLog(redis, KEYS)
    for _ in range(3):
        await breaker.record_failure(ErrorClass.UNAVAILABLE)
    await breaker.record_failure(ErrorClass.UNAVAILABLE)  # already open: no second event
    await wait_for_state(breaker, "open")
    # The timeout passes: half-open, and this call takes the probe.
    await eventually(lambda: allowance_is(breaker, 1), "the breaker to hand out a probe", 3)
    await breaker.record_success()
    await breaker.open("maintenance")
    await breaker.reset()
    events = [e for e in await log.read("0-0") if e.type == "breaker_state_changed"]
    assert [(e.old_state, e.state) for e in events] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
        ("closed", "open"),
        ("open", "closed"),
    ]
    assert {e.data["breaker"] for e in events} == {"up"} and all(e.task_id is None for e in events)
    assert [e.data["reason"] for e in events][::3] == ["consecutive_failures", "maintenance"]
