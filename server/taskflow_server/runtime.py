"""One process's moving parts: the Redis connection, the shared services and the workers.

``taskflow-server`` runs a ``Runtime`` inside the API's lifespan (API + in-process workers);
``taskflow-worker`` runs one on its own. Start-up waits for Redis with a clear log line per try
instead of crashing, so a server started before its Redis simply waits for it.

With ``database_url`` set the runtime also opens the task history (:attr:`Runtime.history`,
migrated at start) and, unless ``recorder`` is off, runs one history recorder. Neither holds the
queue up: while PostgreSQL does not answer they keep trying in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from taskflow_server.config import Settings
from taskflow_server.errors import ConfigError
from taskflow_server.services import Services, build_services
from taskflow_server.store.connection import make_redis, redact, wait_for_redis
from taskflow_server.store.queue import TaskQueue
from taskflow_server.tasks.registry import load_builtin_tasks
from taskflow_server.worker.worker import Worker

if TYPE_CHECKING:
    from taskflow_server.embedded import EmbeddedRedis
    from taskflow_server.history.db import HistoryDB
    from taskflow_server.history.recorder import Recorder

log = logging.getLogger(__name__)

EMBEDDED_MISSING = (
    "no Redis URL is set and the embedded store is not installed ({module} is missing): "
    "pip install 'asynctaskflow[embedded]', or point TASKFLOW_REDIS_URL (--redis-url) at a Redis"
)


def new_embedded_store() -> EmbeddedRedis:
    """An embedded store, not started; :class:`ConfigError` saying what to install without it."""
    try:
        from taskflow_server.embedded import EmbeddedRedis
    except ImportError as exc:
        raise ConfigError(EMBEDDED_MISSING.format(module=exc.name)) from None
    return EmbeddedRedis()


def _report_history_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("history: the recorder stopped on an error", exc_info=task.exception())


class Runtime:
    """Owns Redis (embedded or remote), services, the task queue and ``settings.workers`` workers.

    Args:
        settings: the process settings; ``redis_url=None`` starts the embedded store.
        workers: how many in-process workers to run (default ``settings.workers``).
    """

    def __init__(self, settings: Settings, *, workers: int | None = None) -> None:
        self.settings = settings
        self.n_workers = settings.workers if workers is None else workers
        self.embedded: EmbeddedRedis | None = None
        self.redis: Redis | None = None
        self.services: Services | None = None
        self.queue: TaskQueue | None = None
        self.workers: list[Worker] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self.history: HistoryDB | None = None
        """The history database when ``database_url`` is set (the API reads it too)."""
        self.history_ready = asyncio.Event()
        """Set once the history database answered and its schema is up to date."""
        self.recorder: Recorder | None = None
        self._history_stop = asyncio.Event()
        self._history_task: asyncio.Task[None] | None = None

    @property
    def redis_url(self) -> str:
        """The URL of the store in use (the embedded one once started)."""
        if self.embedded is not None:
            return self.embedded.url
        if self.settings.redis_url is None:
            raise RuntimeError("runtime not started")
        return self.settings.redis_url

    async def start(self, *, wait_timeout: float | None = None) -> None:
        """Connect (or start the embedded store), load scripts and start the workers."""
        load_builtin_tasks()
        if self.settings.redis_url is None:
            self.embedded = new_embedded_store()
            self.embedded.start()
        log.info("using redis at %s", redact(self.redis_url))
        if self.settings.offline:
            log.info(
                "no OPENROUTER_API_KEY: the offline provider (extractive summaries) does LLM work"
            )
        else:
            log.info(
                "LLM provider: OpenRouter at %s, model %s",
                self.settings.openrouter_base_url,
                self.settings.openrouter_model,
            )
        self.redis = make_redis(self.redis_url, max_connections=self.settings.redis_max_connections)
        await wait_for_redis(self.redis, self.redis_url, timeout=wait_timeout)
        self.services = build_services(self.settings, self.redis)
        self.queue = TaskQueue(self.redis, self.services.keys, self.settings)
        await self.queue.load()
        for _ in range(self.n_workers):
            worker = Worker(self.settings, self.redis, services=self.services)
            self.workers.append(worker)
            self._worker_tasks.append(asyncio.create_task(worker.run(), name=f"worker:{worker.id}"))
        if self.settings.database_url:
            self._start_history(self.settings.database_url)

    def _start_history(self, url: str) -> None:
        """Open the history database and start the recorder, both in the background."""
        from taskflow_server.history.db import HistoryDB, HistoryUnavailable

        assert self.redis is not None and self.services is not None
        try:
            self.history = HistoryDB(url)
        except HistoryUnavailable as exc:
            log.error("history: off (%s)", exc)
            return
        from taskflow_server.history.recorder import Recorder

        if self.settings.recorder:
            consumer = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
            self.recorder = Recorder(
                self.redis, self.services.keys, self.history, self.settings, consumer=consumer
            )
        self._history_task = asyncio.create_task(self._run_history(), name="history")
        self._history_task.add_done_callback(_report_history_end)

    async def _run_history(self) -> None:
        """Migrate once the database answers (retrying, one error line per outage), then record."""
        from psycopg import Error as PgError

        assert self.history is not None
        await self.history.open(wait=False)
        logged = False
        while not self._history_stop.is_set():
            try:
                applied = await self.history.migrate(timeout=5.0)
            except PgError as exc:
                if not logged:
                    log.error(
                        "history: PostgreSQL at %s does not answer or refused the schema (%s: "
                        "%s); the queue works on without it, retrying in the background",
                        redact(self.history.url),
                        type(exc).__name__,
                        (str(exc).strip().splitlines() or [""])[0],
                    )
                    logged = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._history_stop.wait(), timeout=2.0)
                continue
            log.info(
                "history: recording to %s (schema version %d%s)",
                redact(self.history.url),
                await self.history.version(),
                f", applied {applied}" if applied else "",
            )
            self.history_ready.set()
            break
        if self.recorder is not None and not self._history_stop.is_set():
            await self.recorder.run(self._history_stop)

    def request_stop(self) -> None:
        """Ask every worker and the recorder to drain and stop."""
        for worker in self.workers:
            worker.request_stop()
        self._history_stop.set()
        if self._history_task is not None and not self.history_ready.is_set():
            self._history_task.cancel()  # still waiting for PostgreSQL: nothing to drain

    async def wait(self) -> None:
        """Wait for the workers and the recorder to finish (after :meth:`request_stop`)."""
        tasks = [*self._worker_tasks]
        if self._history_task is not None:
            tasks.append(self._history_task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop_cpu_pool(self) -> None:
        """Stop this runtime's PDF reader processes now (idempotent; none if never started)."""
        if self.services is not None:
            self.services.stop_cpu_pool()

    async def stop(self) -> None:
        """Drain the workers, then close Redis and the embedded store."""
        self.request_stop()
        await self.wait()
        if self.services is not None:
            # The runtime built the services and lent them to its workers: it closes them (the
            # PDF reader pool among them), whether or not workers ran.
            await self.services.aclose()
        if self.history is not None:
            with contextlib.suppress(Exception):
                await self.history.close()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        if self.embedded is not None:
            self.embedded.stop()
