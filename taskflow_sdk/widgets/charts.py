"""The panel's charts as plotly JSON, built from :class:`~taskflow_sdk.widgets.state.PanelState`.

Each ``*_spec`` function is pure: it returns ``{"data": [...], "layout": {...}}`` made of
plain lists, numbers and strings, which a :class:`~taskflow_sdk.widgets.plot.Chart` shows.
Nothing here imports plotly (or anything that imports pandas), so the panel's feed thread can
build a figure while the user's cell imports whatever it likes.

Conventions every chart keeps: counts sit on integer axes from 0, a money axis starts at $0
(and shows $0 at the bottom when nothing was spent), and the timeline follows the data instead
of squeezing a short batch into a fixed window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskflow_sdk.models import HistoryStats, TaskState
from taskflow_sdk.widgets.protocol import SERIES, STATES
from taskflow_sdk.widgets.state import DayMetrics, PanelState

__all__ = [
    "count_axis",
    "counts_spec",
    "history_spec",
    "metrics_spec",
    "money_axis",
    "timeline_range",
    "timeline_spec",
]

SERIES_LABELS = {
    "primary:high": "primary · high",
    "primary:default": "primary · default",
    "primary:low": "primary · low",
    "retry": "retry",
    "scheduled": "scheduled",
    "dlq": "DLQ",
    "active": "active",
}
"""Legend label of each queue-depth series."""
SERIES_COLOURS = {
    "primary:high": "#1565c0",
    "primary:default": "#42a5f5",
    "primary:low": "#90caf9",
    "retry": "#ef6c00",
    "scheduled": "#8e24aa",
    "dlq": "#c62828",
    "active": "#2e7d32",
}
"""Line colour of each queue-depth series."""
STATE_COLOURS: dict[str, str] = {
    TaskState.PENDING: "#42a5f5",
    TaskState.ACTIVE: "#2e7d32",
    TaskState.SCHEDULED: "#8e24aa",
    TaskState.COMPLETED: "#66bb6a",
    TaskState.FAILED: "#ef6c00",
    TaskState.DLQ: "#c62828",
    TaskState.CANCELLED: "#9e9e9e",
}
"""Bar colour of each task state (a state without one is drawn grey)."""

MIN_SPAN_SECONDS = 30.0
"""The timeline never shows less than this much time..."""
IDLE_SPAN_SECONDS = 60.0
"""...and shows this much when nothing was queued in its whole window."""
_MARGIN = {"l": 50, "r": 15, "t": 35, "b": 30}
_FONT = {"size": 11}


def count_axis(top: float, **extra: Any) -> dict[str, Any]:
    """A y axis for counts: integers only, from 0 (``top``: the largest value shown)."""
    axis: dict[str, Any] = {"rangemode": "tozero", "tickformat": ",d", "zeroline": True}
    if top <= 0:
        axis["range"] = [0, 1]
        axis["dtick"] = 1
    elif top < 5:
        axis["dtick"] = 1
    axis.update(extra)
    return axis


def money_axis(top: float, **extra: Any) -> dict[str, Any]:
    """A y axis for US dollars from $0 (a $0-only series lies on the bottom line)."""
    axis: dict[str, Any] = {
        "rangemode": "tozero",
        "tickprefix": "$",
        "zeroline": True,
        "tickmode": "auto",
    }
    axis["range"] = [0, top * 1.15] if top > 0 else [0, 1]
    axis.update(extra)
    return axis


def timeline_range(
    times: Sequence[float], busy: Sequence[bool], now: float, window: float
) -> tuple[float, float]:
    """The x range (epoch seconds) of the timeline: from a little before the first sample
    with anything queued, within the window, to ``now``; at least :data:`MIN_SPAN_SECONDS`
    wide, :data:`IDLE_SPAN_SECONDS` when nothing was queued."""
    horizon = now - window
    first = next((t for t, b in zip(times, busy, strict=True) if b and t >= horizon), None)
    if first is None:
        return max(horizon, now - IDLE_SPAN_SECONDS), now
    span = max(MIN_SPAN_SECONDS, (now - first) * 1.1)
    return max(horizon, now - span), now


def timeline_spec(state: PanelState, now: float) -> dict[str, Any]:
    """Queue depths over time: one step line per series, the x axis in UTC, following the data.

    Every line is extended to ``now`` so a quiet queue still scrolls.
    """
    times, columns = state.series()
    if times:
        times = [*times, now]
        columns = [(*c, c[-1]) for c in columns]
    x = [round(t * 1000.0) for t in times]
    busy = [any(c[i] for c in columns) for i in range(len(times))] if columns else []
    start, end = timeline_range(times, busy, now, state.window_seconds)
    top = max((max(c) for c in columns if c), default=0)
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": SERIES_LABELS[s],
            "x": x,
            "y": list(columns[i]) if columns else [],
            "line": {"shape": "hv", "color": SERIES_COLOURS[s], "width": 2},
            "hovertemplate": "%{y:,d} tasks<extra>" + SERIES_LABELS[s] + "</extra>",
        }
        for i, s in enumerate(SERIES)
    ]
    layout = {
        "title": {"text": "Queue depths (UTC)", "font": {"size": 14}},
        "height": 300,
        "width": 760,
        "margin": _MARGIN,
        "font": _FONT,
        "xaxis": {"type": "date", "range": [round(start * 1000.0), round(end * 1000.0)]},
        "yaxis": count_axis(top, title={"text": "tasks"}),
        "legend": {"orientation": "h", "y": -0.2},
        "uirevision": "keep",
    }
    return {"data": data, "layout": layout}


def counts_spec(state: PanelState) -> dict[str, Any]:
    """Tasks per state as bars, each labelled with its count."""
    values = [int(state.counts.get(s, 0)) for s in STATES]
    data = [
        {
            "type": "bar",
            "x": list(STATES),
            "y": values,
            "marker": {"color": [STATE_COLOURS.get(s, "#9e9e9e") for s in STATES]},
            "text": [f"{v:,}" for v in values],
            "textposition": "outside",
            "cliponaxis": False,
            "hovertemplate": "%{x}: %{y:,d}<extra></extra>",
        }
    ]
    layout = {
        "title": {"text": "Tasks per state", "font": {"size": 14}},
        "height": 300,
        "width": 460,
        "margin": _MARGIN,
        "font": _FONT,
        "yaxis": count_axis(max(values, default=0)),
        "showlegend": False,
        "uirevision": "keep",
    }
    return {"data": data, "layout": layout}


_PALETTE = ("#c62828", "#ef6c00", "#8e24aa", "#6d4c41", "#546e7a", "#ad1457", "#f9a825")


def _metric_traces(days: Sequence[DayMetrics]) -> list[tuple[str, str, list[float], str]]:
    """(name, kind, values, colour) per trace: successes, failures per class, tokens, cost."""
    classes = sorted({c for d in days for c in d.failures_by_class})
    traces: list[tuple[str, str, list[float], str]] = [
        ("successes", "calls", [float(d.successful_calls) for d in days], "#2e7d32"),
    ]
    for i, name in enumerate(classes):
        values = [float(d.failures_by_class.get(name, 0)) for d in days]
        traces.append((f"failed: {name}", "calls", values, _PALETTE[i % len(_PALETTE)]))
    traces.append(("prompt tokens", "tokens", [float(d.prompt_tokens) for d in days], "#42a5f5"))
    traces.append(
        ("completion tokens", "tokens", [float(d.completion_tokens) for d in days], "#1565c0")
    )
    traces.append(("cost", "cost", [d.cost for d in days], "#212121"))
    return traces


def metrics_spec(state: PanelState) -> dict[str, Any]:
    """Daily upstream metrics: calls (successes, failures by class) stacked on top; tokens
    (bars, left axis) and cost (line, right axis in USD) below; one category per UTC day."""
    days = state.metrics
    x = [d.day for d in days]
    data: list[dict[str, Any]] = []
    tops = {"calls": 0.0, "tokens": 0.0, "cost": 0.0}
    stacked = {"calls": [0.0] * len(days), "tokens": [0.0] * len(days)}
    for name, kind, values, colour in _metric_traces(days):
        if kind == "cost":
            tops["cost"] = max(values, default=0.0)
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": name,
                    "x": x,
                    "y": values,
                    "xaxis": "x2",
                    "yaxis": "y3",
                    "line": {"color": colour},
                    "hovertemplate": "$%{y:,.4f}<extra>cost</extra>",
                }
            )
            continue
        stacked[kind] = [a + b for a, b in zip(stacked[kind], values, strict=True)]
        data.append(
            {
                "type": "bar",
                "name": name,
                "x": x,
                "y": [int(v) for v in values],
                "xaxis": "x" if kind == "calls" else "x2",
                "yaxis": "y" if kind == "calls" else "y2",
                "marker": {"color": colour},
                "hovertemplate": "%{y:,d}<extra>" + name + "</extra>",
            }
        )
    tops["calls"] = max(stacked["calls"], default=0.0)
    tops["tokens"] = max(stacked["tokens"], default=0.0)
    layout: dict[str, Any] = {
        "title": {"text": "Upstream calls, tokens and cost per day (UTC)", "font": {"size": 14}},
        "height": 420,
        "width": 760,
        "margin": {"l": 60, "r": 60, "t": 40, "b": 30},
        "font": _FONT,
        "barmode": "stack",
        "legend": {"orientation": "h", "y": -0.12},
        "xaxis": {"type": "category", "anchor": "y", "showticklabels": False},
        "xaxis2": {"type": "category", "anchor": "y2", "matches": "x"},
        "yaxis": count_axis(tops["calls"], domain=[0.56, 1.0], title={"text": "calls"}),
        "yaxis2": count_axis(tops["tokens"], domain=[0.0, 0.44], title={"text": "tokens"}),
        "yaxis3": money_axis(
            tops["cost"],
            overlaying="y2",
            side="right",
            anchor="x2",
            showgrid=False,
            title={"text": "cost"},
        ),
        "uirevision": "keep",
    }
    if not days:
        layout["annotations"] = [
            {
                "text": "no upstream calls recorded yet",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
            }
        ]
    return {"data": data, "layout": layout}


def _bucket_label(stats: HistoryStats, index: int) -> str:
    start = stats.buckets[index].start
    return start.strftime("%Y-%m-%d") if stats.bucket == "day" else start.strftime("%Y-%m-%d %H:00")


def history_spec(stats: HistoryStats | None, note: str | None = None) -> dict[str, Any]:
    """Recorded tasks per day (or hour) as bars stacked by state, and their cost as a line on
    a second axis (USD, right); one category per UTC bucket. ``note`` (e.g. "History is
    off: ...") is written across an empty chart; ``stats=None`` is a chart not loaded yet."""
    buckets = stats.buckets if stats is not None else []
    x = [_bucket_label(stats, i) for i in range(len(buckets))] if stats is not None else []
    data: list[dict[str, Any]] = []
    for state in STATES:
        values = [int(b.states.get(state, 0)) for b in buckets]
        if not any(values):
            continue
        data.append(
            {
                "type": "bar",
                "name": state,
                "x": x,
                "y": values,
                "marker": {"color": STATE_COLOURS.get(state, "#9e9e9e")},
                "hovertemplate": "%{y:,d} tasks<extra>" + state + "</extra>",
            }
        )
    costs = [float(b.cost_usd) for b in buckets]
    if buckets:
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "cost",
                "x": x,
                "y": costs,
                "yaxis": "y2",
                "line": {"color": "#212121"},
                "hovertemplate": "$%{y:,.4f}<extra>cost</extra>",
            }
        )
    unit = stats.bucket if stats is not None else "day"
    layout: dict[str, Any] = {
        "title": {"text": f"Recorded tasks and cost per {unit} (UTC)", "font": {"size": 14}},
        "height": 360,
        "width": 760,
        "margin": {"l": 60, "r": 60, "t": 40, "b": 40},
        "font": _FONT,
        "barmode": "stack",
        "legend": {"orientation": "h", "y": -0.15},
        "xaxis": {"type": "category"},
        "yaxis": count_axis(max((b.tasks for b in buckets), default=0), title={"text": "tasks"}),
        "yaxis2": money_axis(
            max(costs, default=0.0),
            overlaying="y",
            side="right",
            showgrid=False,
            title={"text": "cost"},
        ),
        "uirevision": "keep",
    }
    text = note
    if text is None and stats is not None and not any(b.tasks for b in buckets):
        text = "no recorded tasks in this range"
    if text is None and stats is None:
        text = "press Refresh to load the history"
    if text is not None:
        layout["annotations"] = [
            {
                "text": text,
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
            }
        ]
    return {"data": data, "layout": layout}
