"""Build and run the whole server: the API plus in-process workers, on Redis or the embedded store.

``taskflow-server`` calls :func:`run_server`; tests, the demo and notebooks use
:class:`BackgroundServer`, which runs the same thing on a thread of its own and gives back the
URL. A background server keeps its logs out of the caller's output: WARNING and above on stderr
by default, more with ``log_level=``, or into ``log_file=`` (see
:class:`~taskflow_server.logs.ServerLogs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from taskflow_server._net import free_port
from taskflow_server.api.app import ApiServer, create_app
from taskflow_server.api.connections import guarded_h11_protocol
from taskflow_server.api.deps import ApiContext
from taskflow_server.config import Settings
from taskflow_server.cpu import shutdown_all_pools
from taskflow_server.errors import ConfigError
from taskflow_server.logs import ServerLogs
from taskflow_server.runtime import Runtime, new_embedded_store

if TYPE_CHECKING:
    from taskflow_server.embedded import EmbeddedRedis

log = logging.getLogger(__name__)

STOP_MARGIN_SECONDS = 5.0
"""How long stopping may take beyond ``grace_seconds`` (handing tasks back, the last writes)."""


def check_bind_address(settings: Settings) -> None:
    """Refuse to listen beyond loopback without a token, unless ``insecure`` is set."""
    if settings.api_token or settings.insecure:
        return
    host = settings.host
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"refusing to listen on {host} without TASKFLOW_API_TOKEN: anyone who can reach it "
            "could submit and delete tasks. Set a token, bind 127.0.0.1, or pass --insecure."
        )


def prepare(settings: Settings) -> tuple[Settings, EmbeddedRedis | None]:
    """Start the embedded store when no Redis URL is set; returns settings pointing at it."""
    if settings.redis_url:
        return settings, None
    embedded = new_embedded_store()
    url = embedded.start()
    # The one place the password is written: the user needs this URL to add workers.
    log.info(
        "no TASKFLOW_REDIS_URL: embedded store at %s (in memory, password-protected). Other "
        "workers can join with: taskflow-worker --redis-url %s  (this URL holds the store's "
        "password, new at every start: treat it as a secret)",
        embedded.safe_url,
        url,
    )
    return settings.model_copy(update={"redis_url": url}), embedded


async def stop_runtime(runtime: Runtime, settings: Settings) -> None:
    """Stop ``runtime`` within ``grace_seconds + STOP_MARGIN_SECONDS``, then its CPU pool.

    Draining waits up to ``grace_seconds`` for running tasks, and handing the rest back gives up
    after a few seconds when Redis is gone (``Worker._write_failure``). Past the bound the drain
    is cancelled: the tasks' leases expire and the reaper requeues them, as after a crash. This
    runtime's CPU pool (PDF readers) is stopped whatever happened; other servers of the same
    process (tests run several) keep theirs.
    """
    bound = settings.grace_seconds + STOP_MARGIN_SECONDS
    try:
        await asyncio.wait_for(runtime.stop(), timeout=bound)
    except TimeoutError:
        log.warning(
            "stopping took longer than %.0f s (is Redis reachable?); leaving the rest to the "
            "reaper (unfinished tasks are requeued when their leases expire)",
            bound,
        )
    finally:
        runtime.stop_cpu_pool()


def build_app(settings: Settings) -> FastAPI:
    """The API app with ``settings.workers`` in-process workers started in its lifespan."""
    runtime = Runtime(settings)

    @contextlib.asynccontextmanager
    async def workers(app: FastAPI, ctx: ApiContext) -> AsyncIterator[None]:
        # Start in the background: while Redis is not there yet the runtime waits for it (a
        # log line per try) and the API already answers /live (200) and /ready (503).
        app.state.runtime = runtime
        starting = asyncio.create_task(runtime.start(), name="runtime-start")
        starting.add_done_callback(_report_start_failure)
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            await stop_runtime(runtime, settings)

    return create_app(settings, extra_lifespan=workers)


def _report_start_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the in-process workers could not start", exc_info=task.exception())


def run_server(settings: Settings) -> None:
    """Run the API and workers in the foreground until SIGINT/SIGTERM (graceful drain)."""
    check_bind_address(settings)
    embedded: EmbeddedRedis | None = None
    try:
        settings, embedded = prepare(settings)
        app = build_app(settings)
        log.info(
            "taskflow-server listening on http://%s:%d (workers=%d, concurrency=%d)",
            settings.host,
            settings.port,
            settings.workers,
            settings.concurrency,
        )
        ApiServer(_uvicorn_config(app, settings, settings.port)).run()
    finally:
        # Every exit path: a normal stop, SIGTERM/SIGINT (uvicorn drains, then returns), or
        # an exception at start-up. No PDF reader may outlive the server.
        shutdown_all_pools()
        if embedded is not None:
            embedded.stop()


def _uvicorn_config(app: FastAPI, settings: Settings, port: int) -> uvicorn.Config:
    """uvicorn settings shared by the foreground and background servers."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        ws="websockets-sansio",
        timeout_graceful_shutdown=int(settings.grace_seconds) + 5,
        # Time out half-sent request heads and cap open connections (api/connections.py says
        # why uvicorn's own limit_concurrency does not cover them).
        http=guarded_h11_protocol(settings.header_timeout, settings.max_connections),
    )


class BackgroundServer:
    """The full server on a background thread (for tests, notebooks and ``taskflow demo``).

    Usage::

        with BackgroundServer(Settings(port=0)) as srv:
            client = Client(srv.url)

    Its logs do not reach the root logger (a notebook cell, an application's log): by default
    only WARNING and above are printed, on stderr. ``log_level="INFO"`` (or ``"DEBUG"``) shows
    more; ``log_file="server.log"`` writes them to a file instead (from INFO unless
    ``log_level`` says otherwise). The loggers are put back as they were by :meth:`stop`.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        log_level: str | None = None,
        log_file: str | Path | None = None,
    ) -> None:
        self.logs = ServerLogs(log_level, log_file).install()
        """Where the server's logs go while it runs."""
        try:
            base = settings or Settings()
            port = base.port or free_port(base.host)
            self.settings, self._embedded = prepare(base.model_copy(update={"port": port}))
            self.url = f"http://{self.settings.host}:{port}"
            app = build_app(self.settings)
            self._server = ApiServer(_uvicorn_config(app, self.settings, port))
        except BaseException:
            self.logs.restore()
            raise
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start and wait until the server accepts requests."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name="taskflow-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the background server stopped during start-up (see the log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the background server did not start within {timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Drain the workers, stop the server and the embedded store."""
        self._server.should_exit = True
        try:
            if self._thread is not None:
                self._thread.join(timeout=self.settings.grace_seconds + 30)
            if self._embedded is not None:
                self._embedded.stop()
        finally:
            self.logs.restore()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_background_server(settings: Settings | None = None) -> BackgroundServer:
    """Start :class:`BackgroundServer` and return it (call ``.stop()`` when done)."""
    return BackgroundServer(settings).start()
