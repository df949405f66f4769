"""Reading a :class:`~taskflow_server.observability.metrics.Snapshot` from Redis for one scrape.

One pipeline (the totals hash, the state counters, the queue lengths, the event log's length,
the blob accounting), plus the worker heartbeats, the circuit breakers, the rate limiter and
``INFO memory``, read concurrently. Nothing here reads per-task data, so a scrape costs the same
on an empty store and on one with millions of tasks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from taskflow_server.config import Settings
from taskflow_server.observability.metrics import QUEUE_PRIORITIES, SETS, Snapshot
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.ratelimit import RateLimiter, upstream_burst
from taskflow_server.states import STATES
from taskflow_server.store.keys import LANES, Keys
from taskflow_server.store.queue import TaskQueue

log = logging.getLogger(__name__)

BREAKERS: tuple[str, ...] = ("openrouter",)
"""The circuit breakers whose state is exported (one per upstream)."""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def shared_limiter(redis: Redis, keys: Keys, settings: Settings) -> RateLimiter:
    """A reader of the ``openrouter`` limiter, configured as the workers' (``make_provider``)."""
    rate = settings.parsed_rate_limit
    return RateLimiter(
        redis,
        keys,
        "openrouter",
        rate,
        settings.max_in_flight,
        burst=upstream_burst(rate) if rate is not None else None,
    )


async def read_snapshot(
    redis: Redis,
    keys: Keys,
    settings: Settings,
    *,
    queue: TaskQueue | None = None,
    limiter: RateLimiter | None = None,
) -> Snapshot:
    """Read everything a scrape shows: one pipeline, plus the heartbeats, the breakers and the
    limiter, concurrently."""
    queue = queue or TaskQueue(redis, keys, settings)
    limiter = limiter or shared_limiter(redis, keys, settings)
    pending = [(lane, prio) for lane in LANES for prio in QUEUE_PRIORITIES]

    async def main() -> list[Any]:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.metrics)
            pipe.hgetall(keys.counts)
            for lane, prio in pending:
                pipe.llen(keys.queue(lane, prio))
            pipe.zcard(keys.scheduled)
            pipe.zcard(keys.dlq)
            pipe.zcard(keys.active)
            pipe.xlen(keys.events)
            pipe.hlen(keys.blob_sizes)
            pipe.get(keys.blob_bytes)
            return list(await pipe.execute())

    async def breakers() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in BREAKERS:
            out[name] = await CircuitBreaker(redis, keys, name, settings).status()
        return out

    replies, workers, breaker_status, limiter_status, memory = await asyncio.gather(
        main(), queue.workers(), breakers(), limiter.status(), _used_memory(redis)
    )
    snap = Snapshot(breakers=breaker_status, limiter=limiter_status, redis_memory=memory)
    for k, v in replies[0].items():
        snap.totals[_text(k)] = float(v)
    stored = {_text(k): int(v) for k, v in replies[1].items()}
    snap.states = {state: stored.get(state, 0) for state in STATES}
    at = 2
    for lane, prio in pending:
        snap.depths[(lane, prio)] = int(replies[at])
        at += 1
    for name in SETS:
        snap.sets[name] = int(replies[at])
        at += 1
    snap.events = int(replies[at])
    snap.blobs = int(replies[at + 1])
    snap.blob_bytes = max(0, int(replies[at + 2] or 0))
    snap.workers = [
        (int(w.get("concurrency", 0) or 0), int(w.get("active", 0) or 0)) for w in workers
    ]
    return snap


async def _used_memory(redis: Redis) -> int | None:
    """``used_memory``, or ``None`` where INFO is refused (the embedded store, some managed
    services)."""
    try:
        info = await redis.info("memory")
    except ResponseError as exc:
        log.debug("INFO memory refused (%s): no taskflow_redis_memory_bytes", exc)
        return None
    value = info.get("used_memory")
    return int(value) if isinstance(value, int | float) else None
