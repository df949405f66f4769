"""The FastAPI application: :func:`create_app` and the lifespan that owns Redis and live streams.

The lifespan opens the Redis client (unless one is passed in), registers the Lua scripts, starts
the event hub, runs the start-up hooks, enters ``extra_lifespan`` (the CLI uses it to run
in-process workers), and on the way out undoes all of it in reverse order.

Routes are registered without a trailing slash; :class:`TrailingSlashMiddleware` serves the
slashed form of every path too, without a redirect (the v1 dashboard calls ``/api/v1/workers/``
and ``/api/v1/tasks/summaries/`` through proxies, where a 307 would point the browser elsewhere).

Serve it with :class:`ApiServer` (a ``uvicorn.Server``): on shutdown it ends the open event
streams first, so Ctrl-C does not wait for browsers to hang up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from taskflow_server import __version__
from taskflow_server.api.auth import require_stream_token, require_token
from taskflow_server.api.deps import ApiContext
from taskflow_server.api.errors import install_error_handlers
from taskflow_server.api.hub import EventHub, StatsCache
from taskflow_server.api.limits import MULTIPART_OVERHEAD, BodyLimitMiddleware
from taskflow_server.api.routers import (
    blobs,
    events,
    health,
    history,
    metrics,
    openrouter,
    queues,
    tasks,
    workers,
)
from taskflow_server.api.schemas import ErrorResponse, ValidationErrorResponse
from taskflow_server.api.security import (
    BrowserGuardMiddleware,
    allowed_host_patterns,
    warn_unsafe,
)
from taskflow_server.config import Settings, get_settings
from taskflow_server.history.queries import HistoryQueries
from taskflow_server.logs import install_redaction
from taskflow_server.observability import tracing
from taskflow_server.services import build_services
from taskflow_server.store.events import EventLog
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.tasks.registry import load_builtin_tasks, load_task_modules

log = logging.getLogger(__name__)

Hook = Callable[[ApiContext], Awaitable[None]]
"""A start-up or shut-down hook: receives the app's context."""

ExtraLifespan = Callable[[FastAPI, ApiContext], AbstractAsyncContextManager[None]]
"""An async context manager factory entered after start-up and exited before shut-down."""

OPENAPI_TAGS: list[dict[str, Any]] = [
    {"name": "health", "description": "Liveness, readiness and component health (no auth)."},
    {"name": "tasks", "description": "Submit, inspect, retry, cancel and delete tasks."},
    {"name": "queues", "description": "Queue depths, state counts and queue contents."},
    {"name": "workers", "description": "Worker heartbeats and the shared circuit breaker."},
    {"name": "openrouter", "description": "Upstream key status and daily call metrics."},
    {"name": "events", "description": "Live event streams (SSE) and the stats WebSocket."},
    {
        "name": "history",
        "description": "The PostgreSQL task history (TASKFLOW_DATABASE_URL): list and stats.",
    },
]


CORS_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods an allowlisted origin may use (``TASKFLOW_CORS_ORIGINS``)."""

REDIS_MAX_CONNECTIONS = 256
"""Connections the app's own Redis pool may open."""

REDIS_POOL_TIMEOUT = 5.0
"""Seconds a request waits for a free Redis connection before it fails (503)."""

API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body could not be parsed."},
    422: {"model": ValidationErrorResponse, "description": "Invalid input."},
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    403: {
        "model": ErrorResponse,
        "description": "A Host not allowed, or a state change from a foreign Origin.",
    },
    413: {"model": ErrorResponse, "description": "The request body is over the limit."},
    503: {"model": ErrorResponse, "description": "The task store (Redis) did not answer."},
}
"""Errors any ``/api`` route may answer."""


