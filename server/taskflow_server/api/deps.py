"""What routers receive: the per-app context and its ``Annotated`` dependency alias.

The lifespan in :mod:`taskflow_server.api.app` builds one :class:`ApiContext` per app and keeps it
on ``app.state.taskflow``; routers ask for it with :data:`ContextDep`::

    @router.get("/x")
    async def x(ctx: ContextDep) -> ...:
        depths = await ctx.queue.depths()
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from taskflow_server.config import Settings
from taskflow_server.services import Services
from taskflow_server.store.blobs import BlobStore
from taskflow_server.store.events import EventLog
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue

if TYPE_CHECKING:
    from taskflow_server.api.hub import EventHub, ReplayGate, StatsCache
    from taskflow_server.history.queries import HistoryQueries


@dataclass
class ApiContext:
    """Everything the routes of one app share; built and closed by the app's lifespan.

    Attributes:
        settings: the server settings.
        redis: the shared Redis client (``decode_responses=False``).
        keys: the key builder.
        queue: the task store.
        events: the event log reader.
        services: shared services (blob store, lazily the LLM provider); ``extras`` is free for
            start-up hooks (the in-process workers, for instance).
        hub: the single event-log reader that fans events out to SSE and WebSocket clients.
        stats: a short-lived cache of queue depths and state counts shared by live streams.
        stopping: set when the server shuts down; live streams end when it is.
        replays: the cap on event streams replaying the log at once
            (``settings.replay_max_concurrent``).
        history: the PostgreSQL history reads; ``None`` when ``settings.database_url`` is unset
            (history off).
    """

    settings: Settings
    redis: Redis
    keys: Keys
    queue: TaskQueue
    events: EventLog
    services: Services
    hub: EventHub
    stats: StatsCache
    history: HistoryQueries | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    extras: dict[str, Any] = field(default_factory=dict)
    replays: ReplayGate = field(init=False)

    def __post_init__(self) -> None:
        from taskflow_server.api.hub import ReplayGate  # the hub module imports the store

        self.replays = ReplayGate(self.settings.replay_max_concurrent)

    @property
    def blobs(self) -> BlobStore:
        """The blob store (uploaded files by sha256)."""
        return self.services.blobs


def get_context(conn: HTTPConnection) -> ApiContext:
    """The app's :class:`ApiContext`; 503 when the app has not started (no lifespan ran)."""
    ctx: ApiContext | None = getattr(conn.app.state, "taskflow", None)
    if ctx is None:
        raise HTTPException(503, "the server is starting or stopping; try again in a moment")
    return ctx


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
# thread pool, a thread hop per request for what is an attribute read.


async def context(conn: HTTPConnection) -> ApiContext:
    """Dependency form of :func:`get_context`."""
    return get_context(conn)


ContextDep = Annotated[ApiContext, Depends(context)]
"""The whole per-app context."""
