"""The control panel never dies and never contradicts itself (issue: a panel that holds).

Each test states what the panel shows against what the server (or the fake client standing in
for it, answering the server's real shapes) said: a feed that hits an error says so and goes
on; a stopped panel says stopped; an unreachable server leaves nothing claimed about Redis or
workers; the OpenRouter card tells the key check from the calls; a batch row follows its run
whatever the order of ``watch`` and the panel's own pickup.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from support import free_port, wait_until
from taskflow_sdk import Client
from taskflow_sdk.widgets import ControlPanel
from taskflow_sdk.widgets.cards import WORKER_COLUMNS, openrouter_html
from taskflow_sdk.widgets.charts import counts_spec, metrics_spec, timeline_range, timeline_spec
from taskflow_sdk.widgets.state import PanelState, Want

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

HEALTHY = {
    "status": "healthy",
    "components": {
        "redis": {"status": "healthy", "latency_ms": 0.4},
        "workers": {"total": 2, "healthy": 2},
    },
}
TWO_WORKERS = {
    "worker_details": [
        {"worker_id": "w1", "status": "healthy", "heartbeat_age": 0.4, "failed": 112},
        {"worker_id": "w2", "status": "healthy", "heartbeat_age": 0.7},
    ]
}


class QuietClient:
    """The sync Client surface the panel reads, answering the server's shapes; no events."""

    base_url = "http://quiet"

    def __init__(self) -> None:
        self.breaker = self
        self.openrouter = self
        self.batch_runs: list[Any] = []

    def events(self, last_event_id: str | None = None) -> Any:
        raise ConnectionError("no stream here")

    def queues(self) -> dict[str, Any]:
        return {"queues": {"primary": 0}, "states": {"COMPLETED": 3}}

    def workers(self) -> dict[str, Any]:
        return TWO_WORKERS

    def health(self) -> dict[str, Any]:
        return HEALTHY

    def dlq(self, limit: int = 50) -> list[Any]:
        return []

    def status(self) -> dict[str, Any]:
        return {"status": "active", "provider": "openrouter"}

    def metrics(self, days: int = 7) -> dict[str, Any]:
        return {"metrics": {}}


# --------------------------------------------------------------------------- the feed holds


def test_the_panel_threads_import_no_user_facing_library() -> None:
    """The feed's threads build every chart without importing plotly or pandas, so a user's
    ``import pandas`` in the next cell cannot meet a half-imported pandas in our thread."""
    script = textwrap.dedent(
        """
        import sys, time
        sys.path.insert(0, {tests!r})
        from test_panel_robustness import QuietClient
        from taskflow_sdk.widgets import ControlPanel
        panel = ControlPanel(QuietClient(), refresh_hz=20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            panel.renders < 5 or not panel.workers_table.rows or not panel.metrics.data
        ):
            time.sleep(0.02)
        panel.stop()
        print(panel.renders, sorted(m for m in ("pandas", "plotly") if m in sys.modules))
        """
    ).format(tests=str(HERE))
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": str(HERE.parent)} | _env(),
    )
    assert out.returncode == 0, out.stderr
    renders, imported = out.stdout.split(" ", 1)
    assert int(renders) >= 5
    assert imported.strip() == "[]"


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_a_fault_inside_the_feed_is_shown_and_the_feed_goes_on() -> None:
    panel = ControlPanel(QuietClient(), autostart=False, refresh_hz=20)
    real = panel.counts.update
    failures = {"left": 3}

    def flaky(spec: dict[str, Any]) -> bool:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise AttributeError("partially initialized module 'pandas' has no attribute 'Series'")
        return real(spec)

    panel.counts.update = flaky  # type: ignore[method-assign]
    panel.start()
    try:
        wait_until(lambda: "error, recovering" in panel.header.value, "the fault in the header")
        assert "pandas" in panel.message.value
        wait_until(lambda: failures["left"] == 0, "the pump to try again")
        wait_until(lambda: "error, recovering" not in panel.header.value, "the recovery", 15)
        assert panel.running
        assert panel.counts.data[0]["y"][3] == 3  # COMPLETED, from the queues snapshot
        assert "recovered" in panel.message.value
    finally:
        panel.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_start_revives_a_feed_whose_thread_died() -> None:
    panel = ControlPanel(QuietClient(), autostart=False, refresh_hz=20)
    real = panel.render_due

    def fatal(now: float) -> float | None:
        raise SystemExit("a thread-ending error")  # not an Exception: the pump thread ends

    panel.render_due = fatal  # type: ignore[method-assign]
    panel.start()
    wait_until(lambda: not panel.running, "the pump thread to die")
    panel.render_due = real  # type: ignore[method-assign]
    panel.start()
    try:
        assert panel.running
        before = panel.renders
        wait_until(lambda: panel.renders > before + 2, "redraws from the new feed")
    finally:
        panel.stop()


