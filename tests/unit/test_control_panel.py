"""The ControlPanel's logic without a kernel or a server: recorded events in, traits and figure
data out; buttons call the right SDK methods (on a recording fake client)."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")
pytest.importorskip("plotly")

from support import eventually, wait_until
from taskflow_sdk.models import Event
from taskflow_sdk.widgets import ControlPanel
from taskflow_sdk.widgets.cards import header_html, openrouter_html
from taskflow_sdk.widgets.progress import batch_progress_widget, progress_html
from taskflow_sdk.widgets.protocol import (
    MSG_BREAKER_OPEN,
    MSG_BREAKER_RESET,
    MSG_TABLE_ACTION,
    STATES,
)
from taskflow_sdk.widgets.state import Dirty

RECORDED = Path(__file__).parent / "data" / "recorded_events.jsonl"
DLQ_ID = "01a22590012a000002d6cab1d5"


def recorded() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDED.read_text().splitlines() if line.strip()]


QUEUES = {
    "queues": {
        "primary": 0,
        "retry": 0,
        "scheduled": 0,
        "dlq": 1,
        "active": 0,
        "primary_by_priority": {"high": 0, "default": 0, "low": 0},
    },
    "states": {"COMPLETED": 4, "DLQ": 1},
}
WORKERS = {
    "worker_details": [{"worker_id": "w1", "status": "healthy", "heartbeat_age": 0.5}],
    "circuit_breaker": {"state": "closed"},
}
HEALTH = {"status": "healthy", "components": {"redis": {"status": "healthy", "latency_ms": 0.3}}}
OPENROUTER = {"status": "api_key_missing", "provider": "offline"}
METRICS = {"metrics": {"2026-11-29": {"total_calls": 2, "successful_calls": 2}}, "days": 7}
DLQ = [{"task_id": DLQ_ID, "state": "DLQ", "task_type": "demo.fail", "error_type": "invalid_input"}]


class Recorder:
    """Remembers every SDK call by name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def record(self, name: str, *args: Any) -> None:
        with self.lock:
            self.calls.append((name, args))

    def names(self) -> list[str]:
        with self.lock:
            return [n for n, _ in self.calls]


class FakeStream:
    """An event iterator with the SDK stream's thread-safe close()."""

    def __init__(self, events: list[dict[str, Any]], hold: bool) -> None:
        self._events = list(events)
        self._hold = hold
        self._closed = threading.Event()
        self.connected = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.connected.set()
        for event in self._events:
            if self._closed.is_set():
                return
            yield event
        if self._hold:
            self._closed.wait()  # like a live stream: nothing more until closed

    def close(self) -> None:
        self._closed.set()


class FakeClient:
    """The sync Client surface the panel uses, answering canned snapshots."""

    base_url = "http://fake"

    def __init__(self, events: list[dict[str, Any]] | None = None, fail_first: int = 0) -> None:
        self.rec = Recorder()
        self.events_to_send = events or []
        self.fail_first = fail_first
        self.breaker = FakeBreaker(self.rec)
        self.openrouter = FakeOpenRouter(self.rec)

    def events(self, last_event_id: str | None = None) -> FakeStream:
        self.rec.record("events", last_event_id)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("server down")
        sent = [e for e in self.events_to_send if last_event_id is None or e["id"] > last_event_id]
        return FakeStream(sent, hold=True)

    def queues(self) -> dict[str, Any]:
        self.rec.record("queues")
        return QUEUES

    def workers(self) -> dict[str, Any]:
        self.rec.record("workers")
        return WORKERS

    def health(self) -> dict[str, Any]:
        self.rec.record("health")
        return HEALTH

    def dlq(self, limit: int = 100) -> list[dict[str, Any]]:
        self.rec.record("dlq", limit)
        return DLQ

    def retry(self, task_id: str, reset_retry_count: bool = False) -> dict[str, Any]:
        self.rec.record("retry", task_id)
        return {"task_id": task_id, "state": "PENDING"}

    def delete(self, task_id: str) -> None:
        self.rec.record("delete", task_id)


