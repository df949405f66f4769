"""The control panel's pure state: events and snapshots in, numbers and dirty flags out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from taskflow_sdk.models import BreakerStatus, Event, Metrics, TaskList, TaskState, WorkerList
from taskflow_sdk.widgets.feed import RefreshPolicy
from taskflow_sdk.widgets.protocol import FAILED_STATES, FINISHED_STATES, STATES
from taskflow_sdk.widgets.state import Dirty, PanelState, Want

RECORDED = Path(__file__).parent / "data" / "recorded_events.jsonl"
"""Frames of GET /api/v1/events recorded from a real server: 4 demo.sleep tasks complete, two
demo.fail tasks go to the DLQ, one is retried (and fails again), the other is deleted."""


def recorded() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDED.read_text().splitlines() if line.strip()]


def test_recorded_events_give_the_servers_final_counts() -> None:
    state = PanelState()
    dirty = state.apply_many(recorded())
    assert state.counts["COMPLETED"] == 4
    assert state.counts["DLQ"] == 1
    assert sum(state.counts.values()) == 5
    assert state.depths.values() == (0, 0, 0, 0, 0, 1, 0)
    assert list(state.dlq) == ["01a22590012a000002d6cab1d5"]
    assert state.dlq["01a22590012a000002d6cab1d5"].error_type == "invalid_input"
    assert state.feed.events == 22
    assert state.feed.last_event_id == "1795926527232-0"
    assert dirty & Dirty.COUNTS and dirty & Dirty.TIMELINE and dirty & Dirty.DLQ
    assert state.wants & Want.QUEUES and state.wants & Want.DLQ and state.wants & Want.METRICS


def test_sdk_event_models_work_like_dicts() -> None:
    state = PanelState()
    state.apply_many(Event.model_validate(frame) for frame in recorded())
    assert state.counts["COMPLETED"] == 4
    assert state.dlq["01a22590012a000002d6cab1d5"].error_type == "invalid_input"


def test_each_event_type_sets_the_right_flags() -> None:
    state = PanelState()
    created = state.apply({"type": "task_created", "task_id": "a", "state": "PENDING"})
    assert created == Dirty.FEED | Dirty.COUNTS | Dirty.TIMELINE
    assert state.depths.default == 1
    progress = state.apply({"type": "task_progress", "task_id": "a", "state": "ACTIVE"})
    assert progress == Dirty.FEED
    to_dlq = state.apply(
        {"type": "task_state_changed", "task_id": "a", "old_state": "PENDING", "state": "DLQ"}
    )
    assert to_dlq & Dirty.DLQ
    assert state.depths.dlq == 1 and state.depths.default == 0
    back = state.apply(
        {"type": "task_state_changed", "task_id": "a", "old_state": "DLQ", "state": "PENDING"}
    )
    assert back & Dirty.DLQ and not state.dlq
    assert state.depths.retry == 1  # a re-queued task waits on the retry queue
    unknown = state.apply({"type": "something_new", "task_id": "a"})
    assert unknown == Dirty.FEED


def test_priority_of_a_created_task_is_used_when_the_event_has_it() -> None:
    state = PanelState()
    state.apply({"type": "task_created", "task_id": "a", "state": "PENDING", "priority": "high"})
    state.apply({"type": "task_created", "task_id": "b", "state": "PENDING", "priority": "low"})
    assert (state.depths.high, state.depths.default, state.depths.low) == (1, 0, 1)


def test_counts_never_go_negative() -> None:
    state = PanelState()
    state.apply({"type": "task_deleted", "task_id": "x", "old_state": "COMPLETED"})
    assert state.counts["COMPLETED"] == 0


def test_events_lost_wants_every_snapshot() -> None:
    state = PanelState()
    state.wants = Want.NONE
    state.apply({"type": "events_lost", "message": "trimmed"})
    assert state.wants == Want.ALL
    assert state.feed.message is not None


def test_queue_snapshot_replaces_estimates_and_fences_older_events() -> None:
    state = PanelState()
    snapshot = {
        "queues": {
            "primary": 5,
            "retry": 1,
            "scheduled": 2,
            "dlq": 3,
            "active": 4,
            "primary_by_priority": {"high": 1, "default": 3, "low": 1},
        },
        "states": {"PENDING": 6, "ACTIVE": 4, "SCHEDULED": 2, "DLQ": 3, "COMPLETED": 10},
    }
    dirty = state.apply_queues(snapshot, read_at=1000.0)
    assert dirty & Dirty.COUNTS and dirty & Dirty.TIMELINE
    assert state.depths.values() == (1, 3, 1, 1, 2, 3, 4)
    assert state.counts["COMPLETED"] == 10
    # An event older than the snapshot arrives late: the snapshot already counted it.
    old = {"type": "task_created", "task_id": "o", "state": "PENDING", "ts": 999.0}
    assert not state.apply(old) & Dirty.COUNTS
    assert state.counts["PENDING"] == 6
    new = {"type": "task_created", "task_id": "n", "state": "PENDING", "ts": 1001.0}
    assert state.apply(new) & Dirty.COUNTS
    assert state.counts["PENDING"] == 7
    assert state.apply_queues(snapshot, read_at=1002.0) & Dirty.COUNTS  # back to the truth


def test_workers_snapshot_in_both_shapes_and_its_breaker() -> None:
    raw = {
        "worker_details": [
            {
                "worker_id": "w1",
                "worker_name": "w1",
                "status": "healthy",
                "last_heartbeat": 1000.0,
                "heartbeat_age": 1.5,
                "active": 2,
                "completed": 7,
                "failed": 1,
                "concurrency": 10,
                "circuit_breaker": {"state": "open"},
            },
            {"worker_id": "w2", "status": "stale", "circuit_breaker": {"state": "open"}},
        ],
        "circuit_breaker": {"state": "open", "failure_count": 5, "seconds_to_half_open": 12.0},
    }
    for data in (raw, WorkerList.model_validate(raw)):
        state = PanelState()
        dirty = state.apply_workers(data, now=2000.0)
        assert dirty & Dirty.WORKERS and dirty & Dirty.HEALTH and dirty & Dirty.BREAKER
        assert [w.worker_id for w in state.workers] == ["w1", "w2"]
        assert state.workers[0].completed == 7 and state.workers[0].heartbeat_age == 1.5
        assert (state.health.workers_total, state.health.workers_healthy) == (2, 1)
        assert state.breaker.state == "open"
        assert state.breaker.failure_count == 5
        assert state.breaker.half_open_at == pytest.approx(2012.0)


def test_breaker_events_move_the_lamp_and_ask_for_the_details() -> None:
    state = PanelState()
    state.apply_breaker({"state": "closed"}, now=1.0)
    state.wants = Want.NONE
    opened = Event.model_validate(
        {"id": "5-0", "type": "breaker_state_changed", "state": "open", "old_state": "closed",
         "ts": 5.0, "breaker": "openrouter", "reason": "consecutive_failures"}
    )  # fmt: skip
    assert state.apply(opened) & Dirty.BREAKER
    assert state.breaker.state == "open" and state.breaker.reason == "consecutive_failures"
    assert state.wants & Want.WORKERS  # the countdown comes with the next workers read
    assert state.breaker_changes[-1] == (5.0, "open")
    assert not state.apply(opened) & Dirty.BREAKER  # a repeat changes nothing
    assert state.counts == PanelState().counts  # no task counter moved


def test_a_breaker_event_says_whether_it_is_held_until_reset() -> None:
    # The event can reach the panel before the open button's own answer: it must show "held".
    state = PanelState()
    state.apply_breaker({"state": "closed"}, now=1.0)
    manual = {"type": "breaker_state_changed", "state": "open", "reason": "manual"}
    assert state.apply({**manual, "open_until": "0"}) & Dirty.BREAKER
    assert state.breaker.held
    timed = {**manual, "reason": "consecutive_failures", "open_until": "1765000030000"}
    state.apply(timed)
    assert state.breaker.state == "open" and not state.breaker.held
    state.apply({**manual, "open_until": "0"})
    assert state.breaker.held
    state.apply({"type": "breaker_state_changed", "state": "closed", "reason": ""})
    assert not state.breaker.held


def test_breaker_changes_are_remembered_and_repeats_are_not_dirty() -> None:
    state = PanelState()
    status = BreakerStatus(state="open", held=True, reason="manual")
    assert state.apply_breaker(status, now=1.0) == Dirty.BREAKER
    assert state.apply_breaker(status, now=2.0) == Dirty.NONE
    assert state.breaker.held and state.breaker.reason == "manual"
    state.apply_breaker({"state": "half_open"}, now=3.0)
    state.apply_breaker({"breaker": {"state": "closed"}}, now=4.0)  # an action's answer
    assert [s for _, s in state.breaker_changes] == ["open", "half-open", "closed"]


def test_dlq_snapshot_fills_row_details() -> None:
    state = PanelState()
    state.apply(
        {"type": "task_state_changed", "task_id": "t", "old_state": "ACTIVE", "state": "DLQ"}
    )
    assert not state.dlq["t"].loaded
    tasks = TaskList.model_validate(
        {
            "tasks": [
                {
                    "task_id": "t",
                    "state": "DLQ",
                    "task_type": "summarize",
                    "error_type": "auth",
                    "last_error": "401",
                    "retry_count": 0,
                    "max_retries": 3,
                    "dlq_at": "2026-11-29T10:00:00Z",
                }
            ]
        }
    )
    assert state.apply_dlq(tasks) & Dirty.DLQ
    row = state.dlq["t"]
    assert row.loaded and row.task_type == "summarize" and row.error_type == "auth"
    assert row.dlq_at is not None
    assert state.apply_dlq([]) & Dirty.DLQ and not state.dlq


def test_health_openrouter_and_metrics() -> None:
    state = PanelState()
    health = {
        "status": "healthy",
        "components": {
            "redis": {"status": "healthy", "latency_ms": 0.4},
            "workers": {"status": "healthy", "total": 2, "healthy": 2},
        },
        "note": "offline LLM provider (no OPENROUTER_API_KEY)",
    }
    assert state.apply_health(health) & Dirty.HEALTH
    assert state.health.redis_latency_ms == 0.4 and state.health.workers_total == 2
    assert state.health.provider == "offline"
    status = {
        "status": "active",
        "provider": "openrouter",
        "limit": 10.0,
        "limit_remaining": 7.5,
        "usage": 2.5,
        "limiter": {"rate": "230/10s", "utilisation": 0.4, "in_flight": 3, "max_in_flight": 64},
        "breaker": {"state": "closed"},
    }
    dirty = state.apply_openrouter(status, now=0.0)
    assert dirty & Dirty.OPENROUTER and dirty & Dirty.HEALTH and dirty & Dirty.BREAKER
    assert state.health.provider == "openrouter"
    assert state.openrouter.utilisation == 0.4 and state.openrouter.rate == "230/10s"
    assert state.openrouter.limit_remaining == 7.5
    metrics = Metrics.model_validate(
        {
            "metrics": {
                "2026-11-29": {
                    "total_calls": 5,
                    "successful_calls": 3,
                    "failed_calls": 2,
                    "failures_by_class": {"unavailable": 2},
                    "cost": 0.01,
                },
                "2026-11-28": {"total_calls": 1, "successful_calls": 1},
            },
            "days": 2,
        }
    )
    assert state.apply_metrics(metrics) & Dirty.METRICS
    assert [d.day for d in state.metrics] == ["2026-11-28", "2026-11-29"]
    assert state.metrics[1].failures_by_class == {"unavailable": 2}
    assert state.apply_metrics(metrics) == Dirty.NONE | Dirty.NONE


def test_timeline_keeps_a_rolling_window_at_the_given_resolution() -> None:
    state = PanelState(window_seconds=10.0, resolution=1.0)
    assert state.sample(100.0)
    state.depths.active = 3
    assert state.sample(100.5)  # same slot: replaced
    assert len(state.timeline) == 1 and state.timeline[-1][1][-1] == 3
    assert not state.sample(100.6)  # nothing new
    for t in range(101, 120):
        state.sample(float(t))
    times, columns = state.series()
    assert times[0] >= 119 - 10 - 1
    assert len(columns) == 7 and len(columns[0]) == len(times)


def test_batches_follow_events_and_remembered_states() -> None:
    state = PanelState()
    state.apply({"type": "task_created", "task_id": "a", "state": "PENDING"})
    state.apply(
        {"type": "task_state_changed", "task_id": "a", "old_state": "PENDING", "state": "ACTIVE"}
    )
    state.apply(
        {"type": "task_state_changed", "task_id": "a", "old_state": "ACTIVE", "state": "COMPLETED"}
    )
    # The batch is watched after its first task already finished: the panel remembers.
    state.watch_batch("b1", ["a", "b"], {"a": "PENDING", "b": "PENDING"})
    info = state.batches["b1"]
    assert info.count("COMPLETED") == 1 and info.total == 2 and not info.done
    dirty = state.apply(
        {"type": "task_state_changed", "task_id": "b", "old_state": "PENDING", "state": "DLQ"}
    )
    assert dirty & Dirty.BATCHES
    assert info.done and info.finished == 2


def test_reconnect_after_an_outage_rereads_everything() -> None:
    state = PanelState()
    state.set_connected(True)
    state.wants = Want.NONE
    assert state.set_connected(False, "down") == Dirty.FEED
    assert state.set_connected(True) == Dirty.FEED
    assert state.feed.reconnects == 1 and state.wants == Want.ALL
    assert state.claim(Want.QUEUES) and not state.claim(Want.QUEUES)


def test_refresh_policy_throttles_wanted_and_schedules_idle_reads() -> None:
    policy = RefreshPolicy()
    assert set(policy.due(Want.NONE, 0.0)) == {
        Want.QUEUES,
        Want.WORKERS,
        Want.DLQ,
        Want.HEALTH,
        Want.OPENROUTER,
        Want.METRICS,
        Want.BATCHES,
    }
    for kind in policy.due(Want.NONE, 0.0):
        policy.mark(kind, 0.0)
    assert policy.due(Want.QUEUES, 0.2) == []  # wanted, but read 0.2 s ago
    assert policy.due(Want.QUEUES, 0.6) == [Want.QUEUES]
    assert policy.next_due(Want.QUEUES, 0.2) == pytest.approx(0.3)
    assert policy.next_due(Want.NONE, 0.2) == pytest.approx(1.8)  # workers, every 2 s idle
    assert Want.WORKERS in policy.due(Want.NONE, 2.0)


def test_ten_thousand_events_apply_in_well_under_a_second() -> None:
    state = PanelState()
    events = []
    for i in range(2500):
        tid = f"t{i}"
        events += [
            {"type": "task_created", "task_id": tid, "state": "PENDING", "id": f"{i}-0"},
            {
                "type": "task_state_changed",
                "task_id": tid,
                "old_state": "PENDING",
                "state": "ACTIVE",
                "id": f"{i}-1",
            },
            {"type": "task_progress", "task_id": tid, "state": "ACTIVE", "id": f"{i}-2"},
            {
                "type": "task_state_changed",
                "task_id": tid,
                "old_state": "ACTIVE",
                "state": "COMPLETED",
                "id": f"{i}-3",
            },
        ]
    start = time.perf_counter()
    state.apply_many(events)
    elapsed = time.perf_counter() - start
    assert state.counts["COMPLETED"] == 2500 and state.feed.events == 10_000
    assert elapsed < 1.0, f"10,000 events took {elapsed:.3f} s"


# --------------------------------------------------------------------------- holds and budget


def test_status_call_brings_the_hold_and_the_budget() -> None:
    from taskflow_sdk.models import OpenRouterStatus
    from taskflow_sdk.widgets.state import BudgetInfo, HoldInfo, budget_text, hold_text

    state = PanelState()
    assert budget_text(state.budget) == "— today / no budget"
    status: dict[str, Any] = {
        "status": "active",
        "hold": {
            "reason": "key_limit",
            "since": 1000.0,
            "until": 9999.0,
            "seconds_left": 125.0,
            "message": "the key's limit is spent",
        },
        "budget": {"daily_usd": 5.0, "spent_today_usd": 0.42, "remaining_usd": 4.58},
    }
    dirty = state.apply_openrouter(status, now=2000.0)
    assert dirty & Dirty.BREAKER and dirty & Dirty.OPENROUTER
    # the server's countdown from the read time wins over its clock
    assert state.hold == HoldInfo("key_limit", 2125.0, 1000.0, "the key's limit is spent")
    assert state.budget == BudgetInfo(5.0, 0.42, 4.58)
    assert budget_text(state.budget) == "$0.42 today / $5.00 budget"
    assert hold_text(state.hold, 2000.0) == "on hold: key_limit · 2 min 05 s left"
    assert hold_text(state.hold, 3000.0) == "on hold: key_limit · 0 s left"
    assert state.apply_openrouter(status, now=2000.0) == Dirty.NONE
    # the same answer as a model
    model = OpenRouterStatus.model_validate(
        {**status, "hold": {**status["hold"], "seconds_left": None}}
    )
    state.apply_openrouter(model, now=2000.0)
    assert state.hold.until == 9999.0
    # no hold any more; a status without the fields (older server) changes nothing
    assert state.apply_openrouter({"status": "active", "hold": None}, now=2100.0) & Dirty.BREAKER
    assert not state.hold.active and hold_text(state.hold, 0.0) == ""
    state.apply_openrouter({"status": "active"}, now=2200.0)
    assert state.budget.daily_usd == 5.0
    assert hold_text(HoldInfo("budget"), 0.0) == "on hold: budget · until lifted"
    assert budget_text(BudgetInfo(None, 0.0035, None)) == "$0.0035 today / no budget"


def test_a_hold_event_updates_the_lamp_at_once() -> None:
    state = PanelState()
    state.apply_breaker({"state": "closed", "hold": None}, now=0.0)
    state.claim(Want.ALL)
    dirty = state.apply(
        {
            "type": "breaker_state_changed",
            "state": "open",
            "old_state": "closed",
            "reason": "budget",
            "ts": 50.0,
        }
    )
    assert dirty & Dirty.BREAKER
    assert state.breaker.state == "open" and state.breaker.reason == "budget"
    assert state.hold.reason == "budget" and state.hold.until is None and state.hold.since == 50.0
    assert state.wants & Want.OPENROUTER and state.wants & Want.WORKERS
    # the breaker was already open for failures: a hold's event still shows at once
    other = PanelState()
    other.apply({"type": "breaker_state_changed", "state": "open", "reason": "failures"})
    assert not other.hold.active
    dirty = other.apply(
        {
            "type": "breaker_state_changed",
            "state": "open",
            "reason": "rate_limited",
            "hold_until": 120.0,
        }
    )
    assert dirty & Dirty.BREAKER and other.hold.reason == "rate_limited"
    assert other.hold.until == 120.0 and other.breaker.reason == "rate_limited"
    # the breaker's own view carries hold / hold_until too
    state.apply_breaker({"state": "open", "hold": "budget", "hold_until": None}, 60.0)
    assert state.hold.reason == "budget" and state.hold.since == 50.0  # the same hold, kept
    held = BreakerStatus.model_validate({"state": "open", "hold": "credits", "hold_until": 500.0})
    state.apply_breaker(held, 70.0)
    assert state.hold.reason == "credits" and state.hold.until == 500.0
    # closing ends the hold
    dirty = state.apply({"type": "breaker_state_changed", "state": "closed", "reason": "reset"})
    assert dirty & Dirty.BREAKER and not state.hold.active and state.breaker.state == "closed"


def test_the_panel_speaks_the_sdks_states() -> None:
    assert tuple(s.value for s in TaskState) == STATES
    assert {s.value for s in TaskState if s.is_terminal} == FINISHED_STATES
    assert set(FAILED_STATES) == {s.value for s in TaskState if s.is_failure}
    state = PanelState()
    assert list(state.counts) == list(STATES)
    state.apply(Event(type="task_created", task_id="a", state=TaskState.PENDING))
    state.apply(
        {"type": "task_state_changed", "task_id": "a", "old_state": "pending", "state": "dlq"}
    )
    assert state.counts[TaskState.DLQ] == 1 and state.depths.dlq == 1
    assert state.recent["a"] is STATES[STATES.index("DLQ")]  # one shared string, not a copy
