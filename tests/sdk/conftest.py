"""Fixtures of the SDK suites: a live server (real app, in-process workers, real Redis) shared by
the session, a token-protected one, and ``api``: each test runs once per client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sdk_support import TOKEN, Api, LiveServer, run_server

from taskflow_sdk import AsyncClient, Client


@pytest.fixture(scope="session")
def server(redis_url: str) -> Iterator[LiveServer]:
    """API + one in-process worker, no token, shared by the session (tests use their own tasks)."""
    with run_server(redis_url) as live:
        yield live


@pytest.fixture(scope="session")
def secured_server(redis_url: str) -> Iterator[LiveServer]:
    """API without workers that requires :data:`TOKEN`."""
    with run_server(redis_url, workers=0, api_token=TOKEN) as live:
        yield live


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[Api]:
    """The same test once with :class:`Client`, once with :class:`AsyncClient`."""
    client: Client | AsyncClient
    client = Client(server.url) if request.param == "sync" else AsyncClient(server.url)
    adapter = Api(client)
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """``sync`` or ``async``, for tests that build their own clients."""
    return str(request.param)