class TrailingSlashMiddleware:
    """Serve ``/path/`` as ``/path`` (no redirect) for HTTP and WebSocket requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strip one or more trailing slashes from the path (``/`` itself stays)."""
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                stripped = path.rstrip("/") or "/"
                scope = dict(scope)
                scope["path"] = stripped
                raw = scope.get("raw_path")
                if isinstance(raw, bytes):
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    redis: Redis | None = None,
    queue: TaskQueue | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    extra_lifespan: ExtraLifespan | None = None,
) -> FastAPI:
    """Build the API app.

    Args:
        settings: server settings; the process settings (environment) when ``None``.
        redis: a Redis client to use (``decode_responses=False``); the app does not close it.
            When ``None`` (and no ``queue``), the app opens one on ``settings.redis_url``.
        queue: a ready :class:`TaskQueue` to use (its client is used, and not closed).
        on_startup: hooks awaited in order once the context is built and the hub runs.
        on_shutdown: hooks awaited in order before the context is torn down.
        extra_lifespan: a factory ``(app, ctx) -> async context manager`` entered after the
            start-up hooks and exited first on shutdown: the place for in-process workers.
    """
    cfg = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            ctx = await _open_context(cfg, redis, queue, stack)
            app.state.taskflow = ctx
            stack.push_async_callback(_forget_context, app)
            for hook in on_startup:
                await hook(ctx)
            for hook in reversed(on_shutdown):
                stack.push_async_callback(hook, ctx)
            if extra_lifespan is not None:
                await stack.enter_async_context(extra_lifespan(app, ctx))
            stack.callback(ctx.stopping.set)
            log.info(
                "API ready (auth %s, store %s)",
                "on" if cfg.api_token else "off",
                "given" if redis is not None or queue is not None else "redis_url",
            )
            yield

    app = FastAPI(
        title="AsyncTaskFlow",
        version=__version__,
        summary="Batch LLM work over a Redis task queue: tasks, queues, workers, live events.",
        description=(
            "Path- and shape-compatible with the AsyncTaskFlow v1 API. Every path is served "
            "with and without a trailing slash. With TASKFLOW_API_TOKEN set, /api and /ws need "
            "`Authorization: Bearer <token>` (event streams also take `?token=`; the WebSocket "
            "also takes the subprotocol pair `bearer, <token>`). Requests under a Host not in "
            "TASKFLOW_ALLOWED_HOSTS, and state-changing requests from an Origin that is neither "
            "the server's own nor in TASKFLOW_CORS_ORIGINS, are refused with 403."
        ),
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=cfg.max_body_bytes,
        overrides={tasks.UPLOAD_PATH: cfg.max_upload_bytes + MULTIPART_OVERHEAD},
    )
    app.add_middleware(TrailingSlashMiddleware)
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=["*"] if "*" in cfg.cors_origins else cfg.cors_origins,
            allow_methods=sorted(CORS_METHODS),
            allow_headers=["*"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    # Outermost: a request under a foreign Host or a cross-origin state change goes no further.
    app.add_middleware(
        BrowserGuardMiddleware,
        allowed_hosts=allowed_host_patterns(cfg),
        cors_origins=cfg.cors_origins,
    )
    warn_unsafe(cfg)
    install_redaction()
    tracing.instrument_app(app)  # server spans, when OTEL_* turned tracing on

    auth: dict[str, Any] = {"dependencies": [Depends(require_token)], "responses": API_ERRORS}
    stream_auth: dict[str, Any] = {
        "dependencies": [Depends(require_stream_token)],
        "responses": API_ERRORS,
    }
    app.include_router(health.router)
    app.include_router(tasks.router, **auth)
    app.include_router(tasks.stream_router, **stream_auth)
    app.include_router(queues.router, **auth)
    app.include_router(queues.stream_router, **stream_auth)
    app.include_router(workers.router, **auth)
    app.include_router(blobs.router, **auth)
    app.include_router(openrouter.router, **auth)
    app.include_router(metrics.router, **auth)  # /metrics: guarded like /api
    app.include_router(history.router, **auth)
    app.include_router(events.stream_router, **stream_auth)
    app.include_router(events.ws_router)  # checks the token itself during the handshake
    return app


async def _open_context(
    cfg: Settings, redis: Redis | None, queue: TaskQueue | None, stack: AsyncExitStack
) -> ApiContext:
    load_builtin_tasks()
    load_task_modules(cfg.task_modules)  # user task types validate at submit like built-in ones
    if queue is not None:
        client = queue.redis
    elif redis is not None:
        client = redis
    else:
        if not cfg.redis_url:
            raise RuntimeError(
                "no Redis to use: set TASKFLOW_REDIS_URL, or pass redis= / queue= to "
                "create_app (taskflow-server starts the embedded store and passes its URL)"
            )
        # A blocking pool: under a burst, requests wait for a connection (bounded) instead of
        # failing with "too many connections".
        pool = BlockingConnectionPool.from_url(
            cfg.redis_url,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_POOL_TIMEOUT,
            decode_responses=False,
        )
        client = Redis(connection_pool=pool)
        stack.push_async_callback(client.aclose)
        stack.push_async_callback(pool.disconnect)
    keys = queue.keys if queue is not None else Keys(cfg.key_prefix)
    store = queue if queue is not None else TaskQueue(client, keys, cfg)
    try:
        await store.load()
    except (RedisError, OSError) as exc:
        # Scripts are registered lazily (EVALSHA, reload on NOSCRIPT): start anyway and let
        # /ready report 503 until Redis answers.
        log.warning("Redis does not answer yet (%s); /ready reports 503 until it does", exc)
    services = build_services(cfg, client)
    stack.push_async_callback(services.aclose)
    events = EventLog(client, keys)
    hub = EventHub(events)
    ctx = ApiContext(
        settings=cfg,
        redis=client,
        keys=keys,
        queue=store,
        events=events,
        services=services,
        hub=hub,
        stats=StatsCache(store),
    )
    hub.start()
    stack.push_async_callback(hub.close)
    if cfg.database_url:
        ctx.history = await _open_history(cfg.database_url, stack)
    return ctx


async def _open_history(url: str, stack: AsyncExitStack) -> HistoryQueries:
    """The history reads on a pool of their own, opened without waiting: the API starts while
    PostgreSQL is down, and the history routes answer 503 until it is back."""
    from taskflow_server.history.db import HistoryDB

    db = HistoryDB(url)
    await db.open(wait=False)
    stack.push_async_callback(db.close)
    log.info("history on: the history routes read PostgreSQL (TASKFLOW_DATABASE_URL)")
    return HistoryQueries(db)


async def _forget_context(app: FastAPI) -> None:
    app.state.taskflow = None


async def begin_shutdown(app: FastAPI) -> None:
    """End the app's live streams now (before the server waits for connections to close)."""
    ctx: ApiContext | None = getattr(app.state, "taskflow", None)
    if ctx is not None:
        ctx.stopping.set()
        await ctx.hub.close()


class ApiServer(uvicorn.Server):
    """A ``uvicorn.Server`` that ends open event streams before waiting for connections.

    Plain uvicorn waits for every response to finish before it runs the lifespan shutdown, and
    an event stream never finishes on its own; this server closes them first.
    """

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        """Close live streams, then shut down as uvicorn does."""
        app = self.config.app
        if isinstance(app, FastAPI):
            await begin_shutdown(app)
        await super().shutdown(sockets)
