"""Cost and budgets in the SDK with no network: the models, the budget requests of both
clients, the progress caption, and a batch's budget hold and raise driven through its I/O-free
flows against an in-memory fake of the task routes."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from sdk_support import drive

from taskflow_sdk import AsyncClient, Budget, Client, Hold, OpenRouterStatus, Task, TaskState
from taskflow_sdk._config import resolve_config
from taskflow_sdk._requests import Requests
from taskflow_sdk.batch import HELD, BatchCore, format_usd
from taskflow_sdk.models import BreakerStatus
from taskflow_sdk.progress import Progress, RateMeter, format_eta, status_text

URL = "http://taskflow.test"


# --------------------------------------------------------------------------- models


def test_task_cost_reads_result_usage_cost() -> None:
    llm = Task.model_validate(
        {
            "task_id": "a",
            "state": "COMPLETED",
            "result_data": {"summary": "s", "usage": {"cost": 0.0042}},
        }
    )
    assert llm.cost == pytest.approx(0.0042)
    pdf = Task.model_validate(
        {
            "task_id": "b",
            "state": "COMPLETED",
            "result": json.dumps({"pages": [], "usage": {"cost": "0.5"}}),
        }
    )
    assert pdf.cost == 0.5
    assert Task(task_id="c", state=TaskState.PENDING).cost is None
    assert Task(task_id="d", state=TaskState.COMPLETED, result={"usage": {}}).cost is None
    assert (
        Task(task_id="e", state=TaskState.COMPLETED, result={"usage": {"cost": True}}).cost is None
    )
    assert Task(task_id="f", state=TaskState.COMPLETED, result="plain text").cost is None


def test_status_hold_budget_and_breaker_hold_fields() -> None:
    status = OpenRouterStatus.model_validate(
        {
            "status": "active",
            "hold": {
                "reason": "budget",
                "since": 1_800_000_000,
                "until": None,
                "seconds_left": None,
                "message": "daily budget of $5.00 reached",
            },
            "budget": {"daily_usd": 5.0, "spent_today_usd": 5.01, "remaining_usd": 0.0},
        }
    )
    assert isinstance(status.hold, Hold) and status.hold.reason == "budget"
    assert status.hold.since is not None and status.hold.since.year == 2027
    assert status.hold.until is None and "budget" in str(status.hold)
    assert isinstance(status.budget, Budget) and status.budget.daily_usd == 5.0
    assert str(status.budget) == "$5.01 today / $5.00 budget"
    assert OpenRouterStatus.model_validate({"status": "active", "hold": None}).hold is None
    assert OpenRouterStatus.model_validate({}).budget is None  # an older server
    breaker = BreakerStatus.model_validate(
        {"state": "OPEN", "hold": "key_limit", "hold_until": 1_800_000_060.5}
    )
    assert breaker.hold == "key_limit" and breaker.hold_until is not None
    assert breaker.hold_until.timestamp() == 1_800_000_060.5
    assert str(Budget(spent_today_usd=0.42)) == "$0.42 today / no budget"


# --------------------------------------------------------------------------- budget calls


def _mock(handler: Any) -> tuple[Client, AsyncClient]:
    async def ahandler(request: httpx.Request) -> httpx.Response:
        return handler(request)  # type: ignore[no-any-return]

    return (
        Client(URL, http_client=httpx.Client(transport=httpx.MockTransport(handler))),
        AsyncClient(URL, http_client=httpx.AsyncClient(transport=httpx.MockTransport(ahandler))),
    )


def test_budget_get_and_set_on_both_clients() -> None:
    seen: list[tuple[str, str, Any]] = []
    cap: dict[str, Any] = {"daily_usd": None}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        if request.method == "PUT":
            cap["daily_usd"] = body["daily_usd"]
        daily = cap["daily_usd"]
        return httpx.Response(
            200,
            json={
                "daily_usd": daily,
                "spent_today_usd": 1.25,
                "remaining_usd": None if daily is None else max(0.0, daily - 1.25),
                "held": daily is not None and daily <= 1.25,
            },
        )

    sync, other = _mock(handler)
    assert sync.openrouter.budget() == Budget(spent_today_usd=1.25)
    held = sync.openrouter.set_budget(1)
    assert held.daily_usd == 1.0 and held.held and held.remaining_usd == 0.0
    assert seen[-1] == ("PUT", "/api/v1/openrouter/budget", {"daily_usd": 1.0})

    async def run() -> tuple[Budget, Budget, Budget]:
        raised = await other.openrouter.set_budget(5.0)
        read = await other.openrouter.budget()
        removed = await other.openrouter.set_budget(None)
        return raised, read, removed

    raised, read, removed = asyncio.run(run())
    assert raised.remaining_usd == 3.75 and not raised.held and read == raised
    assert removed.daily_usd is None and seen[-1][2] == {"daily_usd": None}
    assert [m for m, _, _ in seen] == ["GET", "PUT", "PUT", "GET", "PUT"]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            sync.openrouter.set_budget(bad)
    with pytest.raises(TypeError):
        sync.openrouter.set_budget("5")  # type: ignore[arg-type]
    assert len(seen) == 5  # refused before any request


# --------------------------------------------------------------------------- progress caption


def test_rate_meter_eta_follows_the_recent_rate() -> None:
    meter = RateMeter(window=10.0)
    assert meter.eta(5) is None
    for t in range(0, 11):
        meter.add(t // 2, now=float(t))  # 0.5 task/s
    assert meter.rate() == pytest.approx(0.5)
    assert meter.eta(10) == pytest.approx(20.0)
    for t in range(11, 21):
        meter.add(5 + 2 * (t - 10), now=float(t))  # faster: 2 tasks/s over the last 10 s
    assert meter.rate() == pytest.approx(2.0, rel=0.15)
    assert meter.eta(0) == 0.0
    meter.add(3, now=21.0)  # went back (re-queued tasks): starts over
    assert meter.rate() is None
    assert format_eta(None) == "?" and format_eta(42.4) == "42 s"
    assert format_eta(185) == "3 min 05 s" and format_eta(7620) == "2 h 07 min"
    assert status_text(0.0123, 42.0, None) == "$0.0123 spent · ETA 42 s"
    assert status_text(1.5, 42.0, "held: budget $1.00 reached") == (
        "$1.5000 spent · held: budget $1.00 reached"
    )
    assert status_text(None, None, None) == ""
    assert format_usd(5) == "$5.00" and format_usd(0.0035) == "$0.0035"


# --------------------------------------------------------------------------- batch budget


class FakeTasks:
    """The task routes a batch uses, in memory. Each states request (a polling round) is one
    step of a fake worker with one slot: the ACTIVE task completes (costing ``cost`` USD), then
    the next PENDING one becomes ACTIVE. The lookup route answers the full detail."""

    def __init__(self, cost: float = 0.1) -> None:
        self.cost = cost
        self.tasks: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.calls: list[str] = []

    def _task(self, tid: str) -> dict[str, Any]:
        t = self.tasks[tid]
        out = {"task_id": tid, "state": t["state"], "task_type": "summarize"}
        if t["state"] == "COMPLETED":
            out["result_data"] = {"summary": f"sum {tid}", "usage": {"cost": self.cost}}
        return out

    def step(self) -> None:
        for tid in self.order:
            if self.tasks[tid]["state"] == "ACTIVE":
                self.tasks[tid]["state"] = "COMPLETED"
                break
        for tid in self.order:
            if self.tasks[tid]["state"] == "PENDING":
                self.tasks[tid]["state"] = "ACTIVE"
                break

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        self.calls.append(f"{request.method} {path}")
        if path == "/api/v1/tasks/batch":
            items = []
            for i, item in enumerate(body["tasks"]):
                tid = item["idempotency_key"][-12:]
                created = tid not in self.tasks
                if created:
                    self.tasks[tid] = {"state": "PENDING"}
                    self.order.append(tid)
                state = self.tasks[tid]["state"]
                items.append(
                    {"index": i, "ok": True, "task_id": tid, "state": state, "created": created}
                )
            n = sum(1 for i in items if i["created"])
            return httpx.Response(200, json={"accepted": len(items), "created": n, "items": items})
        if path == "/api/v1/tasks/states":
            self.step()
            rows = [
                {"task_id": t, "state": self.tasks[t]["state"], "retry_count": 0, "progress": 0.0}
                for t in body["task_ids"]
            ]
            return httpx.Response(200, json={"tasks": rows, "missing": []})
        if path == "/api/v1/tasks/lookup":
            tasks = [self._task(t) for t in body["task_ids"]]
            return httpx.Response(200, json={"tasks": tasks, "missing": []})
        match = re.fullmatch(r"/api/v1/tasks/(\w+)/(cancel|retry)", path)
        assert match, path
        tid, verb = match.groups()
        state = self.tasks[tid]["state"]
        if verb == "cancel":
            if state in ("PENDING", "SCHEDULED"):
                self.tasks[tid]["state"] = "CANCELLED"
                return httpx.Response(200, json={"task_id": tid, "state": "CANCELLED"})
            if state == "ACTIVE":
                answer = {"task_id": tid, "state": "ACTIVE", "cancel_requested": True}
                return httpx.Response(200, json=answer)
            return httpx.Response(409, json={"detail": f"task {tid} is {state}"})
        if not TaskState(state).is_failure:
            return httpx.Response(400, json={"detail": f"task {tid} is {state}"})
        self.tasks[tid]["state"] = "PENDING"
        answer = {"task_id": tid, "state": "PENDING", "retry_count": 0, "message": "ok"}
        return httpx.Response(200, json=answer)


TEXTS = [f"Text number {i}. It has two sentences." for i in range(6)]


def test_budget_flow_holds_waiting_tasks_and_raise_budget_requeues_them() -> None:
    fake = FakeTasks(cost=0.1)
    config = resolve_config(URL, None, 5.0, 0, env={})
    core = BatchCore(Requests(config), texts=TEXTS, budget_usd=0.25)
    core.load()
    assert drive(core.submit_flow(), fake, config) == 6
    progress: list[dict[str, int]] = []
    drive(core.wait_flow(None, lambda: progress.append(core.counts())), fake, config)

    # Round 3 saw 0.3 USD spent (>= 0.25): the 3 PENDING tasks were cancelled, the ACTIVE one
    # finished (so the run ends a little over its cap), and the wait returned.
    assert core.counts() == {"COMPLETED": 3, HELD: 3} or core.counts() == {"COMPLETED": 4, HELD: 2}
    held = [e.task.task_id for e in core.held_entries() if e.task]
    assert sorted(held) == sorted(core.held_ids) and len(held) == 6 - core.counts()["COMPLETED"]
    assert all(fake.tasks[t]["state"] == "CANCELLED" for t in held)
    assert not any(fake.tasks[t]["state"] == "ACTIVE" for t in fake.order)
    assert core.cost() == pytest.approx(0.1 * core.counts()["COMPLETED"])
    assert core.is_held and core.note() == "held: budget $0.25 reached"
    assert core.done() == core.counts()["COMPLETED"]  # held tasks are not done
    assert core.failures().empty  # nor failures
    frame = core.results()
    assert list(frame["state"]).count("CANCELLED") == len(held)
    assert frame["cost"].sum() == pytest.approx(core.cost())
    assert progress and any(c.get(HELD) for c in progress)
    cancels = [c for c in fake.calls if c.endswith("/cancel")]
    assert len(cancels) == len(held)  # only PENDING/SCHEDULED tasks, once each

    # Another wait while held returns at once and cancels nothing more.
    drive(core.wait_flow(None, lambda: None), fake, config)
    assert [c for c in fake.calls if c.endswith("/cancel")] == cancels

    with pytest.raises(ValueError, match="already cost"):
        drive(core.raise_budget_flow(0.1), fake, config)
    requeued = drive(core.raise_budget_flow(10.0), fake, config)
    assert sorted(t.task_id for t in requeued) == sorted(held)
    assert all(t.state is TaskState.PENDING for t in requeued)
    assert not core.held_ids and not core.is_held and core.note() is None
    drive(core.wait_flow(None, lambda: None), fake, config)
    assert core.counts() == {"COMPLETED": 6}
    assert core.cost() == pytest.approx(0.6)


def test_no_budget_never_cancels_and_under_budget_is_a_no_op() -> None:
    fake = FakeTasks(cost=0.1)
    config = resolve_config(URL, None, 5.0, 0, env={})
    for budget in (None, 100.0):
        core = BatchCore(Requests(config), texts=TEXTS, budget_usd=budget, tag=str(budget))
        core.load()
        drive(core.submit_flow(), fake, config)
        assert drive(core.budget_flow(), fake, config) == []
        drive(core.wait_flow(None, lambda: None), fake, config)
        assert core.counts() == {"COMPLETED": 6} and not core.is_held
    assert not [c for c in fake.calls if c.endswith("/cancel")]
    with pytest.raises(ValueError):
        BatchCore(Requests(config), texts=TEXTS, budget_usd=-1)


def test_budget_injected_through_the_flow_inputs() -> None:
    """The check reads only the entries: a cost known from elsewhere holds the run too."""
    fake = FakeTasks()
    config = resolve_config(URL, None, 5.0, 0, env={})
    core = BatchCore(Requests(config), texts=TEXTS[:3], budget_usd=1.0)
    core.load()
    drive(core.submit_flow(), fake, config)
    assert drive(core.budget_flow(), fake, config) == []
    first = core.entries[0]
    first.task = Task(
        task_id=first.task.task_id, state=TaskState.COMPLETED, result={"usage": {"cost": 1.5}}
    )  # type: ignore[union-attr]
    held = drive(core.budget_flow(), fake, config)
    assert sorted(held) == sorted(e.task.task_id for e in core.entries[1:] if e.task)
    assert core.counts() == {"COMPLETED": 1, HELD: 2}


def test_batch_runs_of_both_clients_hold_and_resume() -> None:
    sync, other = _mock(FakeTasks(cost=0.1))
    run = sync.batch(texts=TEXTS, budget_usd=0.25)
    run.wait(progress=True)
    assert run.is_held and run.held and run.budget_usd == 0.25
    assert repr(run) == (
        "<BatchRun text x6: COMPLETED=4, HELD=2; cost $0.40 of $0.25; held: budget $0.25 reached>"
    )
    assert "held: budget" in run._repr_html_()
    held = {t.task_id for t in run.held}
    assert {t.task_id for t in run.raise_budget(None)} == held
    run.wait(progress=False)
    assert run.counts() == {"COMPLETED": 6} and run.cost() == pytest.approx(0.6)
    assert run.budget_usd is None

    async def go() -> Any:
        arun = await other.batch(texts=TEXTS, budget_usd=0.25, tag="async")
        await arun.wait(progress=False)
        assert arun.is_held and arun.cost() < 0.6
        requeued = await arun.raise_budget(1.0)
        assert requeued
        await arun.wait(progress=False)
        return arun

    arun = asyncio.run(go())
    assert arun.counts() == {"COMPLETED": 6} and not arun.is_held


def test_progress_bar_shows_cost_eta_and_the_hold(capsys: pytest.CaptureFixture[str]) -> None:
    class Source:
        def __init__(self) -> None:
            self.finished = 0
            self.held: str | None = None

        def counts(self) -> dict[str, int]:
            return {"COMPLETED": self.finished, "PENDING": 10 - self.finished}

        def done(self) -> int:
            return self.finished

        def total(self) -> int:
            return 10

        def cost(self) -> float:
            return 0.01 * self.finished

        def note(self) -> str | None:
            return self.held

    source = Source()
    bar = Progress(source, name="batch")
    for _ in range(4):
        source.finished += 1
        bar.meter.add(source.finished - 1, now=-1.0 + source.finished)  # a known past rate
        bar()
    source.held = "held: budget $0.04 reached"
    bar()
    bar.close()
    shown = capsys.readouterr().err
    assert "$0.0400 spent" in shown and "ETA " in shown
    assert "held: budget $0.04 reached" in shown
