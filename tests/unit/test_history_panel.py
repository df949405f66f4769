"""The control panel's History tab and its chart, without a server: the spec builder is pure
(recorded stats in, plotly JSON out), and the tab reads ``client.history_buckets`` only when it
is opened or refreshed, says when history is off, and never imports pandas or plotly.

The live counterpart (a real Client against a real server and PostgreSQL) is in
``tests/sdk/test_sdk_history.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from taskflow_sdk.errors import HistoryDisabledError, error_for_response
from taskflow_sdk.models import HistoryStats
from taskflow_sdk.widgets import ControlPanel
from taskflow_sdk.widgets.charts import STATE_COLOURS, history_spec
from taskflow_sdk.widgets.panel import HISTORY_OFF_TEXT

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DAY = datetime(2026, 3, 1, tzinfo=UTC)

STATS: dict[str, Any] = {
    "bucket": "day",
    "time_field": "created",
    "since": None,
    "until": None,
    "buckets": [
        {
            "start": DAY.isoformat(),
            "tasks": 5,
            "states": {"COMPLETED": 3, "DLQ": 2},
            "failures": {"timeout": 2},
            "cost_usd": 0.25,
        },
        {"start": (DAY + timedelta(days=1)).isoformat(), "tasks": 0, "cost_usd": 0.0},
        {
            "start": (DAY + timedelta(days=2)).isoformat(),
            "tasks": 4,
            "states": {"COMPLETED": 4},
            "cost_usd": 0.5,
        },
    ],
}
"""What ``GET /api/v1/history/stats`` answers for three days, the middle one empty."""


def history_off() -> HistoryDisabledError:
    """The error the SDK raises for a server without history (from the server's real 404)."""
    request = httpx.Request("GET", "http://server/api/v1/history/stats")
    response = httpx.Response(
        404,
        headers={"x-taskflow-history": "off"},
        json={"detail": "history is off on this server: set TASKFLOW_DATABASE_URL=..."},
        request=request,
    )
    error = error_for_response(response)
    assert isinstance(error, HistoryDisabledError)
    return error


class HistoryClient:
    """The part of the sync Client the History tab reads, answering canned stats."""

    base_url = "http://history"

    def __init__(self, answer: Any = None, error: BaseException | None = None) -> None:
        self.answer = STATS if answer is None else answer
        self.error = error
        self.calls: list[dict[str, Any]] = []
        self.breaker = self
        self.openrouter = self

    def queues(self) -> dict[str, Any]:
        return {}

    def history_buckets(self, **kwargs: Any) -> HistoryStats:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return HistoryStats.model_validate(self.answer)


class AsyncHistoryClient(HistoryClient):
    """The same, as an AsyncClient (coroutines)."""

    async def queues(self) -> dict[str, Any]:  # type: ignore[override]
        return {}

    async def history_buckets(self, **kwargs: Any) -> HistoryStats:  # type: ignore[override]
        return HistoryClient.history_buckets(self, **kwargs)


# --------------------------------------------------------------------------- the chart


def test_history_spec_stacks_states_and_draws_cost_on_a_second_axis() -> None:
    spec = history_spec(HistoryStats.model_validate(STATS))
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert [t["name"] for t in bars] == ["COMPLETED", "DLQ"]  # states with a task, in order
    assert bars[0]["x"] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert bars[0]["y"] == [3, 0, 4] and bars[1]["y"] == [2, 0, 0]
    assert bars[1]["marker"]["color"] == STATE_COLOURS["DLQ"]
    (cost,) = [t for t in spec["data"] if t["type"] == "scatter"]
    assert cost["yaxis"] == "y2" and cost["y"] == [0.25, 0.0, 0.5]
    layout = spec["layout"]
    assert layout["barmode"] == "stack"
    assert layout["yaxis2"]["overlaying"] == "y" and layout["yaxis2"]["side"] == "right"
    assert layout["yaxis2"]["tickprefix"] == "$"
    assert layout["yaxis2"]["range"][1] == pytest.approx(0.5 * 1.15)
    assert layout["yaxis"]["rangemode"] == "tozero"
    assert "annotations" not in layout
    assert "per day" in layout["title"]["text"]


def test_history_spec_by_hour_labels_hours() -> None:
    hourly = {**STATS, "bucket": "hour"}
    hourly["buckets"] = [
        {"start": (DAY + timedelta(hours=h)).isoformat(), "tasks": 1, "states": {"COMPLETED": 1}}
        for h in (0, 1)
    ]
    spec = history_spec(HistoryStats.model_validate(hourly))
    assert spec["data"][0]["x"] == ["2026-03-01 00:00", "2026-03-01 01:00"]
    assert "per hour" in spec["layout"]["title"]["text"]


def test_history_spec_says_why_it_is_empty() -> None:
    def note(spec: dict[str, Any]) -> str:
        return str(spec["layout"]["annotations"][0]["text"])

    assert note(history_spec(None)) == "press Refresh to load the history"
    empty = HistoryStats.model_validate({**STATS, "buckets": []})
    assert note(history_spec(empty)) == "no recorded tasks in this range"
    off = history_spec(None, HISTORY_OFF_TEXT)
    assert note(off) == HISTORY_OFF_TEXT and off["data"] == []
    assert history_spec(empty)["layout"]["yaxis2"]["range"] == [0, 1]


# --------------------------------------------------------------------------- the tab


def test_the_tab_loads_on_open_and_on_refresh_only() -> None:
    client = HistoryClient()
    panel = ControlPanel(client, autostart=False, history_days=7)
    assert client.calls == []  # nothing read before the tab is opened
    assert panel.tabs.titles == ("Live", "History")
    panel.tabs.selected_index = 1
    panel.wait_actions()
    assert panel.history_loads == 1
    assert client.calls[0]["bucket"] == "day"
    assert client.calls[0]["since"] == (datetime.now(UTC) - timedelta(days=6)).date()
    assert "9 recorded task(s)" in panel.history_note.value
    assert "$0.7500" in panel.history_note.value
    names = [t["name"] for t in panel.history_chart.data]
    assert names == ["COMPLETED", "DLQ", "cost"]

    panel.tabs.selected_index = 0
    panel.tabs.selected_index = 1  # opened again at once: still fresh, not read again
    panel.wait_actions()
    assert len(client.calls) == 1

    panel.history_refresh.click()
    panel.wait_actions()
    assert len(client.calls) == 2 and panel.history_loads == 2
    assert not panel.history_refresh.disabled
    panel.stop()


def test_a_server_without_history_says_how_to_turn_it_on() -> None:
    panel = ControlPanel(HistoryClient(error=history_off()), autostart=False)
    panel.load_history()
    assert panel.history_note.value == HISTORY_OFF_TEXT
    assert panel.history_chart.layout["annotations"][0]["text"] == HISTORY_OFF_TEXT
    assert panel.history is None
    assert not panel.history_refresh.disabled


def test_other_failures_keep_the_last_chart_and_say_why() -> None:
    client = HistoryClient()
    panel = ControlPanel(client, autostart=False)
    panel.load_history()
    client.error = ConnectionError("server went away")
    panel.load_history()
    assert "could not be read: server went away" in panel.history_note.value
    assert [t["name"] for t in panel.history_chart.data][-1] == "cost"  # the last data stays
    assert panel.history is not None and len(panel.history.buckets) == 3


def test_a_client_without_history_support_is_told_so() -> None:
    class Old:
        base_url = "http://old"

        def queues(self) -> dict[str, Any]:
            return {}

    panel = ControlPanel(Old(), autostart=False)
    panel.load_history()
    assert "no history_buckets" in panel.history_note.value


async def test_the_tab_with_an_async_client() -> None:
    client = AsyncHistoryClient()
    panel = ControlPanel(client, autostart=False)
    stats = await panel.load_history()
    assert isinstance(stats, HistoryStats)
    assert "9 recorded task(s)" in panel.history_note.value
    client.error = history_off()
    panel.history_refresh.click()
    await panel.wait_actions_async()
    assert panel.history_note.value == HISTORY_OFF_TEXT


def test_reading_the_history_imports_neither_pandas_nor_plotly() -> None:
    """The History tab reads and draws on the panel's action thread without pandas or plotly,
    like the live feed (test_panel_robustness)."""
    script = textwrap.dedent(
        """
        import sys, time
        sys.path.insert(0, {tests!r})
        from test_history_panel import HistoryClient
        from taskflow_sdk.widgets import ControlPanel
        panel = ControlPanel(HistoryClient(), autostart=False)
        panel.tabs.selected_index = 1
        panel.wait_actions()
        print(panel.history_loads, len(panel.history_chart.data),
              sorted(m for m in ("pandas", "plotly") if m in sys.modules))
        """
    ).format(tests=str(HERE))
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": str(HERE.parent)} | env,
    )
    assert out.returncode == 0, out.stderr
    loads, traces, imported = out.stdout.split(" ", 2)
    assert int(loads) == 1 and int(traces) == 3
    assert imported.strip() == "[]"


def test_since_is_a_date_the_sdk_sends_as_iso() -> None:
    from taskflow_sdk._params import HistoryQuery

    query = HistoryQuery.make(
        since=date(2026, 3, 1),
        until=datetime(2026, 3, 2, 12, tzinfo=UTC),
        time_field="created",
        task_type=None,
        state=None,
        error_class=None,
        batch=None,
        min_cost=None,
        max_cost=None,
    )
    assert query.params() == {
        "since": "2026-03-01",
        "until": "2026-03-02T12:00:00Z",
        "time_field": "created",
    }
