"""The shared upstream rate limiter: a token bucket, an in-flight semaphore and a 429 cool-down.

Every worker on every machine shares three things in Redis (keys ``Keys.ratelimit(name, ...)``):

- a **token bucket** (``bucket``): ``rate.requests`` tokens, refilled continuously at
  ``rate.requests`` per ``rate.interval_s``. A caller takes one token per request. When none is
  left the script answers how many *milliseconds* until one is (integers only, so sub-second
  waits survive Redis' reply conversion). A token due within the reserve horizon is reserved at
  once and the caller sleeps until it is due, so waiting callers do not stampede the script.
- an **in-flight semaphore with leases** (``inflight``, a zset of lease id -> expiry): at most
  ``max_in_flight`` upstream requests at a time across all workers. A live request extends its
  lease; a crashed worker's slots come back when their leases expire.
- a **cool-down** (``cooldown``): set from a 429's ``Retry-After``; nobody calls the upstream until
  it passes. A 402 in-flight-budget answer lowers the in-flight limit for a while (``cap``).

The acquire script also reads the upstream's circuit breaker (``Keys.breaker(name)``): while it
is open, for an outage or a hold, nothing is granted and no token is taken, and the caller gets
:class:`~taskflow_server.resilience.errors.NotSentError` at once (its task goes back to the queue);
while it is half-open, one request at a time goes, so the first one is the probe and a lifted
hold does not release every call that was waiting (measured before: 4 calls per lift and ~100
tokens spent per 10 s hold, benchmarks/RESULTS.md).

No caller waits longer than ``max_wait`` seconds in all (``upstream_max_wait``): past that, or
when a cool-down already runs beyond it, :meth:`RateLimiter.acquire` raises
:class:`~taskflow_server.resilience.errors.NotSentError` and the worker hands the task back to its
queue without spending a retry (long cool-downs are held outside the worker, see
``breaker.py``).

All decisions are Lua scripts (``ratelimit_acquire.lua``, ``ratelimit_control.lua``) with the
clock from Redis ``TIME``. Use it as::

    async with limiter.slot():
        response = await http.post(...)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from taskflow_server.cancellation import cancel_and_wait
from taskflow_server.config import Rate
from taskflow_server.resilience.errors import ErrorClass, NotSentError, hold_class
from taskflow_server.store.keys import Keys

log = logging.getLogger(__name__)


SEND_SKEW_SECONDS = 1.0
"""How long after its token falls due a request may reach the upstream (see
:func:`upstream_burst`): our scheduling, a cold connection, the upstream's own queueing. With
four worker processes on a loaded 2-core machine the first burst reached the fake upstream 0.35
to 0.95 s after the tasks were submitted (benchmarks/RESULTS.md)."""


def upstream_burst(rate: Rate, skew_seconds: float = SEND_SKEW_SECONDS) -> int:
    """The bucket capacity to use in front of an upstream that enforces ``rate`` with a bucket.

    Our bucket is charged when a token is granted, the upstream's when the request arrives, up
    to ``skew_seconds`` later. While the upstream's bucket is full (at the start, after a pause)
    the refill it would have had in between is lost to it but not to us, so with equal
    capacities it ends up to ``rate x skew`` tokens short and refuses requests we let through.
    A capacity ``1 + ceil(rate x skew)`` tokens lower keeps it ahead by that margin. Only the
    burst shrinks; the sustained rate stays ``rate`` (the bucket refills at that rate whatever
    its capacity).
    """
    headroom = 1 + math.ceil(rate.per_second * skew_seconds)
    return max(1, rate.requests - headroom)


@cache
def _script_text(name: str) -> str:
    return Path(__file__).with_name(name).read_text(encoding="utf-8")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return "" if value is None else str(value)


def _float(value: Any) -> float:
    try:
        return float(_text(value) or 0)
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Acquired:
    """One answer of the acquire script.

    Attributes:
        granted: a slot (and a token, when a rate applies) was taken under ``lease_id``.
        wait_ms: granted: sleep this long before sending; refused: ask again after this long.
        reason: ``ok``, ``cooldown``, ``slot`` (all in-flight slots taken), ``token``, or
            ``paused:<hold>`` (the breaker is open; ``<hold>`` is its hold's reason or empty).
        in_flight: requests in flight across all workers (after this grant).
        lease_id: the lease to release (meaningful when granted).
    """

    granted: bool
    wait_ms: int
    reason: str
    in_flight: int
    lease_id: str


class RateLimiter:
    """The rate limiter every worker shares for upstream ``name``.

    Args:
        redis: the shared Redis client.
        keys: the key builder.
        name: the upstream's name.
        rate: the request rate; ``None`` = no rate limit of our own unless :meth:`apply_rate`
            stored one (the in-flight limit still applies).
        max_in_flight: upstream requests in flight across all workers.
        lease_seconds: how long a slot stays taken without an extension (a live request
            extends it every third of this); a crashed worker's slot comes back after it.
        reserve_seconds: a token due within this horizon is reserved at once and the caller
            sleeps until it is due.
        burst: the bucket's capacity (default ``rate.requests``).
        max_wait: the longest one caller waits in all before :class:`NotSentError` is raised
            (``None``: no bound).
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        name: str = "openrouter",
        rate: Rate | None = None,
        max_in_flight: int = 64,
        *,
        lease_seconds: float = 60.0,
        reserve_seconds: float = 1.0,
        burst: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.redis = redis
        self.keys = keys
        self.name = name
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.lease_seconds = lease_seconds
        self.reserve_seconds = reserve_seconds
        self.burst = burst
        self.max_wait = max_wait
        self._bucket = keys.ratelimit(name, "bucket")
        self._inflight = keys.ratelimit(name, "inflight")
        self._cooldown = keys.ratelimit(name, "cooldown")
        self._cap = keys.ratelimit(name, "cap")
        self._config = keys.ratelimit(name, "config")
        self._breaker = keys.breaker(name)
        self._acquire = redis.register_script(_script_text("ratelimit_acquire.lua"))
        self._control = redis.register_script(_script_text("ratelimit_control.lua"))
        self._released = asyncio.Event()
        self._rng = random.Random()

    def _capacity_args(self) -> tuple[int, int]:
        if self.rate is None:
            return 0, 0
        capacity = self.burst if self.burst is not None else self.rate.requests
        # Keep the configured sustained rate whatever the burst: capacity per interval, the
        # interval rounded up so the refill is never faster than the rate.
        interval_ms = math.ceil(self.rate.interval_s * 1000 * capacity / self.rate.requests)
        return max(1, capacity), max(1, interval_ms)

    async def try_acquire(self, lease_id: str | None = None) -> Acquired:
        """One attempt to take a slot and a token (no waiting); see :class:`Acquired`."""
        lease_id = lease_id or uuid.uuid4().hex
        capacity, interval_ms = self._capacity_args()
        reply = await self._acquire(
            keys=[
                self._bucket,
                self._inflight,
                self._cooldown,
                self._cap,
                self._config,
                self._breaker,
            ],
            args=[
                capacity,
                interval_ms,
                self.max_in_flight,
                lease_id,
                int(self.lease_seconds * 1000),
                int(self.reserve_seconds * 1000),
            ],
        )
        return Acquired(
            granted=int(reply[0]) == 1,
            wait_ms=int(reply[1]),
            reason=_text(reply[2]),
            in_flight=int(reply[3]),
            lease_id=lease_id,
        )

    def _deadline(self) -> float | None:
        if self.max_wait is None:
            return None
        return asyncio.get_running_loop().time() + self.max_wait

    def _check_wait(self, deadline: float | None, seconds: float, reason: str) -> None:
        """Raise :class:`NotSentError` when waiting ``seconds`` more would pass ``deadline``."""
        if deadline is None:
            return
        if asyncio.get_running_loop().time() + seconds > deadline:
            raise NotSentError(
                ErrorClass.RATE_LIMITED,
                f"the upstream is not free within {self.max_wait:g} s ({reason}, "
                f"{seconds:.1f} s more); handed back to the queue without using a retry",
                retry_after=seconds,
            )

    async def acquire(self) -> Acquired:
        """Wait for the cool-down, an in-flight slot and a token; returns the granted lease.

        Raises :class:`NotSentError` when that would take longer than ``max_wait``. The caller must
        :meth:`release` the lease; :meth:`slot` does it for you.
        """
        lease_id = uuid.uuid4().hex
        slot_poll = 0.01
        deadline = self._deadline()
        while True:
            got = await self.try_acquire(lease_id)
            if got.granted:
                return got
            if got.reason.startswith("paused:"):
                hold = got.reason.partition(":")[2]
                raise NotSentError(
                    hold_class(hold) if hold else ErrorClass.UNAVAILABLE,
                    f"the {self.name} breaker is open ({hold or 'outage'}); nothing was sent",
                    retry_after=got.wait_ms / 1000.0 if got.wait_ms else None,
                )
            if got.reason == "slot":
                self._check_wait(deadline, slot_poll, "every in-flight slot is taken")
                # Woken at once by a release in this process; other processes' releases are
                # seen by polling with a growing, jittered interval.
                self._released.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), slot_poll)
                slot_poll = min(0.2, slot_poll * 1.5)
                continue
            pause = max(got.wait_ms, 1) / 1000.0 * (1.0 + self._rng.random() * 0.1)
            self._check_wait(
                deadline,
                pause,
                "a cool-down is running" if got.reason == "cooldown" else "waiting for a token",
            )
            await asyncio.sleep(pause)

    async def release(self, lease_id: str) -> None:
        """Give an in-flight slot back."""
        await self.redis.zrem(self._inflight, lease_id)
        self._released.set()

    async def extend(self, lease_id: str) -> bool:
        """Push a live lease's expiry ``lease_seconds`` ahead; False when it already expired."""
        reply = await self._control(
            keys=[self._inflight, self._cooldown, self._cap],
            args=["extend", int(self.lease_seconds * 1000), lease_id],
        )
        return int(reply) == 1

    async def _keep_alive(self, lease_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3.0)
            try:
                await self.extend(lease_id)
            except Exception:  # a Redis hiccup must not kill the request; the lease may lapse
                log.warning("could not extend rate-limit lease %s", lease_id, exc_info=True)

    async def cooldown_remaining(self) -> float:
        """Seconds left in the shared cool-down (0 when none)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.get(self._cooldown)
            now_pair, until = await pipe.execute()
        now_ms = int(now_pair[0]) * 1000 + int(now_pair[1]) // 1000
        return max(0.0, (_float(until) - now_ms) / 1000.0)

    async def _wait_cooldown(self) -> None:
        # A cool-down set while this caller slept for its token still applies to it. The value
        # lives in Redis and may be extended by any worker, so it is polled, not awaited.
        deadline = self._deadline()
        while (remaining := await self.cooldown_remaining()) > 0:
            pause = remaining * (1.0 + self._rng.random() * 0.1)
            self._check_wait(deadline, pause, "a cool-down is running")
            await asyncio.sleep(pause)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one in-flight slot and one token for the body; waits for both and the cool-down.

        The slot is released on exit (also on error or cancellation); while the body runs the
        lease is extended, so a long request keeps its slot and a crashed one frees it.
        """
        got = await self.acquire()
        keeper = asyncio.create_task(self._keep_alive(got.lease_id))
        try:
            if got.wait_ms > 0:
                await asyncio.sleep(got.wait_ms / 1000.0)
            await self._wait_cooldown()
            yield
        finally:
            await cancel_and_wait([keeper])
            await asyncio.shield(self.release(got.lease_id))

    async def set_cooldown(self, seconds: float) -> float:
        """Make every worker wait ``seconds`` before the next call (a longer one stays).

        Returns the cool-down now in force, in seconds.
        """
        ms = max(1, int(seconds * 1000))
        reply = await self._control(
            keys=[self._inflight, self._cooldown, self._cap], args=["cooldown", ms]
        )
        log.warning("rate limiter %s: cool-down %.1f s", self.name, int(reply) / 1000.0)
        return int(reply) / 1000.0

    async def clear_cooldown(self) -> bool:
        """End the shared cool-down now (an operator's reset); True when one was running."""
        reply = await self._control(
            keys=[self._inflight, self._cooldown, self._cap], args=["clear", 0]
        )
        if int(reply):
            log.info("rate limiter %s: cool-down cleared", self.name)
        return bool(int(reply))

    async def reduce_in_flight(self, seconds: float = 30.0) -> int:
        """Halve the in-flight limit (to what is in flight / 2, at least 1) for ``seconds``.

        Used when the upstream says the in-flight spending budget is exhausted. Returns the cap.
        """
        reply = await self._control(
            keys=[self._inflight, self._cooldown, self._cap],
            args=["cap", max(1, int(seconds * 1000)), self.max_in_flight],
        )
        log.warning("rate limiter %s: in-flight limit lowered to %s", self.name, reply)
        return int(reply)

    async def apply_rate(self, rate: Rate) -> None:
        """Share ``rate`` with every worker whose own rate is unset (from the key endpoint)."""
        await self.redis.hset(
            self._config,
            mapping={"capacity": rate.requests, "interval_ms": int(rate.interval_s * 1000)},
        )
        log.info("rate limiter %s: applied rate %s", self.name, rate)

    async def effective_rate(self) -> Rate | None:
        """The rate in force: the configured one, else the one applied at run time, else None."""
        if self.rate is not None:
            return self.rate
        raw = await self.redis.hgetall(self._config)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        capacity = int(_float(fields.get("capacity")))
        interval_ms = _float(fields.get("interval_ms"))
        if capacity > 0 and interval_ms > 0:
            return Rate(capacity, interval_ms / 1000.0)
        return None

    async def status(self) -> dict[str, Any]:
        """A snapshot for dashboards.

        Keys: ``rate`` (e.g. ``"230/10s"`` or ``None``), ``capacity``, ``tokens`` (now, after
        refill), ``in_flight``, ``max_in_flight`` (the cap in force), ``cooldown_remaining``
        (seconds), ``utilisation`` (share of the bucket in use, 0..1; in-flight share when no
        rate), ``in_flight_utilisation``, ``taken`` (tokens taken since the bucket was created).
        """
        rate = await self.effective_rate()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.hgetall(self._bucket)
            pipe.get(self._cooldown)
            pipe.get(self._cap)
            pipe.zrangebyscore(self._inflight, "-inf", "+inf", withscores=True)
            now_pair, bucket_raw, cooldown, cap, leases = await pipe.execute()
        now_ms = int(now_pair[0]) * 1000 + int(now_pair[1]) // 1000
        in_flight = sum(1 for _, expiry in leases if expiry > now_ms)
        bucket = {_text(k): _text(v) for k, v in bucket_raw.items()}
        cap_value = int(_float(cap))
        max_in_flight = min(self.max_in_flight, cap_value) if cap_value > 0 else self.max_in_flight
        tokens: float | None = None
        capacity: int | None = None
        if rate is not None:
            capacity = (
                self.burst if self.burst is not None and self.rate is not None else rate.requests
            )
            if "tokens" in bucket:
                elapsed = max(0, now_ms - _float(bucket.get("ts")))
                tokens = min(
                    float(capacity), _float(bucket["tokens"]) + elapsed * rate.per_second / 1000
                )
            else:
                tokens = float(capacity)
        in_flight_share = min(1.0, in_flight / max_in_flight)
        return {
            "name": self.name,
            "rate": str(rate) if rate else None,
            "capacity": capacity,
            "tokens": round(tokens, 3) if tokens is not None else None,
            "in_flight": in_flight,
            "max_in_flight": max_in_flight,
            "cooldown_remaining": max(0.0, (_float(cooldown) - now_ms) / 1000.0),
            "utilisation": (
                round(max(0.0, min(1.0, 1.0 - tokens / capacity)), 4)
                if tokens is not None and capacity
                else round(in_flight_share, 4)
            ),
            "in_flight_utilisation": round(in_flight_share, 4),
            "taken": int(_float(bucket.get("taken"))),
        }
