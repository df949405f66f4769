"""The OpenRouter monitor: service state (cached), and daily call metrics kept N days.

:meth:`OpenRouterMonitor.status` answers the AsyncTaskFlow v1 shape the old dashboard reads::

    {status, message, balance, usage_today, usage_month, last_check, error_details,
     consecutive_failures, circuit_breaker_open, cache_hit}

plus ``provider``, ``limit``, ``limit_remaining``, ``is_free_tier``, ``rate_limit``, ``credits``,
``breaker``, ``limiter``, ``hold`` (the hold that stops LLM work, with its reason and end, or
``None``) and ``budget`` (today's cost against the daily budget). ``status`` is one of
``active``, ``api_key_missing``, ``api_key_invalid``, ``credits_exhausted`` (also while a
``credits``, ``key_limit`` or ``budget`` hold is in force), ``rate_limited`` or ``error``.
The key check (``GET /key``, and ``GET /credits`` when the key may read it) is cached in Redis for
``monitor_cache_seconds``; the breaker, cool-down and failure counter are read live on every call,
so an open breaker or a running cool-down shows at once. A new key with zero usage is *active*:
only ``limit_remaining <= 0`` or an empty credit balance means exhausted.

:meth:`OpenRouterMonitor.record_call` is the client's metrics recorder. Metrics live in one hash
per UTC day (``Keys.openrouter("metrics:YYYY-MM-DD")``), expiring after
``metrics_retention_days``: calls, successes, failures (and per error class), tokens, cost, and
the seconds spent in each service state (``state_<status>``, credited when the state changes).

**Budget.** ``TASKFLOW_BUDGET_USD`` (or :meth:`OpenRouterMonitor.set_budget`, kept in Redis so
every process sees it) caps what the upstream may cost per UTC day. ``record_call`` adds each
call's cost to today's metrics and, in the same round trip, reads the budget: once today's cost
reaches it the breaker holds LLM work (reason ``budget``) until midnight UTC or until the budget
is raised.

**Lifting holds.** :meth:`OpenRouterMonitor.check_holds` (every worker calls it every
``hold_check_seconds`` while a hold is in force) lifts a ``key_limit`` or ``credits`` hold as
soon as ``/key`` (and ``/credits`` with a management key) shows room again, and a ``budget``
hold once the budget is above today's cost. Lifting lets one probe task go first.

The key's ``rate_limit`` is shown as OpenRouter sends it but never becomes the limiter's rate:
OpenRouter documents it as deprecated and safe to ignore, and live keys answer
``{"requests": -1, ...}``. The rate comes from ``TASKFLOW_RATE_LIMIT`` (else only the 429
cool-down paces the workers).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from taskflow_server.config import Settings
from taskflow_server.observability.metrics import upstream_totals
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.store.keys import Keys

if TYPE_CHECKING:
    from taskflow_server.llm.openrouter import OpenRouterClient

log = logging.getLogger(__name__)

CREDITS_HIDDEN = (
    "openrouter credits are not visible with this key (/credits answers 403: it is not a "
    "management key); the balance shown is what the key's own limit leaves"
)
"""What the monitor logs (once) when ``/credits`` refuses the key."""

_STATUS_FOR_ERROR = {
    ErrorClass.AUTH: "api_key_invalid",
    ErrorClass.CREDITS: "credits_exhausted",
    ErrorClass.KEY_LIMIT: "credits_exhausted",
    ErrorClass.RATE_LIMITED: "rate_limited",
}
_HOLD_STATUS = {
    "credits": "credits_exhausted",
    "key_limit": "credits_exhausted",
    "budget": "credits_exhausted",
    "rate_limited": "rate_limited",
}
_HOLD_MESSAGES = {
    "credits": "The OpenRouter account has no credits left: LLM work is held, nothing is lost.",
    "key_limit": (
        "The OpenRouter key's (or workspace's, or guardrail's) limit is spent: LLM work is "
        "held, nothing is lost. Raise the limit; work resumes by itself."
    ),
    "budget": (
        "Today's budget (TASKFLOW_BUDGET_USD) is spent: LLM work is held until midnight UTC "
        "or until the budget is raised."
    ),
    "rate_limited": (
        "OpenRouter asked us to wait longer than a task should (a daily cap or a long "
        "cool-down): LLM work is held until then."
    ),
}
_NO_BUDGET = "none"
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
        self._budget_key = keys.openrouter("budget")
        self._note = redis.register_script(_script_text())
        self._credits_said: str | None = None
        """What was last logged about ``/credits`` (a repeat goes to DEBUG, not every check to
        INFO)."""

    def _say_credits(self, note: str | None) -> None:
        """Log ``note`` about ``/credits`` at INFO the first time, at DEBUG while it repeats;
        ``None`` (credits readable again) forgets it."""
        level = logging.DEBUG if note is not None and note == self._credits_said else logging.INFO
        self._credits_said = note
        if note is not None:
            log.log(level, "%s", note)

    def _metrics_key(self, day: str) -> str:
        return self.keys.openrouter(f"metrics:{day}")

    @property
    def _retention_seconds(self) -> int:
        return int(self.settings.metrics_retention_days * 86400)

    # ---------------------------------------------------------------- metrics

    async def record_call(
        self,
        ok: bool,
        error_class: str | None,
        usage: dict[str, Any],
        *,
        status: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Count one upstream call in today's metrics (and the consecutive-failure counter);
        hold LLM work when today's cost reaches the budget.

        The same transaction adds the call to the Prometheus totals (``Keys.metrics``): calls
        by HTTP ``status`` (``None``: no answer) and outcome, the latency ``seconds`` (``None``:
        nothing was sent), tokens and cost.
        """
        now = datetime.now(UTC)
        key = self._metrics_key(_day(now))
        async with self.redis.pipeline(transaction=True) as pipe:
            upstream_totals(
                pipe,
                self.keys.metrics,
                status=status,
                outcome="ok" if ok else (error_class or "unexpected"),
                seconds=seconds,
                usage=usage,
            )
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
            pipe.hincrbyfloat(key, "cost", cost)
            pipe.get(self._budget_key)
            pipe.expire(key, self._retention_seconds)
            replies = await pipe.execute()
        spent, stored = float(replies[-3]), replies[-2]
        budget = self._budget_from(stored)
        if cost and budget is not None and spent >= budget:
            await self._hold_for_budget(spent, budget, now)

    def _budget_from(self, stored: Any) -> float | None:
        """The daily budget in force: the one set at run time, else the setting."""
        if stored is None:
            return self.settings.budget_usd
        text = _text(stored)
        return None if text == _NO_BUDGET else _number(text)

    async def _hold_for_budget(self, spent: float, budget: float, now: datetime) -> None:
        breaker = self.client.breaker if self.client is not None else None
        if breaker is None:
            return
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        log.warning("today's upstream cost $%.4f reached the budget $%.4f: holding", spent, budget)
        await breaker.hold("budget", max(1.0, (midnight - now).total_seconds()))

    async def budget(self) -> dict[str, Any]:
        """``{daily_usd, spent_today_usd, remaining_usd, held}``: today's cost (UTC) against the
        daily budget (``None`` = no cap), and whether a budget hold is in force."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._budget_key)
            pipe.hget(self._metrics_key(_day(datetime.now(UTC))), "cost")
            stored, cost = await pipe.execute()
        budget = self._budget_from(stored)
        spent = float(_text(cost) or 0.0)
        breaker = self.client.breaker if self.client is not None else None
        held = False
        if breaker is not None:
            held = (await breaker.status()).get("hold") == "budget"
        return {
            "daily_usd": budget,
            "spent_today_usd": round(spent, 6),
            "remaining_usd": round(max(0.0, budget - spent), 6) if budget is not None else None,
            "held": held,
        }

    async def set_budget(self, daily_usd: float | None) -> dict[str, Any]:
        """Set the daily budget for every process (``None`` removes the cap); a budget hold is
        lifted when the new budget is above today's cost. Returns :meth:`budget`."""
        if daily_usd is not None and daily_usd < 0:
            raise ValueError("the daily budget must be zero or more dollars")
        value = _NO_BUDGET if daily_usd is None else repr(float(daily_usd))
        await self.redis.set(self._budget_key, value)
        await self._lift_budget_if_room()
        return await self.budget()

    async def _lift_budget_if_room(self) -> bool:
        breaker = self.client.breaker if self.client is not None else None
        if breaker is None:
            return False
        view = await self.budget()
        if not view["held"]:
            return False
        if view["daily_usd"] is None or view["spent_today_usd"] < view["daily_usd"]:
            return await breaker.lift("budget")
        return False

    async def check_holds(self) -> str | None:
        """Lift the hold in force when its cause is gone; returns the hold still in force.

        ``key_limit`` / ``credits``: ``/key`` (and ``/credits`` with a management key) is asked
        again and the hold lifts when it shows room. ``budget``: lifts when the budget is above
        today's cost. ``rate_limited`` ends by its own clock.
        """
        breaker = self.client.breaker if self.client is not None else None
        if breaker is None:
            return None
        raw = (await breaker.status()).get("hold")
        hold = str(raw) if raw else None
        if hold == "budget":
            return None if await self._lift_budget_if_room() else hold
        if hold not in ("key_limit", "credits") or self.client is None:
            return hold
        state = await self._check(self.client, datetime.now(UTC))
        room = state["status"] == "active" and (
            hold == "key_limit" or (state["credits"] is not None and (state["balance"] or 0.0) > 0)
        )
        if room and await breaker.lift(hold):
            await self.redis.delete(self._cache_key)
            return None
        return hold

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
            self._say_credits(f"openrouter /credits unavailable: {exc.message}")
        else:
            self._say_credits(CREDITS_HIDDEN if credits is None else None)
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
        return result

    async def _overlay_live(self, result: dict[str, Any]) -> dict[str, Any]:
        failures = await self.redis.get(self._failures_key)
        result["consecutive_failures"] = int(_text(failures) or 0)
        breaker = self.client.breaker if self.client is not None else None
        limiter = self.client.limiter if self.client is not None else None
        result["hold"] = None
        if breaker is not None:
            state = await breaker.status()
            result["breaker"] = state
            result["circuit_breaker_open"] = state["state"] != "closed"
            hold = state.get("hold")
            if hold:
                until = state.get("hold_until")
                result["status"] = _HOLD_STATUS.get(hold, "error")
                result["message"] = _HOLD_MESSAGES.get(hold, f"LLM work is held ({hold}).")
                result["hold"] = {
                    "reason": hold,
                    "since": state.get("opened_at"),
                    "until": until,
                    "seconds_left": state.get("seconds_to_half_open") if until else None,
                    "message": result["message"],
                }
        result["budget"] = await self.budget()
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