class FakeBreaker:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def open(self, reason: str | None = None) -> dict[str, Any]:
        self.rec.record("breaker.open", reason)
        return {"state": "open", "held": True, "reason": reason}

    def reset(self) -> dict[str, Any]:
        self.rec.record("breaker.reset")
        return {"state": "closed"}

    def status(self) -> dict[str, Any]:
        self.rec.record("breaker.status")
        return {"state": "closed"}


class FakeOpenRouter:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def status(self, force_refresh: bool = False) -> dict[str, Any]:
        self.rec.record("openrouter.status")
        return OPENROUTER

    def metrics(self, days: int = 7) -> dict[str, Any]:
        self.rec.record("openrouter.metrics", days)
        return METRICS


# --------------------------------------------------------------------------- no feed


def test_recorded_events_update_traits_and_figures() -> None:
    panel = ControlPanel(FakeClient(), autostart=False)
    panel.ingest_many(recorded())
    panel.refresh()
    counts = dict(zip(STATES, panel.counts.data[0]["y"], strict=True))
    assert counts["COMPLETED"] == 4 and counts["DLQ"] == 1
    dlq_series = panel.timeline.data[5]
    assert dlq_series["name"] == "DLQ" and dlq_series["y"][-1] == 1
    assert len(panel.timeline.data[0]["x"]) >= 2  # a sample, extended to now
    assert [r["task_id"] for r in panel.dlq_table.rows] == [DLQ_ID]
    assert panel.dlq_table.rows[0]["error_type"] == "invalid_input"
    assert "live · 22 events" in panel.header.value


def test_snapshots_update_workers_health_openrouter_metrics() -> None:
    panel = ControlPanel(FakeClient(), autostart=False)
    panel.apply_snapshot("workers", WORKERS)
    panel.apply_snapshot("health", HEALTH)
    panel.apply_snapshot("openrouter", OPENROUTER)
    panel.apply_snapshot("metrics", METRICS)
    panel.apply_snapshot("dlq", DLQ)
    panel.refresh()
    assert panel.workers_table.rows[0]["worker_id"] == "w1"
    assert panel.workers_table.rows[0]["heartbeat"] == "0.5 s"
    assert "Workers online" in panel.header.value and "1/1" in panel.header.value
    assert "offline" in panel.header.value
    assert "api_key_missing" in panel.openrouter.value
    assert panel.lamp.state == "closed"
    assert panel.metrics.data[0]["name"] == "successes"
    assert panel.metrics.data[0]["y"] == [2]
    assert panel.dlq_table.rows[0]["task_type"] == "demo.fail"


def test_lamp_buttons_call_the_breaker() -> None:
    client = FakeClient()
    panel = ControlPanel(client, autostart=False)
    panel.lamp.handle_message({"type": MSG_BREAKER_OPEN})
    panel.wait_actions()
    assert client.rec.names() == ["breaker.open"]
    assert panel.lamp.state == "open" and panel.lamp.held
    assert not panel.lamp.busy
    panel.lamp.handle_message({"type": MSG_BREAKER_RESET})
    panel.wait_actions()
    assert client.rec.names() == ["breaker.open", "breaker.reset"]
    assert panel.lamp.state == "closed"
    panel.lamp.handle_message({"type": "something else"})
    panel.wait_actions()
    assert len(client.rec.calls) == 2


def test_dlq_buttons_retry_and_delete_each_task() -> None:
    client = FakeClient()
    panel = ControlPanel(client, autostart=False)
    panel.apply_snapshot("dlq", [*DLQ, {"task_id": "t2", "state": "DLQ"}])
    panel.refresh()
    table = panel.dlq_table
    table.handle_message({"type": MSG_TABLE_ACTION, "action": "retry", "ids": [DLQ_ID]})
    panel.wait_actions()
    assert client.rec.calls == [("retry", (DLQ_ID,))]
    assert [r["task_id"] for r in table.rows] == ["t2"]  # removed at once
    assert "retried 1 task(s)" in panel.message.value
    table.handle_message({"type": MSG_TABLE_ACTION, "action": "delete", "ids": ["t2", "t3"]})
    panel.wait_actions()
    assert client.rec.calls[1:] == [("delete", ("t2",)), ("delete", ("t3",))]
    assert table.rows == []
    table.handle_message({"type": MSG_TABLE_ACTION, "action": "drop_table", "ids": ["x"]})
    panel.wait_actions()
    assert len(client.rec.calls) == 3  # unknown actions are ignored


