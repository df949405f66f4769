"""Demo task types for tests, benchmarks and load runs (no upstream, lane ``local``).

* ``demo.noop`` {}: returns at once; measures the queue itself.
* ``demo.sleep`` {seconds}: waits without using CPU (an I/O-bound call stand-in).
* ``demo.flaky`` {fail_rate, error_class}: fails with that probability (default ``unavailable``).
* ``demo.fail`` {error_class, message}: always fails with that error class.
* ``demo.cpu`` {ms}: burns CPU for ``ms`` in the process pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.tasks.registry import TaskContext, task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoopPayload(BaseModel):
    """Anything; ignored."""

    model_config = ConfigDict(extra="allow")


class SleepPayload(_Strict):
    """How long to sleep."""

    seconds: float = Field(default=0.1, ge=0, le=3600)


class FlakyPayload(_Strict):
    """Failure probability and the class of the failures."""

    fail_rate: float = Field(default=0.5, ge=0, le=1)
    error_class: ErrorClass = ErrorClass.UNAVAILABLE
    seconds: float = Field(default=0.0, ge=0, le=3600)


class FailPayload(_Strict):
    """The error class to fail with."""

    error_class: ErrorClass = ErrorClass.INVALID_INPUT
    message: str = Field(default="demo failure", max_length=2000)


class CpuPayload(_Strict):
    """CPU time to burn, in milliseconds."""

    ms: float = Field(default=10.0, ge=0, le=600_000)


_coin = random.Random()
"""demo.flaky's own generator (the global ``random`` state is left to the caller)."""


@task("demo.noop", payload=NoopPayload)
async def noop(ctx: TaskContext, payload: NoopPayload) -> None:
    """Do nothing."""
    return None


@task("demo.sleep", payload=SleepPayload)
async def sleep(ctx: TaskContext, payload: SleepPayload) -> dict[str, float]:
    """Sleep ``seconds`` without blocking the event loop."""
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}


@task("demo.flaky", payload=FlakyPayload)
async def flaky(ctx: TaskContext, payload: FlakyPayload) -> dict[str, Any]:
    """Fail with probability ``fail_rate``."""
    if payload.seconds:
        await asyncio.sleep(payload.seconds)
    if _coin.random() < payload.fail_rate:
        raise TaskError(payload.error_class, f"demo.flaky failed (fail_rate={payload.fail_rate})")
    return {"ok": True, "attempt": ctx.attempt}


@task("demo.fail", payload=FailPayload)
async def fail(ctx: TaskContext, payload: FailPayload) -> None:
    """Always fail with ``error_class``."""
    raise TaskError(payload.error_class, payload.message)


def burn_cpu(ms: float) -> float:
    """Spin for ``ms`` milliseconds of wall time; returns the time actually spent (ms)."""
    start = time.perf_counter()
    end = start + ms / 1000.0
    x = 0
    while time.perf_counter() < end:
        x += 1
    return (time.perf_counter() - start) * 1000.0


@task("demo.cpu", payload=CpuPayload)
async def cpu(ctx: TaskContext, payload: CpuPayload) -> dict[str, float]:
    """Burn CPU in the process pool, so the event loop stays free."""
    timeout = ctx.services.settings.task_time_limit
    spent = await ctx.services.cpu.run(burn_cpu, payload.ms, timeout=timeout)
    return {"ms": float(spent)}
