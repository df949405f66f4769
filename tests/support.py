"""Helpers shared by the test suites (importable as ``support``: tests/ is on pythonpath)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, overload

import httpx
import redis as redis_sync
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from taskflow_server.api.app import ApiServer
from taskflow_server.config import Settings
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import TaskRecord
from taskflow_server.tasks.registry import TaskContext

T = TypeVar("T")


def make_settings(**overrides: object) -> Settings:
    """Settings for tests: short periods, no .env file; ``overrides`` win."""
    base: dict[str, Any] = {
        "lease_seconds": 30.0,
        "scheduler_every": 0.05,
        "reaper_every": 0.1,
        "heartbeat_seconds": 0.5,
        "grace_seconds": 2.0,
        "retry_share": 0.2,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under the hash tag ``{prefix}`` (a test's own keys, never FLUSHDB)."""
    client = redis_sync.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except redis_sync.ConnectionError:
        pass  # a test that pointed the server at a dead Redis
    finally:
        client.close()


@contextlib.contextmanager
def serve_app(app: FastAPI, *, name: str) -> Iterator[tuple[str, ApiServer]]:
    """Run ``app`` under uvicorn in a thread on a free loopback port until the block ends.

    Yields the base URL and the server; raises when it does not start within 20 s or does not
    stop within 30 s.
    """
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
    )
    server = ApiServer(config)
    thread = threading.Thread(target=server.run, name=f"{name}-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start within 20 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError("the API server did not stop within 30 s")


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, timeout: float = ..., *, every: float = ...
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T | None], what: str, timeout: float = ..., *, every: float = ...
) -> T: ...
async def eventually(
    check: Callable[[], Any], what: str, timeout: float = 10.0, *, every: float = 0.02
) -> Any:
    """Poll ``check`` (sync or async) every ``every`` s until it answers a truthy value, and
    return that value; fail with ``AssertionError`` naming ``what`` after ``timeout`` s.

    The one polling wait of the async tests (:func:`wait_until` is its sync twin)::

        rec = await eventually(lambda: queue.get(task_id), f"task {task_id} to exist")
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


def wait_until(
    check: Callable[[], T | None], what: str, timeout: float = 10.0, *, every: float = 0.02
) -> T:
    """Poll ``check`` every ``every`` s until it answers a truthy value, and return that value;
    fail with ``AssertionError`` naming ``what`` after ``timeout`` s (the sync twin of
    :func:`eventually`, for threads and sync clients)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


FAKE_CONTROL_PATH = "/_control"
"""The fake OpenRouter's control endpoint (modes, faults, latency, queued answers)."""


def _control_answer(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    return dict(response.json())


async def fake_control(root_url: str, **changes: Any) -> dict[str, Any]:
    """Change the fake OpenRouter at ``root_url`` at run time (``POST /_control``); returns
    its new view. E.g. ``await fake_control(fake.root_url, mode={"name": "outage",
    "seconds": 2})`` or ``enqueue=["429"]``."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        return _control_answer(await http.post(root_url + FAKE_CONTROL_PATH, json=changes))


def fake_control_sync(root_url: str, **changes: Any) -> dict[str, Any]:
    """:func:`fake_control` for sync code (the e2e suites' upstream process)."""
    return _control_answer(httpx.post(root_url + FAKE_CONTROL_PATH, json=changes, timeout=5.0))


async def redis_now(redis: Redis) -> float:
    """Redis' clock (``TIME``, epoch seconds): the one clock of the breaker, the rate limiter
    and every task timestamp."""
    seconds, micros = await redis.time()
    return float(seconds) + float(micros) / 1e6


async def until_redis_time(redis: Redis, moment: float, what: str, timeout: float = 10.0) -> None:
    """Wait until Redis' clock has passed ``moment`` (epoch seconds): a wait on the clock the
    code under test reads, not on this process's."""

    async def passed() -> bool:
        return await redis_now(redis) > moment

    await eventually(passed, what, timeout)


async def wait_state(
    queue: TaskQueue, task_id: str, states: set[str], timeout: float = 10.0
) -> TaskRecord:
    """Poll the store until the task is in one of ``states``; returns its record."""

    async def check() -> TaskRecord | None:
        rec = await queue.get(task_id)
        return rec if rec is not None and rec.state in states else None

    return await eventually(check, f"task {task_id} to reach {sorted(states)}", timeout)


def with_parts(ctx: TaskContext, store: dict[str, Any]) -> TaskContext:
    """Give ``ctx`` an in-memory parts store (values go through JSON, as in Redis)."""

    async def load() -> dict[str, Any]:
        return dict(store)

    async def save(name: str, value: Any) -> None:
        store[name] = json.loads(json.dumps(value))

    ctx._load_parts = load
    ctx._save_part = save
    return ctx