def test_a_failing_action_says_why() -> None:
    client = FakeClient()

    def boom(reason: str | None = None) -> None:
        raise RuntimeError("no route to breaker")

    client.breaker.open = boom  # type: ignore[method-assign,assignment]
    panel = ControlPanel(client, autostart=False)
    panel.lamp.handle_message({"type": MSG_BREAKER_OPEN})
    panel.wait_actions()
    assert "no route to breaker" in panel.message.value
    assert not panel.lamp.busy


def test_a_burst_is_redrawn_at_most_refresh_hz_times_a_second() -> None:
    panel = ControlPanel(FakeClient(), autostart=False, refresh_hz=4)
    base = panel.renders
    events = recorded()
    now = 1000.0
    # 10,000 events over one simulated second; the pump asks for a redraw after each.
    for i in range(10_000):
        panel.ingest(events[i % len(events)])
        panel.render_due(now + i / 10_000)
    assert panel.renders - base <= 5  # 4 per second (+1 for the slot at t=0)


def test_render_due_reports_when_a_redraw_is_pending() -> None:
    panel = ControlPanel(FakeClient(), autostart=False, refresh_hz=2)
    assert panel.render_due(100.0) is None  # first redraw happens now
    panel.ingest(recorded()[0])
    pending = panel.render_due(100.1)
    assert pending == pytest.approx(0.4)
    assert panel.render_due(100.6) is None


def test_batch_runs_are_watched() -> None:
    class Task:
        def __init__(self, task_id: str, state: str) -> None:
            self.task_id, self.state = task_id, state

    class Run:
        name = "archive"
        tasks = [Task("a", "PENDING"), Task("b", "COMPLETED")]

    client = FakeClient()
    client.batch_runs = [Run()]  # type: ignore[attr-defined]
    panel = ControlPanel(client, autostart=False)
    panel.refresh()
    info = panel.state.batches["archive"]
    assert info.total == 2 and info.count("COMPLETED") == 1
    panel.ingest(
        {
            "type": "task_state_changed",
            "task_id": "a",
            "old_state": "PENDING",
            "state": "COMPLETED",
            "id": "9-0",
        }
    )
    panel.refresh()
    assert info.done
    html = panel.batches.children[0].value
    assert "2/2 finished" in html and "archive" in html


def test_progress_widget_for_a_batch_run() -> None:
    class Run:
        name = "texts"
        task_ids = ["a", "b", "c", "d"]

    view = batch_progress_widget(Run())
    assert view.total == 4
    view.update({"COMPLETED": 2, "DLQ": 1, "ACTIVE": 1})
    assert "3/4 finished" in view.widget.value and "1 failed" in view.widget.value
    view.close("done")
    assert "done" in view.widget.value
    assert "0/0 finished" in progress_html("x", {}, 0)


def test_header_and_openrouter_html_escape_and_show_state() -> None:
    panel = ControlPanel(FakeClient(), autostart=False)
    panel.state.apply_openrouter(
        {
            "status": "active",
            "message": "<b>ok</b>",
            "limit": 10,
            "limit_remaining": 4,
            "limiter": {"utilisation": 0.25},
        }
    )
    text = openrouter_html(panel.state)
    assert "&lt;b&gt;ok&lt;/b&gt;" in text and "25%" in text and "$4.0000 left" in text
    panel.state.set_connected(False, "down")
    assert "reconnecting" in header_html(panel.state)


def test_async_client_needs_a_running_loop() -> None:
    class AsyncFake:
        async def queues(self) -> None: ...

    with pytest.raises(RuntimeError, match="running event loop"):
        ControlPanel(AsyncFake())


