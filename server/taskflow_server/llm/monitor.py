"""The OpenRouter monitor: service state (cached), and daily call metrics kept N days.

:meth:`OpenRouterMonitor.status` answers the AsyncTaskFlow v1 shape the old dashboard reads::

    {status, message, balance, usage_today, usage_month, last_check, error_details,
     consecutive_failures, circuit_breaker_open, cache_hit}

plus ``provider``, ``limit``, ``limit_remaining``, ``is_free_tier``, ``rate_limit``, ``credits``,
``breaker`` and ``limiter``. ``status`` is one of ``active``, ``api_key_missing``,
``api_key_invalid``, ``credits_exhausted``, ``rate_limited`` or ``error``. The key check
(``GET /key``, and ``GET /credits`` when the key may read it) is cached in Redis for
``monitor_cache_seconds``; the breaker, cool-down and failure counter are read live on every call,
so an open breaker or a running cool-down shows at once. A new key with zero usage is *active*:
only ``limit_remaining <= 0`` or an empty credit balance means exhausted.

:meth:`OpenRouterMonitor.record_call` is the client's metrics recorder. Metrics live in one hash
per UTC day (``Keys.openrouter("metrics:YYYY-MM-DD")``), expiring after
``metrics_retention_days``: calls, successes, failures (and per error class), tokens, cost, and
the seconds spent in each service state (``state_<status>``, credited when the state changes).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from taskflow_server.config import Rate, Settings
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.store.keys import Keys

if TYPE_CHECKING:
    from taskflow_server.llm.openrouter import OpenRouterClient

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = (
    "active",
    "api_key_missing",
    "api_key_invalid",
    "credits_exhausted",
    "rate_limited",
    "error",
)
"""Every value ``status`` can take."""

_STATUS_FOR_ERROR = {
    ErrorClass.AUTH: "api_key_invalid",
    ErrorClass.CREDITS: "credits_exhausted",
    ErrorClass.RATE_LIMITED: "rate_limited",
}
_MESSAGES = {
    "active": "OpenRouter is reachable and the key works.",
    "api_key_missing": (
        "No OpenRouter API key is set (OPENROUTER_API_KEY): tasks run on the offline "
        "extractive provider."
    ),
    "api_key_invalid": "OpenRouter rejected the API key (401).",
    "credits_exhausted": "The OpenRouter key or account has no credits left.",
    "rate_limited": "OpenRouter is rate limiting this key; workers wait for the cool-down.",
    "error": "The OpenRouter status check failed.",
}


@cache
def _script_text() -> str:
    return Path(__file__).with_name("monitor_state.lua").read_text(encoding="utf-8")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return "" if value is None else str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def rate_from_key(data: dict[str, Any]) -> Rate | None:
    """The ``rate_limit`` of a ``/key`` answer as a :class:`Rate`; ``None`` when unusable."""
    raw = data.get("rate_limit")
    if not isinstance(raw, dict):
        return None
    try:
        requests = int(raw.get("requests") or 0)
        if requests <= 0:
            return None
        return Rate.parse(f"{requests}/{raw.get('interval') or '1s'}")
    except (TypeError, ValueError):
        return None


class OpenRouterMonitor:
    """Service state and daily metrics of the OpenRouter upstream.

    Args:
        redis: the shared Redis client.
        keys: the key builder (``Keys.openrouter(...)``).
        settings: ``monitor_cache_seconds``, ``metrics_retention_days``, the key.
        client: the :class:`OpenRouterClient` (its breaker and limiter are read too); ``None``
            when no key is set (the status is then ``api_key_missing``).
    """

    def __init__(
        self, redis: Redis, keys: Keys, settings: Settings, client: OpenRouterClient | None
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.client = client
        self._cache_key = keys.openrouter("status")
        self._state_key = keys.openrouter("state")
        self._failures_key = keys.openrouter("consecutive_failures")
        self._note = redis.register_script(_script_text())

    def _metrics_key(self, day: str) -> str:
        return self.keys.openrouter(f"metrics:{day}")

    @property
    def _retention_seconds(self) -> int:
        return int(self.settings.metrics_retention_days * 86400)

    # ---------------------------------------------------------------- metrics

    async def record_call(self, ok: bool, error_class: str | None, usage: dict[str, Any]) -> None:
        """Count one upstream call in today's metrics (and the consecutive-failure counter)."""
        key = self._metrics_key(_day(datetime.now(UTC)))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "total_calls", 1)
            if ok:
                pipe.hincrby(key, "successful_calls", 1)
                pipe.set(self._failures_key, 0)
            else:
                pipe.hincrby(key, "failed_calls", 1)
                pipe.hincrby(key, f"fail:{error_class or 'unexpected'}", 1)
                pipe.incr(self._failures_key)
            for field in ("prompt_tokens", "completion_tokens"):
                count = int(_number(usage.get(field)) or 0)
                if count:
                    pipe.hincrby(key, field, count)
            cost = _number(usage.get("cost")) or 0.0
            if cost:
                pipe.hincrbyfloat(key, "cost", cost)
            pipe.expire(key, self._retention_seconds)
            await pipe.execute()

    async def metrics(self, days: int = 7) -> dict[str, Any]:
        """Daily metrics for the last ``days`` UTC days (today included), oldest first.

        ``{metrics: {"YYYY-MM-DD": {total_calls, successful_calls, failed_calls,
        failures_by_class, prompt_tokens, completion_tokens, cost, state_<status>...}}, days,
        generated_at}``; today's current state includes the time since it began.
        """
        days = max(1, min(int(days), self.settings.metrics_retention_days))
        now = datetime.now(UTC)
        dates = [_day(now - timedelta(days=offset)) for offset in range(days - 1, -1, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in dates:
                pipe.hgetall(self._metrics_key(day))
            pipe.hgetall(self._state_key)
            pipe.time()
            *raw_days, raw_state, now_pair = await pipe.execute()
        out: dict[str, dict[str, Any]] = {}
        for day, raw in zip(dates, raw_days, strict=True):
            fields = {_text(k): _text(v) for k, v in raw.items()}
            entry: dict[str, Any] = {
                "total_calls": int(fields.get("total_calls", 0)),
                "successful_calls": int(fields.get("successful_calls", 0)),
                "failed_calls": int(fields.get("failed_calls", 0)),
                "failures_by_class": {
                    name[5:]: int(value)
                    for name, value in fields.items()
                    if name.startswith("fail:")
                },
                "prompt_tokens": int(fields.get("prompt_tokens", 0)),
                "completion_tokens": int(fields.get("completion_tokens", 0)),
                "cost": float(fields.get("cost", 0.0)),
            }
            for name, value in fields.items():
                if name.startswith("state_"):
                    entry[name] = round(float(value), 3)
            out[day] = entry
        state = {_text(k): _text(v) for k, v in raw_state.items()}
        if state.get("status") and state.get("since_ms"):
            now_ms = int(now_pair[0]) * 1000 + int(now_pair[1]) // 1000
            ongoing = max(0.0, (now_ms - int(state["since_ms"])) / 1000.0)
            field = f"state_{state['status']}"
            today = out[dates[-1]]
            today[field] = round(float(today.get(field, 0.0)) + ongoing, 3)
        return {"metrics": out, "days": days, "generated_at": _iso(now)}

    # ---------------------------------------------------------------- status

    async def status(self, force_refresh: bool = False) -> dict[str, Any]:
        """The service status (v1 field names plus extras); cached unless ``force_refresh``."""
        now = datetime.now(UTC)
        if self.client is None or not self.settings.openrouter_api_key:
            result = self._base("api_key_missing", now)
            result["provider"] = "offline"
            result["cache_hit"] = False
            await self._note_state("api_key_missing", now)
            return await self._overlay_live(result)
        cached = None if force_refresh else await self.redis.get(self._cache_key)
        if cached is not None:
            result = json.loads(_text(cached))
            result["cache_hit"] = True
        else:
            result = await self._check(self.client, now)
            await self.redis.set(
                self._cache_key,
                json.dumps(result),
                px=max(1, int(self.settings.monitor_cache_seconds * 1000)),
            )
            result["cache_hit"] = False
        result = await self._overlay_live(result)
        await self._note_state(result["status"], now)
        return result

    def _base(self, status: str, now: datetime) -> dict[str, Any]:
        return {
            "status": status,
            "message": _MESSAGES[status],
            "balance": None,
            "usage_today": None,
            "usage_month": None,
            "last_check": _iso(now),
            "error_details": None,
            "consecutive_failures": 0,
            "circuit_breaker_open": False,
            "cache_hit": False,
            "provider": "openrouter",
            "limit": None,
            "limit_remaining": None,
            "is_free_tier": None,
            "rate_limit": None,
            "credits": None,
        }

    async def _check(self, client: OpenRouterClient, now: datetime) -> dict[str, Any]:
        try:
            key = await client.key_status()
        except TaskError as exc:
            status = _STATUS_FOR_ERROR.get(exc.error_class, "error")
            result = self._base(status, now)
            result["error_details"] = {"error_class": exc.error_class.value, "message": exc.message}
            log.warning("openrouter status check: %s (%s)", status, exc.message)
            return result
        credits: dict[str, Any] | None = None
        try:
            credits = await client.credits()
        except TaskError as exc:
            log.info("openrouter /credits unavailable: %s", exc.message)
        limit = _number(key.get("limit"))
        limit_remaining = _number(key.get("limit_remaining"))
        balance: float | None = limit_remaining
        if credits is not None:
            total = _number(credits.get("total_credits"))
            used = _number(credits.get("total_usage"))
            if total is not None and used is not None:
                balance = total - used
        exhausted = (limit_remaining is not None and limit_remaining <= 0) or (
            credits is not None and balance is not None and balance <= 0
        )
        result = self._base("credits_exhausted" if exhausted else "active", now)
        result.update(
            balance=balance,
            usage_today=_number(key.get("usage_daily")),
            usage_month=_number(key.get("usage_monthly")),
            limit=limit,
            limit_remaining=limit_remaining,
            is_free_tier=key.get("is_free_tier"),
            rate_limit=key.get("rate_limit"),
            credits=credits,
            label=key.get("label"),
            usage=_number(key.get("usage")),
        )
        await self._adopt_rate(key)
        return result

    async def _adopt_rate(self, key: dict[str, Any]) -> None:
        limiter = self.client.limiter if self.client is not None else None
        rate = rate_from_key(key)
        if limiter is None or rate is None or limiter.rate is not None:
            return
        try:
            await limiter.apply_rate(rate)
        except Exception:
            log.warning("could not apply the key's rate limit %s", rate, exc_info=True)

    async def _overlay_live(self, result: dict[str, Any]) -> dict[str, Any]:
        failures = await self.redis.get(self._failures_key)
        result["consecutive_failures"] = int(_text(failures) or 0)
        breaker = self.client.breaker if self.client is not None else None
        limiter = self.client.limiter if self.client is not None else None
        if breaker is not None:
            state = await breaker.status()
            result["breaker"] = state
            result["circuit_breaker_open"] = state["state"] != "closed"
            if state["state"] != "closed" and state["reason"] == ErrorClass.CREDITS.value:
                result["status"] = "credits_exhausted"
                result["message"] = _MESSAGES["credits_exhausted"]
        if limiter is not None:
            limits = await limiter.status()
            result["limiter"] = limits
            if limits["cooldown_remaining"] > 0 and result["status"] == "active":
                result["status"] = "rate_limited"
                result["message"] = _MESSAGES["rate_limited"]
        return result

    async def _note_state(self, status: str, now: datetime) -> None:
        try:
            await self._note(
                keys=[self._state_key, self._metrics_key(_day(now))],
                args=[status, self._retention_seconds],
            )
        except Exception:
            log.warning("could not record the openrouter state", exc_info=True)
