"""Fixtures for store and worker tests on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from support import make_settings
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue


@pytest.fixture
async def queue(redis: Redis) -> TaskQueue:
    """A loaded TaskQueue on the flushed test database."""
    q = TaskQueue(redis, Keys("tftest"), make_settings())
    await q.load()
    return q
