"""Fixtures for the API integration tests: a live API (real uvicorn, real Redis) and the store.

``live_api(**settings_overrides)`` starts a server (see :func:`api_helpers.serve`) and stops it
when the test ends. ``store(api)`` gives a :class:`TaskQueue` on the same keys, for driving tasks
through states the API cannot reach on its own (claim, complete, fail) without a worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from api_helpers import TOKEN, LiveApi, serve
from redis.asyncio import Redis

from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue


@pytest.fixture
def live_api(redis_url: str) -> Iterator[Callable[..., LiveApi]]:
    """Factory: ``live_api(**settings_overrides)`` starts a server; all stop after the test."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> LiveApi:
            return stack.enter_context(serve(redis_url, **overrides))

        yield start


@pytest.fixture
def api(live_api: Callable[..., LiveApi]) -> LiveApi:
    """A server with default settings and no token."""
    return live_api()


@pytest.fixture
def secured(live_api: Callable[..., LiveApi]) -> LiveApi:
    """A server that requires :data:`TOKEN`."""
    return live_api(api_token=TOKEN)


@pytest.fixture
async def client(api: LiveApi) -> AsyncIterator[httpx.AsyncClient]:
    """An async client on :func:`api`."""
    async with api.client() as c:
        yield c


@pytest.fixture
async def store() -> AsyncIterator[Callable[[LiveApi], Awaitable[TaskQueue]]]:
    """Factory: ``await store(api)`` -> a loaded TaskQueue on that server's keys."""
    clients: list[Redis] = []

    async def make(api: LiveApi) -> TaskQueue:
        assert api.settings.redis_url
        client = Redis.from_url(api.settings.redis_url, decode_responses=False)
        clients.append(client)
        queue = TaskQueue(client, Keys(api.settings.key_prefix), api.settings)
        await queue.load()
        return queue

    yield make
    for c in clients:
        await c.aclose()
