"""Redis connections that survive restarts: retrying clients and a patient start-up wait."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""Exceptions that mean "Redis is not answering right now" (retry later, do not crash)."""


def make_redis(url: str, *, max_connections: int = 64) -> Redis:
    """An async client that retries a command a few times on a dropped connection.

    The pool blocks (up to 20 s) when all ``max_connections`` are busy instead of failing, so a
    burst of concurrent task outcomes queues up rather than erroring.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=20,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return Redis(connection_pool=pool, decode_responses=False)


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("redis", url)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


async def wait_for_redis(redis: Redis, url: str, *, timeout: float | None = None) -> None:
    """Wait until Redis answers PING, logging a clear line on each failed try (bounded backoff).

    Raises ``TimeoutError`` when ``timeout`` seconds pass first (``None`` waits forever).
    """
    delay = 0.2
    deadline = None if timeout is None else time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            await redis.ping()
            if attempt > 1:
                log.info("redis is reachable again at %s", redact(url))
            return
        except REDIS_DOWN_ERRORS as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Redis at {redact(url)} did not answer: {exc}") from exc
            log.warning(
                "redis at %s is not reachable (%s); retrying in %.1f s (attempt %d)",
                redact(url),
                exc.__class__.__name__,
                delay,
                attempt,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
