"""The CPU pool: results, hard time limits, crashes, concurrency, a free event loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskflow_server.cpu import (
    CpuOutOfMemoryError,
    CpuPool,
    CpuPoolClosedError,
    CpuTimeoutError,
    CpuWorkerCrashedError,
)


@pytest.fixture
async def pool() -> AsyncIterator[CpuPool]:
    p = CpuPool(2)
    try:
        yield p
    finally:
        p.shutdown()


async def test_runs_a_function(pool: CpuPool) -> None:
    assert await pool.run(pow, 2, 10, timeout=30) == 1024


async def test_exceptions_of_the_function_pass_through(pool: CpuPool) -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        await pool.run(int, "not a number", timeout=30)
    assert await pool.run(pow, 3, 2, timeout=30) == 9
    assert pool.restarts == 0


async def test_a_call_past_its_limit_is_killed_and_the_pool_still_works(pool: CpuPool) -> None:
    await pool.run(pow, 1, 1, timeout=30)  # start the workers first
    started = time.monotonic()
    with pytest.raises(CpuTimeoutError, match=r"0\.5 s limit"):
        await pool.run(time.sleep, 30, timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert pool.restarts == 1
    results = await asyncio.gather(*(pool.run(pow, 2, n, timeout=30) for n in range(4)))
    assert results == [1, 2, 4, 8]


async def test_the_killed_process_is_gone(pool: CpuPool) -> None:
    pid = await pool.run(os.getpid, timeout=30)
    with pytest.raises(CpuTimeoutError):
        await pool.run(time.sleep, 30, timeout=0.3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        # a zombie not yet reaped still answers kill(0); its state must be Z
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]  # noqa: ASYNC240
        assert state in "ZX"


async def test_a_crashed_worker_is_reported_and_replaced(pool: CpuPool) -> None:
    with pytest.raises(CpuWorkerCrashedError, match="died"):
        await pool.run(os._exit, 3, timeout=30)
    assert await pool.run(pow, 2, 3, timeout=30) == 8


async def test_calls_run_in_parallel_up_to_the_size(pool: CpuPool) -> None:
    await asyncio.gather(pool.run(pow, 1, 1, timeout=30), pool.run(pow, 1, 1, timeout=30))
    started = time.monotonic()
    await asyncio.gather(
        pool.run(time.sleep, 0.4, timeout=30), pool.run(time.sleep, 0.4, timeout=30)
    )
    assert time.monotonic() - started < 0.75


async def test_the_event_loop_stays_free(pool: CpuPool) -> None:
    await pool.run(pow, 1, 1, timeout=30)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    tick = asyncio.create_task(ticker())
    try:
        await pool.run(sum, range(40_000_000), timeout=60)
    finally:
        tick.cancel()
    assert lags and max(lags) < 0.05


async def test_shutdown_refuses_new_work() -> None:
    p = CpuPool(1)
    assert await p.run(pow, 2, 2, timeout=30) == 4
    p.shutdown()
    p.shutdown()
    with pytest.raises(CpuPoolClosedError):
        await p.run(pow, 2, 2, timeout=30)


def allocate(megabytes: int) -> int:
    """Hold ``megabytes`` of memory at once (touching every page), then report the size."""
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    return len(block) // (1024 * 1024)


async def test_a_call_over_the_memory_cap_fails_and_the_pool_recovers() -> None:
    capped = CpuPool(1, memory_limit_mb=768)
    try:
        with pytest.raises(CpuOutOfMemoryError, match="768 MB"):
            await capped.run(allocate, 4096, timeout=30)
        assert await capped.run(allocate, 16, timeout=30) == 16
    finally:
        capped.shutdown()