# --------------------------------------------------------------------------- contradictions


def test_stop_says_stopped_and_start_forgets_it() -> None:
    panel = ControlPanel(QuietClient(), refresh_hz=20)
    wait_until(lambda: panel.workers_table.rows, "the first snapshots")
    panel.stop()
    assert "Feed <b style='color:#616161'>stopped</b>" in panel.header.value
    assert "reconnecting" not in panel.header.value
    assert "stopped" in panel.message.value
    panel.start()
    try:
        assert "stopped" not in panel.message.value
        assert "stopped" not in panel.header.value
    finally:
        panel.stop()


def test_an_unreachable_server_leaves_nothing_claimed() -> None:
    """The server's own answer is none at all: a real SDK client on a port nobody serves."""
    client = Client(f"http://127.0.0.1:{free_port()}", max_retries=0, timeout=2)
    panel = ControlPanel(client, autostart=False)
    panel.apply_snapshot("health", HEALTHY)
    panel.apply_snapshot("workers", TWO_WORKERS)
    panel.refresh()
    assert "2/2" in panel.header.value
    try:
        client.queues()
    except Exception as exc:
        panel.snapshot_failed(Want.QUEUES, exc)
    else:
        pytest.fail("a port nobody serves answered")
    panel.refresh()
    text = panel.header.value
    assert "unreachable" in text and "2/2" not in text and "healthy" not in text
    assert {r["status"] for r in panel.workers_table.rows} == {"unknown"}
    panel.apply_snapshot("health", HEALTHY)
    panel.refresh()
    assert "healthy" in panel.header.value and "unreachable" not in panel.header.value
    client.close()


def test_the_openrouter_card_tells_the_key_check_from_the_calls() -> None:
    """The monitor's answer during an outage: the cached key check says the key works while
    121 calls failed in a row and the breaker counted 5 toward opening."""
    state = PanelState()
    state.apply_openrouter(
        {
            "status": "active",
            "message": "reachable, key works",
            "consecutive_failures": 121,
            "usage": 0.0,
            "usage_today": 0.0,
            "budget": {"daily_usd": None, "spent_today_usd": 0.9, "remaining_usd": None},
            "breaker": {"state": "open", "failure_count": 5},
        }
    )
    card = openrouter_html(state)
    assert "Key check" in card and "reachable, key works" in card
    assert "the last 121 failed in a row" in card
    assert "Consecutive failures" not in card
    assert "$0.9000 metered" in card  # the key's reported usage lags: the card says so
    assert state.breaker.failure_count == 5


def test_the_workers_table_says_its_failures_are_attempts() -> None:
    assert dict(WORKER_COLUMNS)["failed"] == "Failed attempts"


class FinishedRun:
    """A finished BatchRun as the panel reads it: tasks, name, start and end."""

    def __init__(self, n: int, started_at: float | None, finished_at: float | None) -> None:
        self.tasks = [_Task(f"t{i}", "COMPLETED") for i in range(n)]
        self.name: str | None = None
        self.started_at = started_at
        self.finished_at = finished_at


class _Task:
    def __init__(self, task_id: str, state: str) -> None:
        self.task_id = task_id
        self.state = state


def test_a_batch_finished_before_the_panel_shows_its_own_time_or_none() -> None:
    client = QuietClient()
    timed = FinishedRun(4, started_at=1_000.0, finished_at=1_012.5)
    untimed = FinishedRun(3, started_at=None, finished_at=None)
    client.batch_runs = [timed, untimed]
    panel = ControlPanel(client, autostart=False)
    panel.refresh()
    bars = [w.value for w in panel.batches.children]
    assert "4/4 finished" in bars[0] and "12.5 s" in bars[0]
    assert "3/3 finished" in bars[1] and " s ·" not in bars[1] and "0.0 s" not in bars[1]


