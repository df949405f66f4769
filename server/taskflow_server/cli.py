"""Entry points: ``taskflow-server`` (API + workers) and ``taskflow-worker`` (workers only).

Flags mirror the settings and win over the environment::

    taskflow-server [--host H] [--port P] [--redis-url URL] [--workers N] [--concurrency N]
                    [--insecure] [--database-url URL] [--log-format text|json]
    taskflow-worker [--redis-url URL] [--concurrency N] [--workers N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from taskflow_server.config import Settings
from taskflow_server.logs import setup_logging
from taskflow_server.observability import tracing

log = logging.getLogger("taskflow_server")


def _settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if not where:  # a check across settings (e.g. lease_extend_every against lease_seconds)
            sys.exit(f"invalid settings: {first['msg'].removeprefix('Value error, ')}")
        sys.exit(f"invalid setting {where}: {first['msg']}")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="the shared Redis (default: TASKFLOW_REDIS_URL)")
    parser.add_argument("--concurrency", type=int, help="task slots per worker (default 100)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument("--log-json", action="store_true", default=None, help="JSON log lines")
    parser.add_argument(
        "--log-format", choices=("text", "json"), help="text or json lines (default text)"
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL for the task history, postgresql://... (default: TASKFLOW_DATABASE_URL;"
        " unset = no history)",
    )


def server_main(argv: list[str] | None = None) -> None:
    """``taskflow-server``: the API and in-process workers (embedded store without a Redis URL)."""
    parser = argparse.ArgumentParser(
        prog="taskflow-server",
        description="AsyncTaskFlow API and workers. Without a Redis URL it runs an embedded "
        "in-memory store; without OPENROUTER_API_KEY an offline summarizer.",
    )
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8000)")
    parser.add_argument("--workers", type=int, help="in-process workers; 0 = API only (default 1)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow listening beyond loopback without TASKFLOW_API_TOKEN",
    )
    _common(parser)
    args = parser.parse_args(argv)
    settings = _settings(vars(args))
    setup_logging(settings.log_level, settings.json_logs)
    tracing.configure(tracing.SERVER_SERVICE)
    from taskflow_server.errors import ConfigError
    from taskflow_server.serve import run_server

    try:
        run_server(settings)
    except ConfigError as exc:
        sys.exit(f"taskflow-server: {exc}")


async def _run_workers(settings: Settings, workers: int) -> None:
    from taskflow_server.cpu import shutdown_all_pools
    from taskflow_server.runtime import Runtime
    from taskflow_server.serve import stop_runtime

    runtime = Runtime(settings, workers=workers)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        log.info("received %s: draining (grace %.0f s)", sig.name, settings.grace_seconds)
        stopping.set()
        runtime.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        start = asyncio.create_task(runtime.start())
        stop_wait = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if start not in done:  # stopped while still waiting for Redis
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            return
        start.result()
        await runtime.wait()
        await stop_runtime(runtime, settings)
    finally:
        shutdown_all_pools()  # every exit path, an exception at start-up included


def worker_main(argv: list[str] | None = None) -> None:
    """``taskflow-worker``: workers only, joining the Redis every server and worker shares."""
    parser = argparse.ArgumentParser(
        prog="taskflow-worker",
        description="AsyncTaskFlow workers: scale out on any machine that reaches the Redis.",
    )
    parser.add_argument("--workers", type=int, default=1, help="workers in this process")
    _common(parser)
    args = parser.parse_args(argv)
    overrides = vars(args)
    workers = overrides.pop("workers")
    settings = _settings(overrides)
    setup_logging(settings.log_level, settings.json_logs)
    tracing.configure(tracing.WORKER_SERVICE)
    if not settings.redis_url:
        sys.exit(
            "taskflow-worker: no Redis to join. Pass --redis-url (or set TASKFLOW_REDIS_URL); "
            "taskflow-server prints the URL of its embedded store at start."
        )
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as r:
        r.run(_run_workers(settings, workers))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the ``server`` extra brings it), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
