"""The fan-out helper (stop the waiting, let the in-flight finish, raise the first error) and
TaskContext's saved parts, without Redis."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.tasks._fanout import FanOut, FanOutStopped
from taskflow_server.tasks.registry import TaskContext


async def test_first_error_stops_the_waiting_and_lets_the_in_flight_finish() -> None:
    fan = FanOut(2)
    sent: list[int] = []
    finished: list[int] = []

    async def job(n: int) -> int:
        async with fan.slot():
            sent.append(n)
            if n == 0:
                await asyncio.sleep(0.01)
                raise TaskError(ErrorClass.UNAVAILABLE, "503")
            await asyncio.sleep(0.05)  # still sending when job 0 fails
        finished.append(n)
        return n

    with pytest.raises(TaskError) as info:
        await fan.gather(job(n) for n in range(5))
    assert info.value.message == "503"
    assert sent == [0, 1] and finished == [1]  # 2, 3, 4 waited for a slot: never sent
    assert fan.stopped


async def test_all_results_in_order_when_nothing_fails() -> None:
    fan = FanOut(3)

    async def job(n: int) -> int:
        async with fan.slot():
            await asyncio.sleep(0.001 * (5 - n))
        return n * n

    assert await fan.gather(job(n) for n in range(5)) == [0, 1, 4, 9, 16]
    assert not fan.stopped


async def test_the_first_error_wins_and_a_late_slot_is_refused() -> None:
    fan = FanOut(2)

    async def fail(message: str, delay: float) -> None:
        async with fan.slot():
            await asyncio.sleep(delay)
            raise ValueError(message)

    with pytest.raises(ValueError, match="first"):
        await fan.gather([fail("second", 0.03), fail("first", 0.01)])
    with pytest.raises(FanOutStopped):
        async with fan.slot():
            pass


async def test_cancelling_the_gather_cancels_every_job() -> None:
    fan = FanOut(1)
    started = asyncio.Event()

    async def forever() -> None:
        async with fan.slot():
            started.set()
            await asyncio.sleep(60)

    runner = asyncio.create_task(fan.gather([forever(), forever()]))
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


def _ctx(**kwargs: Any) -> TaskContext:
    return TaskContext("t1", "x", 0, cast(Any, SimpleNamespace()), **kwargs)


async def test_context_without_a_worker_saves_nothing_and_finds_nothing() -> None:
    ctx = _ctx()
    assert await ctx.saved_parts() == {}
    await ctx.save_part("a", 1)  # a no-op that does not fail
    assert await ctx.saved_parts() == {"a": 1}  # this attempt sees what it saved


async def test_context_reads_once_per_attempt_and_writes_through() -> None:
    loads: list[int] = []
    saved: list[tuple[str, Any]] = []

    async def load() -> dict[str, Any]:
        loads.append(1)
        return {"page:1": {"x": 1}}

    async def save(name: str, value: Any) -> None:
        saved.append((name, value))

    ctx = _ctx(_load_parts=load, _save_part=save)
    assert await ctx.saved_parts() == {"page:1": {"x": 1}}
    await ctx.save_part("page:2", {"x": 2})
    assert await ctx.saved_parts() == {"page:1": {"x": 1}, "page:2": {"x": 2}}
    assert len(loads) == 1 and saved == [("page:2", {"x": 2})]
