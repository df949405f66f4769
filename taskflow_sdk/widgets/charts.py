"""The panel's plotly charts: built once as ``FigureWidget`` s, then updated in place from state.

Each ``update_*`` function writes a whole trace set inside one ``batch_update()``, so one redraw
is one message to the front end however many events it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taskflow_sdk.models import TaskState
from taskflow_sdk.widgets.protocol import SERIES, STATES
from taskflow_sdk.widgets.state import DayMetrics, PanelState

__all__ = [
    "counts_figure",
    "metrics_figure",
    "timeline_figure",
    "update_counts",
    "update_metrics",
    "update_timeline",
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
_MARGIN = {"l": 45, "r": 15, "t": 35, "b": 30}


def timeline_figure(height: int = 300, width: int = 760) -> go.FigureWidget:
    """Queue depths over time: one step line per series (x: UTC time)."""
    fig = go.FigureWidget(
        data=[
            go.Scatter(
                x=[],
                y=[],
                name=SERIES_LABELS[s],
                mode="lines",
                line={"shape": "hv", "color": SERIES_COLOURS[s], "width": 2},
            )
            for s in SERIES
        ],
        layout=go.Layout(
            title={"text": "Queue depths (UTC)", "font": {"size": 14}},
            height=height,
            width=width,
            margin=_MARGIN,
            xaxis={"type": "date", "title": None},
            yaxis={"rangemode": "tozero", "title": "tasks"},
            legend={"orientation": "h", "y": -0.2},
            uirevision="keep",
        ),
    )
    return fig


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def update_timeline(fig: go.FigureWidget, state: PanelState, now: float) -> None:
    """Write the timeline samples into ``fig``; scroll the x axis to ``[now - window, now]``.

    The arrays go as numpy arrays: plotly sends them as binary buffers without checking every
    element, which keeps a redraw near a millisecond.
    """
    times, columns = state.series()
    if times:
        # Extend every line to now, so a quiet queue still scrolls.
        times = [*times, now]
        columns = [(*c, c[-1]) for c in columns]
    x = (np.asarray(times, dtype=np.float64) * 1000).astype("int64").astype("datetime64[ms]")
    with fig.batch_update():
        for i, trace in enumerate(fig.data):
            trace.x = x
            trace.y = np.asarray(columns[i] if columns else [], dtype=np.int64)
        fig.layout.xaxis.range = [_utc(now - state.window_seconds), _utc(now)]


def counts_figure(height: int = 300, width: int = 460) -> go.FigureWidget:
    """Tasks per state as bars."""
    return go.FigureWidget(
        data=[
            go.Bar(
                x=list(STATES),
                y=[0] * len(STATES),
                marker={"color": [STATE_COLOURS.get(s, "#9e9e9e") for s in STATES]},
                text=["0"] * len(STATES),
                textposition="outside",
                cliponaxis=False,
            )
        ],
        layout=go.Layout(
            title={"text": "Tasks per state", "font": {"size": 14}},
            height=height,
            width=width,
            margin=_MARGIN,
            yaxis={"rangemode": "tozero"},
            showlegend=False,
            uirevision="keep",
        ),
    )


def update_counts(fig: go.FigureWidget, state: PanelState) -> None:
    """Write the state counts into ``fig``."""
    values = [state.counts.get(s, 0) for s in STATES]
    with fig.batch_update():
        fig.data[0].y = values
        fig.data[0].text = [f"{v:,}" for v in values]


def metrics_figure(height: int = 420, width: int = 760) -> go.FigureWidget:
    """Daily upstream metrics: calls split into successes and failures by class (top), tokens
    and cost (bottom, cost on the right axis)."""
    base = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        specs=[[{}], [{"secondary_y": True}]],
        subplot_titles=("Calls per day", "Tokens and cost per day"),
    )
    fig = go.FigureWidget(base)
    fig.update_layout(
        height=height,
        width=width,
        margin={"l": 55, "r": 55, "t": 40, "b": 30},
        barmode="stack",
        legend={"orientation": "h", "y": -0.12},
        uirevision="keep",
    )
    fig.update_yaxes(title_text="calls", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="tokens", row=2, col=1, secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="cost", row=2, col=1, secondary_y=True, rangemode="tozero")
    return fig


def _metric_traces(days: Sequence[DayMetrics]) -> list[tuple[str, str, list[float], str]]:
    """(name, kind, values, colour) per trace: successes, failures per class, tokens, cost."""
    classes = sorted({c for d in days for c in d.failures_by_class})
    palette = ("#c62828", "#ef6c00", "#8e24aa", "#6d4c41", "#546e7a", "#ad1457", "#f9a825")
    traces: list[tuple[str, str, list[float], str]] = [
        ("successes", "calls", [float(d.successful_calls) for d in days], "#2e7d32"),
    ]
    for i, name in enumerate(classes):
        values = [float(d.failures_by_class.get(name, 0)) for d in days]
        traces.append((f"failed: {name}", "calls", values, palette[i % len(palette)]))
    traces.append(("prompt tokens", "tokens", [float(d.prompt_tokens) for d in days], "#42a5f5"))
    traces.append(
        ("completion tokens", "tokens", [float(d.completion_tokens) for d in days], "#1565c0")
    )
    traces.append(("cost", "cost", [d.cost for d in days], "#212121"))
    return traces


def update_metrics(fig: go.FigureWidget, state: PanelState) -> None:
    """Write the daily metrics into ``fig`` (traces are rebuilt when the failure classes
    change, otherwise updated in place)."""
    days = state.metrics
    x = [d.day for d in days]
    traces = _metric_traces(days)
    names = [t[0] for t in traces]
    with fig.batch_update():
        if [t.name for t in fig.data] != names:
            fig.data = []
            for name, kind, values, colour in traces:
                if kind == "cost":
                    trace = go.Scatter(
                        x=x, y=values, name=name, mode="lines+markers", line={"color": colour}
                    )
                    fig.add_trace(trace, row=2, col=1, secondary_y=True)
                else:
                    trace = go.Bar(x=x, y=values, name=name, marker={"color": colour})
                    fig.add_trace(trace, row=1 if kind == "calls" else 2, col=1)
        else:
            for trace, (_, _, values, _) in zip(fig.data, traces, strict=True):
                trace.x = x
                trace.y = values
