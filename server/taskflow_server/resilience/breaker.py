"""A circuit breaker per upstream, shared by every worker through one Redis hash.

States::

    CLOSED --N consecutive failures, or failure rate >= R over a window--> OPEN
    OPEN --timeout (doubles on each re-open, capped)--> HALF_OPEN
    HALF_OPEN --the one probe succeeds (or the upstream answers at all)--> CLOSED
    HALF_OPEN --the probe fails--> OPEN (longer timeout)

Only ``unavailable`` and ``timeout`` failures count; every other class is an answer from a live
upstream and is neutral (a half-open probe that gets one closes).

The breaker also carries **holds** (see ``resilience/errors.py``): a condition that only time or
money fixes (spent credits, a spent key limit, our own budget, a long cool-down) opens it with
the hold's reason, for a time (then one probe tries again) or until :meth:`~CircuitBreaker.lift`
or :meth:`~CircuitBreaker.reset`. ``record_failure`` of a hold class places its hold for
``hold_probe_seconds``. Because a hold is an open breaker, everything that already stops for an
open breaker (claims, the status routes, the panel's lamp) stops for a hold, with its reason.

Workers ask :meth:`CircuitBreaker.allowance` before claiming tasks that need the upstream:
``None`` = claim freely, ``0`` = claim nothing, ``1`` = this caller holds the single half-open
probe and claims one task. While OPEN no task is claimed, so no retry is burned. A manual
:meth:`~CircuitBreaker.open` holds the breaker open until :meth:`~CircuitBreaker.reset` (or for
``seconds``); both reach every worker at once because the state lives in Redis.

Every transition is one Lua script (``breaker.lua``) on the hash ``Keys.breaker(name)``, with the
clock taken from Redis ``TIME``; a change of state also appends a ``breaker_state_changed`` event
(``state``, ``old``, ``breaker``, ``reason``) to the event log, so SSE clients and the control
panel see it without polling, and counts it in ``Keys.metrics`` (the Prometheus counter
``taskflow_breaker_transitions_total``).
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from taskflow_server.config import Settings, get_settings
from taskflow_server.resilience.errors import ErrorClass, counts_for_breaker, hold_reason
from taskflow_server.store.keys import Keys

log = logging.getLogger(__name__)

_PUBLIC_STATE = {"closed": "closed", "open": "open", "half_open": "half-open"}


@cache
def _script_text() -> str:
    return Path(__file__).with_name("breaker.lua").read_text(encoding="utf-8")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return int(float(_text(value) or 0))
    except ValueError:
        return 0


class CircuitBreaker:
    """The shared circuit breaker of upstream ``name``.

    Args:
        redis: the shared Redis client.
        keys: the key builder (the state lives in ``keys.breaker(name)``).
        name: the upstream's name.
        settings: thresholds and timeouts (``breaker_*``); the process settings when ``None``.
        probe_seconds: how long the half-open probe may run before another caller may take a
            new one (a worker that died mid-probe must not keep the breaker half-open forever);
            defaults to the upstream timeout plus 30 s.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        name: str = "openrouter",
        settings: Settings | None = None,
        *,
        probe_seconds: float | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.settings = settings or get_settings()
        self.key = keys.breaker(name)
        self.probe_seconds = (
            probe_seconds if probe_seconds is not None else self.settings.openrouter_timeout + 30.0
        )
        self._script = redis.register_script(_script_text())

    async def _run(self, op: str, arg1: str = "", arg2: str = "") -> tuple[int, str]:
        s = self.settings
        reply = await self._script(
            keys=[self.key, self.keys.events, self.keys.metrics],
            args=[
                op,
                s.breaker_failure_threshold,
                s.breaker_failure_rate,
                int(s.breaker_window_seconds * 1000),
                s.breaker_min_calls,
                int(s.breaker_open_seconds * 1000),
                int(s.breaker_max_open_seconds * 1000),
                int(self.probe_seconds * 1000),
                arg1,
                arg2,
                self.name,
                s.events_maxlen,
            ],
        )
        return int(reply[0]), _PUBLIC_STATE.get(_text(reply[1]), _text(reply[1]))

    async def allowance(self) -> int | None:
        """How many tasks of this upstream the caller may claim now.

        ``None``: closed, claim freely. ``0``: open (or a probe is running), claim nothing.
        ``1``: the caller just got THE half-open probe; claim one task, and call
        :meth:`release_probe` if it finds none to run.
        """
        code, _ = await self._run("allow")
        if code < 0:
            return None
        if code == 1:
            log.info("breaker %s half-open: probe granted", self.name)
        return code

    async def release_probe(self) -> None:
        """Give the half-open probe back unused (the caller had no task to probe with)."""
        await self._run("release")

    async def record_success(self) -> None:
        """Record a successful call; a successful half-open probe closes the breaker."""
        changed, _ = await self._run("success")
        if changed:
            log.info("breaker %s closed after a successful probe", self.name)

    async def record_failure(self, error_class: ErrorClass | str) -> None:
        """Record a failed call of class ``error_class``.

        ``unavailable``/``timeout`` count towards opening; a hold class (``credits``,
        ``key_limit``, ``budget``) places its hold for ``hold_probe_seconds``; other classes mean
        the upstream answered and are neutral.
        """
        cls = ErrorClass(error_class)
        reason = hold_reason(cls)
        if reason is not None:
            await self.hold(reason, self.settings.hold_probe_seconds)
            return
        mode = "count" if counts_for_breaker(cls) else "neutral"
        changed, state = await self._run("failure", cls.value, mode)
        if changed:
            log.warning("breaker %s is now %s (last error %s)", self.name, state, cls.value)

    async def hold(self, reason: str, seconds: float | None = None) -> None:
        """Stop every LLM claim for ``reason`` (a hold), for ``seconds`` or until lifted.

        When the time runs out the breaker turns half-open and one probe task tries again. The
        same hold placed again keeps the later end.
        """
        hold_ms = max(1, int(seconds * 1000)) if seconds is not None else 0
        changed, _ = await self._run("hold", reason, str(hold_ms))
        if changed:
            log.warning(
                "breaker %s: hold %s (%s)",
                self.name,
                reason,
                f"{seconds:.0f} s" if seconds is not None else "until lifted",
            )

    async def lift(self, reason: str = "") -> bool:
        """End the hold ``reason`` (any hold when empty) early; one probe task goes first.

        Returns True when a matching hold was in force.
        """
        changed, _ = await self._run("lift", reason)
        if changed:
            log.info("breaker %s: hold %s lifted", self.name, reason or "(any)")
        return bool(changed)

    async def is_open(self) -> bool:
        """True while the breaker is open and its timeout has not yet run out."""
        status = await self.status()
        return bool(status["state"] == "open")

    async def open(self, reason: str = "manual", seconds: float | None = None) -> None:
        """Open the breaker now, held until :meth:`reset` (or for ``seconds`` when given)."""
        hold_ms = max(1, int(seconds * 1000)) if seconds is not None else 0
        await self._run("open", reason, str(hold_ms))
        log.warning("breaker %s opened: %s", self.name, reason)

    async def reset(self) -> None:
        """Close the breaker and clear its counters."""
        await self._run("reset")
        log.info("breaker %s reset", self.name)

    async def status(self) -> dict[str, Any]:
        """A snapshot: state, counters, when it opened and when it turns half-open.

        Keys: ``name``, ``state`` ("closed" | "open" | "half-open"), ``failure_count``
        (consecutive counting failures), ``success_count``, ``opened_at`` and ``open_until``
        (epoch seconds or ``None``), ``seconds_to_half_open`` (``None`` unless open with a
        timeout), ``reason``, ``last_error_class``, ``opens`` (opens since the last close),
        ``hold`` (the hold's reason while open for one, else ``None``) and ``hold_until``
        (epoch seconds when that hold ends by itself, ``None`` while held until lifted).
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.hgetall(self.key)
            now_pair, raw = await pipe.execute()
        now_ms = int(now_pair[0]) * 1000 + int(now_pair[1]) // 1000
        fields = {_text(k): _text(v) for k, v in raw.items()}
        state = fields.get("state") or "closed"
        open_until = _int(fields.get("open_until"))
        if state == "open" and open_until and now_ms >= open_until:
            state = "half_open"
        opened_at = _int(fields.get("opened_at"))
        to_half_open: float | None = None
        if state == "open" and open_until:
            to_half_open = max(0.0, (open_until - now_ms) / 1000.0)
        hold = (fields.get("hold") or None) if state == "open" else None
        return {
            "name": self.name,
            "state": _PUBLIC_STATE.get(state, state),
            "failure_count": _int(fields.get("failures")),
            "success_count": _int(fields.get("successes")),
            "opened_at": opened_at / 1000.0 if opened_at and state != "closed" else None,
            "open_until": open_until / 1000.0 if open_until and state != "closed" else None,
            "seconds_to_half_open": to_half_open,
            "held": state == "open" and not open_until,
            "hold": hold,
            "hold_until": open_until / 1000.0 if hold and open_until else None,
            "reason": fields.get("reason") or None,
            "last_error_class": fields.get("last_error_class") or None,
            "opens": _int(fields.get("opens")),
        }


async def open_breaker(
    redis: Redis,
    keys: Keys,
    name: str = "openrouter",
    *,
    reason: str = "manual",
    seconds: float | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Open upstream ``name``'s breaker from anywhere that reaches Redis; returns its status."""
    breaker = CircuitBreaker(redis, keys, name, settings)
    await breaker.open(reason, seconds)
    return await breaker.status()


async def reset_breaker(
    redis: Redis, keys: Keys, name: str = "openrouter", *, settings: Settings | None = None
) -> dict[str, Any]:
    """Close upstream ``name``'s breaker from anywhere that reaches Redis; returns its status."""
    breaker = CircuitBreaker(redis, keys, name, settings)
    await breaker.reset()
    return await breaker.status()


async def breaker_status(
    redis: Redis, keys: Keys, name: str = "openrouter", *, settings: Settings | None = None
) -> dict[str, Any]:
    """The status of upstream ``name``'s breaker, read from Redis alone."""
    return await CircuitBreaker(redis, keys, name, settings).status()
