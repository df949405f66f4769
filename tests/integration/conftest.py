"""Fixtures for store, worker and upstream tests on a real Redis and a real fake OpenRouter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from support import make_settings
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.testing.openrouter import FakeOpenRouterThread


@pytest.fixture
async def queue(redis: Redis) -> TaskQueue:
    """A loaded TaskQueue on the flushed test database."""
    q = TaskQueue(redis, Keys("tftest"), make_settings())
    await q.load()
    return q


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenRouterThread]:
    """One fake OpenRouter (real HTTP on a free loopback port) per test module; a module's
    ``fake`` fixture gives each test a fresh state with :meth:`FakeOpenRouterThread.reset`."""
    with FakeOpenRouterThread() as server:
        yield server