def test_watch_after_the_panel_picked_the_run_up_renames_one_row() -> None:
    """The race of issue 19: the panel picks up ``client.batch_runs`` as "batch 1", then
    ``watch(run, name=...)`` must rename that row, not add a second that never moves."""
    client = QuietClient()
    run = FinishedRun(0, started_at=None, finished_at=None)
    run.tasks = [_Task(f"t{i}", "PENDING") for i in range(40)]
    client.batch_runs = [run]
    panel = ControlPanel(client, autostart=False)
    panel.refresh()
    assert list(panel.state.batches) == ["batch 1"]
    panel.watch(run, name="40 texts")
    panel.refresh()
    assert list(panel.state.batches) == ["40 texts"]
    assert len(panel.batches.children) == 1
    for i in range(40):
        panel.ingest(
            {"id": f"{i}", "type": "task_state_changed", "task_id": f"t{i}",
             "old_state": "PENDING", "state": "COMPLETED"}
        )  # fmt: skip
    panel.refresh()
    assert "40/40 finished" in panel.batches.children[0].value
    assert "40 texts" in panel.batches.children[0].value


def test_two_runs_with_one_name_get_two_rows() -> None:
    client = QuietClient()
    a, b = FinishedRun(2, None, None), FinishedRun(3, None, None)
    a.name = b.name = "nightly"
    client.batch_runs = [a, b]
    panel = ControlPanel(client, autostart=False)
    panel.refresh()
    assert list(panel.state.batches) == ["nightly", "nightly (2)"]


# --------------------------------------------------------------------------- charts


def test_count_axes_are_integers_from_zero() -> None:
    state = PanelState()
    state.apply_queues({"queues": {"primary": 2}, "states": {"COMPLETED": 3}})
    spec = counts_spec(state)
    axis = spec["layout"]["yaxis"]
    assert axis["tickformat"] == ",d" and axis["rangemode"] == "tozero" and axis["dtick"] == 1
    empty = counts_spec(PanelState())["layout"]["yaxis"]
    assert empty["range"] == [0, 1]


def test_a_zero_cost_axis_sits_at_zero() -> None:
    state = PanelState()
    state.apply_metrics({"metrics": {"2026-12-01": {"total_calls": 3, "successful_calls": 3}}})
    cost_axis = metrics_spec(state)["layout"]["yaxis3"]
    assert cost_axis["range"] == [0, 1] and cost_axis["tickprefix"] == "$"
    state.apply_metrics({"metrics": {"2026-12-01": {"cost": 0.9}}})
    assert metrics_spec(state)["layout"]["yaxis3"]["range"][0] == 0
    assert metrics_spec(state)["layout"]["yaxis3"]["range"][1] > 0.9


def test_the_timeline_follows_a_short_batch() -> None:
    """A 20 s batch in a 5-minute window fills the chart instead of a few pixels of it."""
    state = PanelState(window_seconds=300, resolution=1)
    t0 = 10_000.0
    for second in range(120):  # two idle minutes, then 20 s of work, then idle
        busy = 100 <= second < 120
        state.depths.default = 40 - 2 * (second - 100) if busy else 0
        state.sample(t0 + second)
    now = t0 + 125
    spec = timeline_spec(state, now)
    start, end = (v / 1000.0 for v in spec["layout"]["xaxis"]["range"])
    assert end == now
    assert now - start <= 30.0  # the batch began 25 s ago
    assert start <= t0 + 100
    assert timeline_range([], [], now, 300) == (now - 60, now)


class StatusClient(QuietClient):
    """Answers ``statuses`` as the server would: every asked task COMPLETED."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def statuses(self, task_ids: list[str]) -> list[dict[str, Any]]:
        self.asked.append(list(task_ids))
        return [{"task_id": t, "state": "COMPLETED"} for t in task_ids]


def test_a_batch_whose_events_were_missed_catches_up_from_the_server() -> None:
    """A run picked up after its tasks finished (no events will come for them) still ends
    finished: the feed asks the server where the watched, unfinished tasks stand."""
    client = StatusClient()
    run = FinishedRun(0, started_at=None, finished_at=None)
    run.tasks = [_Task(f"t{i}", "PENDING") for i in range(40)]
    client.batch_runs = [run]
    panel = ControlPanel(client, refresh_hz=20)
    try:
        wait_until(
            lambda: panel.batches.children and "40/40 finished" in panel.batches.children[0].value,
            "the batch row to catch up",
        )
        assert sorted(client.asked[0]) == sorted(f"t{i}" for i in range(40))
        assert panel.batch_task_ids() == []  # a finished batch is not asked about again
    finally:
        panel.stop()
