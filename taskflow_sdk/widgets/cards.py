"""What the panel's HTML parts and tables say, built from
:class:`~taskflow_sdk.widgets.state.PanelState` (pure: no widget, no clock of its own).

The header never claims more than it knows (an unreachable server leaves Redis and the workers
unknown; a stopped panel says stopped), and the OpenRouter card keeps apart what the key check
says and what the calls did.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from taskflow_sdk.widgets.state import PanelState, budget_text, hold_text

__all__ = [
    "DLQ_COLUMNS",
    "WORKER_COLUMNS",
    "budget_html",
    "dlq_rows",
    "header_html",
    "openrouter_html",
    "worker_rows",
]

WORKER_COLUMNS = (
    ("name", "Worker"),
    ("status", "Status"),
    ("heartbeat", "Heartbeat age"),
    ("active", "Active"),
    ("completed", "Completed"),
    ("failed", "Failed attempts"),
)
"""(key, label) of the workers table's columns."""
DLQ_COLUMNS = (
    ("task_id", "Task"),
    ("task_type", "Type"),
    ("error_type", "Error class"),
    ("last_error", "Last error"),
    ("retries", "Retries"),
    ("dlq_at", "In DLQ since (UTC)"),
)
"""(key, label) of the DLQ table's columns."""

_GOOD = {"healthy", "active", "closed", "openrouter", "live"}
_BAD = {"unhealthy", "open", "api_key_invalid", "credits_exhausted", "error", "down", "offline"}


def _pill(label: str, value: str, tone: str | None = None) -> str:
    tone = tone or ("good" if value in _GOOD else "bad" if value in _BAD else "warn")
    colour = {"good": "#2e7d32", "bad": "#c62828", "warn": "#ef6c00", "none": "#616161"}[tone]
    return (
        f"<span class='tf-pill' data-name='{html.escape(label)}' style='margin-right:1.2em'>"
        f"{html.escape(label)} <b style='color:{colour}'>{html.escape(value)}</b></span>"
    )


def header_html(state: PanelState) -> str:
    """The header line: server, Redis, workers online, provider and the feed (pure).

    It never claims more than it knows: while the server does not answer, Redis and the
    workers are unknown; a stopped panel says it is stopped (not reconnecting); a fault inside
    the feed is shown as such while the feed recovers from it.
    """
    h, feed = state.health, state.feed
    down = h.status == "down"
    redis = h.redis
    if h.redis_latency_ms is not None and redis == "healthy":
        redis = f"{redis} ({h.redis_latency_ms:.1f} ms)"
    if feed.stopped:
        feed_text, tone = "stopped", "none"
    elif feed.fault:
        feed_text, tone = "error, recovering", "bad"
    elif feed.connected is None:
        feed_text, tone = "connecting", "warn"
    elif feed.connected:
        feed_text, tone = f"live · {feed.events:,} events", "good"
    else:
        feed_text, tone = "reconnecting", "bad"
    redis_tone: str | None
    if down:
        redis, redis_tone, workers, workers_tone = "unknown", "none", "unknown", "none"
    else:
        redis_tone = "good" if h.redis == "healthy" else None
        workers = f"{h.workers_healthy}/{h.workers_total}"
        workers_tone = (
            "good" if h.workers_total and h.workers_healthy == h.workers_total else "warn"
        )
    provider_tone = "good" if h.provider == "openrouter" else "none"
    parts = [
        _pill("Server", "unreachable" if down else h.status, "bad" if down else None),
        _pill("Redis", redis, redis_tone),
        _pill("Workers online", workers, workers_tone),
        _pill("Provider", h.provider, provider_tone),
        _pill("Feed", feed_text, tone),
    ]
    return f"<div class='tf-header' style='font-size:13px'>{''.join(parts)}</div>"


def _money(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def budget_html(state: PanelState, now: float) -> str:
    """The line under the breaker lamp: today's spend against the daily budget, and the hold
    (reason, time left, message) while there is one (pure)."""
    parts = [f"<span class='tf-budget-spend'>{html.escape(budget_text(state.budget))}</span>"]
    hold = state.hold
    if hold.active:
        text = hold_text(hold, now) + (f" — {hold.message}" if hold.message else "")
        parts.append(
            f"<span class='tf-hold' data-reason='{html.escape(hold.reason or '')}' "
            f"style='color:#ef6c00;margin-left:1em'>{html.escape(text)}</span>"
        )
    return f"<div class='tf-budget' style='font-size:12px;padding:0 0.5em'>{''.join(parts)}</div>"


def openrouter_html(state: PanelState) -> str:
    """OpenRouter's service state, key usage and limit, today's spend against the budget, and
    the limiter's load (pure).

    Two sources meet here and the card says which is which: the key check (``/key``, cached by
    the server, so it can say "key works" while calls fail) and the calls themselves (how many
    failed in a row, the cost metered from their answers). Usage reported by OpenRouter lags
    behind the calls, so when our metered cost is ahead the card says so.
    """
    o = state.openrouter
    service = o.status + (f" — {o.message}" if o.message else "")
    failing = o.consecutive_failures
    calls = "ok" if failing == 0 else f"failing: the last {failing:,} failed in a row"
    usage = f"{_money(o.usage)} (today {_money(o.usage_today)}), as OpenRouter reports it"
    metered = state.budget.spent_today_usd
    if metered is not None and metered > (o.usage_today or 0.0) + 5e-5:
        usage += f"; {_money(metered)} metered from today's calls (OpenRouter's figure lags)"
    rows = [
        ("Key check", service),
        ("Calls", calls),
        ("Spend", budget_text(state.budget)),
        ("Provider", o.provider),
        ("Key usage", usage),
        (
            "Key limit",
            "none" if o.limit is None else f"{_money(o.limit)}, {_money(o.limit_remaining)} left",
        ),
        ("Rate limit", o.rate or "none"),
        (
            "Rate-limit utilisation",
            "—" if o.utilisation is None else f"{o.utilisation:.0%}",
        ),
        ("In flight", f"{o.in_flight}" + (f" / {o.max_in_flight}" if o.max_in_flight else "")),
    ]
    if o.cooldown_remaining > 0:
        rows.append(("Cool-down", f"{o.cooldown_remaining:.1f} s (429 from upstream)"))
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return (
        "<div class='tf-openrouter' style='font-size:12px'><b>OpenRouter</b>"
        f"<table>{cells}</table></div>"
    )


def _utc(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f} s"


def worker_rows(state: PanelState) -> list[dict[str, Any]]:
    """The workers table's rows (keys of :data:`WORKER_COLUMNS` and ``worker_id``)."""
    return [
        {
            "worker_id": w.worker_id,
            "name": w.name,
            "status": w.status,
            "heartbeat": _age(w.heartbeat_age),
            "active": w.active,
            "completed": w.completed,
            "failed": w.failed,
        }
        for w in state.workers
    ]


def dlq_rows(state: PanelState, limit: int) -> list[dict[str, Any]]:
    """The DLQ table's rows, at most ``limit`` (keys of :data:`DLQ_COLUMNS`)."""
    return [
        {
            "task_id": r.task_id,
            "task_type": r.task_type or "",
            "error_type": r.error_type or "",
            "last_error": (r.last_error or "")[:160],
            "retries": f"{r.retry_count}/{r.max_retries}" if r.loaded else "",
            "dlq_at": _utc(r.dlq_at),
        }
        for r in list(state.dlq.values())[:limit]
    ]