def lifecycle_events(tasks: int) -> Iterator[Event]:
    """SDK events of ``tasks`` tasks that are created, run and complete (3 each)."""
    now = time.time()
    for i in range(tasks):
        task_id = f"task-{i:08d}"
        moves = ((None, "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "COMPLETED"))
        for step, (old, new) in enumerate(moves):
            frame = {
                "id": f"{i}-{step}",
                "type": "task_created" if old is None else "task_state_changed",
                "task_id": task_id,
                "old_state": old,
                "state": new,
                "ts": now,
            }
            yield Event.model_validate(frame)


def test_events_leave_nothing_for_the_garbage_collector() -> None:
    """Why the panel needs no ``gc.freeze()``: applying and drawing a burst of events keeps no
    new objects the collector tracks, so the burst triggers no full collection (which would
    rescan the ~160,000 objects plotly leaves in a kernel)."""
    panel = ControlPanel(FakeClient(), autostart=False, refresh_hz=4)
    panel.ingest_many(recorded())  # the first draw of every part imports what it needs
    panel.refresh()
    panel.ingest_many(lifecycle_events(100))
    panel.refresh()
    gc.collect()
    before = len(gc.get_objects())
    now = 1000.0
    for n, event in enumerate(lifecycle_events(3000)):
        panel.ingest(event)
        if n % 500 == 0:
            now += 0.25
            panel.render_due(now)
    panel.refresh()
    gc.collect()
    assert panel.state.counts["COMPLETED"] == 3104
    assert len(gc.get_objects()) - before < 100  # not one per event (there were 9,000)


# --------------------------------------------------------------------------- live feed


def test_a_running_panel_leaves_the_garbage_collector_alone() -> None:
    before = (gc.get_freeze_count(), gc.get_threshold(), gc.isenabled())
    panel = ControlPanel(FakeClient(recorded()), refresh_hz=20)
    try:
        assert panel.running
        wait_until(lambda: panel.state.feed.events == 22, "the 22 recorded events")
        assert (gc.get_freeze_count(), gc.get_threshold(), gc.isenabled()) == before
    finally:
        panel.stop()
    assert gc.get_freeze_count() == before[0]


def test_thread_feed_reads_events_and_snapshots_and_stops() -> None:
    client = FakeClient(recorded())
    panel = ControlPanel(client, refresh_hz=20)
    try:
        wait_until(lambda: panel.state.feed.events == 22, "the 22 recorded events")
        wait_until(
            lambda: {"queues", "workers", "health", "dlq"} <= set(client.rec.names()),
            "the first snapshot reads",
        )
        wait_until(
            lambda: panel.dlq_table.rows and panel.lamp.state == "closed",
            "the DLQ table and the lamp to be drawn",
        )
        assert panel.running
    finally:
        started = time.monotonic()
        panel.stop()
    assert time.monotonic() - started < 2.0
    assert not panel.running
    feed_threads = ("taskflow-panel-events", "taskflow-panel-pump")
    alive = [t.name for t in threading.enumerate() if t.name in feed_threads]
    assert alive == []


def test_thread_feed_reconnects_after_the_stream_fails() -> None:
    client = FakeClient(recorded(), fail_first=1)
    panel = ControlPanel(client, refresh_hz=20)
    try:
        wait_until(lambda: panel.state.feed.events == 22, "the events after a reconnect")
        assert client.rec.names().count("events") == 2
        assert panel.state.feed.connected
    finally:
        panel.stop()


class AsyncFakeClient:
    """The AsyncClient surface (coroutines, an async event iterator)."""

    base_url = "http://fake-async"

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.sync = FakeClient(events)
        self.rec = self.sync.rec
        self.breaker = _AsyncProxy(self.sync.breaker)
        self.openrouter = _AsyncProxy(self.sync.openrouter)

    def events(self, last_event_id: str | None = None) -> Any:
        stream = self.sync.events(last_event_id)

        class Stream:
            def __aiter__(self) -> Any:
                return self._gen()

            async def _gen(self) -> Any:
                for event in stream._events:
                    yield event
                await asyncio.Event().wait()  # live: nothing more

            async def aclose(self) -> None:
                stream.close()

        return Stream()

    async def queues(self) -> Any:
        return self.sync.queues()

    async def workers(self) -> Any:
        return self.sync.workers()

    async def health(self) -> Any:
        return self.sync.health()

    async def dlq(self, limit: int = 100) -> Any:
        return self.sync.dlq(limit)

    async def retry(self, task_id: str) -> Any:
        return self.sync.retry(task_id)

    async def delete(self, task_id: str) -> Any:
        return self.sync.delete(task_id)


class _AsyncProxy:
    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


async def test_async_feed_runs_on_the_loop_and_buttons_schedule_tasks() -> None:
    client = AsyncFakeClient(recorded())
    panel = ControlPanel(client, refresh_hz=20)
    try:
        await eventually(
            lambda: panel.state.feed.events == 22 and "queues" in client.rec.names(),
            "the 22 recorded events and the first queues read",
        )
        panel.lamp.handle_message({"type": MSG_BREAKER_OPEN})
        await panel.wait_actions_async()
        assert "breaker.open" in client.rec.names()
        assert panel.lamp.state == "open"
        panel.dlq_table.handle_message(
            {"type": MSG_TABLE_ACTION, "action": "retry", "ids": [DLQ_ID]}
        )
        await panel.wait_actions_async()
        assert ("retry", (DLQ_ID,)) in client.rec.calls
    finally:
        panel.stop()
    assert not panel.running

    def feed_tasks() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("taskflow-panel")]

    await eventually(lambda: not feed_tasks(), "the feed's tasks to end")
    assert panel.state.feed.connected is False
    assert Dirty(0) == Dirty.NONE


def test_panel_shows_spend_budget_and_the_hold_next_to_the_lamp() -> None:
    from taskflow_sdk.widgets.cards import budget_html

    panel = ControlPanel(FakeClient(), autostart=False)
    now = time.time()
    status = {
        "status": "active",
        "provider": "openrouter",
        "hold": {
            "reason": "budget",
            "since": now,
            "until": None,
            "seconds_left": None,
            "message": "daily budget reached",
        },
        "budget": {"daily_usd": 5.0, "spent_today_usd": 0.42, "remaining_usd": 4.58},
    }
    panel.apply_snapshot("openrouter", status, read_at=now)
    panel.refresh()
    assert "$0.42 today / $5.00 budget" in panel.budget.value
    assert "on hold: budget · until lifted — daily budget reached" in panel.budget.value
    assert "$0.42 today / $5.00 budget" in panel.openrouter.value
    assert panel.lamp.hold == "budget" and panel.lamp.hold_until_ms == 0.0
    panel.ingest(
        {
            "type": "breaker_state_changed",
            "state": "open",
            "reason": "key_limit",
            "hold_until": now + 90,
        }
    )
    panel.refresh()
    assert panel.lamp.state == "open" and panel.lamp.hold == "key_limit"
    assert panel.lamp.hold_until_ms == pytest.approx((now + 90) * 1000.0)
    assert "key_limit" in budget_html(panel.state, now) and "1 min 30 s left" in budget_html(
        panel.state, now
    )
    panel.ingest({"type": "breaker_state_changed", "state": "closed", "reason": "reset"})
    panel.refresh()
    assert panel.lamp.hold == "" and "on hold" not in panel.budget.value


def test_batch_progress_html_shows_cost_eta_and_hold() -> None:
    line = progress_html("batch", {"COMPLETED": 4, "PENDING": 6}, 10, 8.0, cost=0.0123, eta=95.0)
    assert "$0.0123 spent" in line and "about 1 min 35 s left" in line
    held = progress_html(
        "batch", {"COMPLETED": 4, "HELD": 6}, 10, 8.0, "held: budget $0.25 reached", cost=0.4
    )
    assert "6 held" in held and "held: budget $0.25 reached" in held and "left" not in held
    view = batch_progress_widget(name="b")
    view.update({"COMPLETED": 1}, total=2, cost=0.5, eta=3.0)
    assert "$0.5000 spent" in view.widget.value and "about 3 s left" in view.widget.value
