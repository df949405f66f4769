"""Cost and budgets against a live server on loopback, with both clients: the daily budget
routes, the status call's hold and budget, and a batch's own budget (hold, then raise) on a
server whose LLM is the fake OpenRouter charging per token, and on the offline server with the
run's cost injected through the flow's inputs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sdk_support import Api, LiveServer, make_api, run_server

from taskflow_sdk import Budget, OpenRouterStatus, Task, TaskState
from taskflow_sdk.batch import HELD
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread

KEY = "sk-sdk-budget"
SENTENCES = (
    "The council approved the harbor plan on Monday. Residents asked about the costs. "
    "The mayor promised monthly reports. Work starts in spring."
)


async def run_flow(api: Api, flow: Any) -> Any:
    """Drive one SDK flow with the api's client (what its methods do)."""
    if api.is_async:
        return await api.client._run(flow)  # type: ignore[misc]
    return await asyncio.to_thread(api.client._run, flow)


# --------------------------------------------------------------------------- daily budget


async def test_daily_budget_get_set_and_remove(api: Api) -> None:
    try:
        first = await api("openrouter.budget")
        assert isinstance(first, Budget)
        assert first.spent_today_usd >= 0.0

        capped = await api("openrouter.set_budget", 5.0)
        assert capped.daily_usd == 5.0
        assert capped.remaining_usd == pytest.approx(max(0.0, 5.0 - capped.spent_today_usd))
        assert capped.held is (capped.spent_today_usd >= 5.0)
        read = await api("openrouter.budget")
        assert read.daily_usd == 5.0

        status = await api("openrouter.status", force_refresh=True)
        assert isinstance(status, OpenRouterStatus)
        assert status.budget is not None and status.budget.daily_usd == 5.0
        assert status.budget.spent_today_usd == pytest.approx(read.spent_today_usd)
        assert status.hold is None or status.hold.reason in {
            "key_limit",
            "credits",
            "budget",
            "rate_limited",
        }

        zero = await api("openrouter.set_budget", 0.0)
        assert zero.daily_usd == 0.0 and zero.remaining_usd == 0.0
    finally:
        removed = await api("openrouter.set_budget", None)
    assert removed.daily_usd is None and removed.remaining_usd is None and not removed.held
    assert (await api("openrouter.budget")).daily_usd is None


async def test_breaker_status_has_hold_fields(api: Api) -> None:
    breaker = await api("breaker.status")
    assert breaker.hold is None and breaker.hold_until is None  # no hold on an idle server


# --------------------------------------------------------------------------- batch budget


@pytest.fixture(scope="module")
def paid_server(redis_url: str) -> Iterator[tuple[LiveServer, FakeOpenRouterThread]]:
    """A live server whose LLM is the fake OpenRouter charging 1 USD per 1,000 tokens, with one
    worker slot and some latency, so a batch keeps tasks waiting while its first ones finish."""
    config = FakeConfig(keys=frozenset({KEY}), cost_per_1k_tokens=1.0, latency=0.3)
    with (
        FakeOpenRouterThread(config) as fake,
        run_server(
            redis_url,
            concurrency=1,
            openrouter_api_key=KEY,
            openrouter_base_url=fake.base_url,
            openrouter_model="fake/model",
            openrouter_timeout=5.0,
            rate_limit=None,
        ) as live,
    ):
        yield live, fake


async def test_batch_budget_holds_then_raise_budget_finishes(
    kind: str, paid_server: tuple[LiveServer, FakeOpenRouterThread]
) -> None:
    live, _ = paid_server
    api = make_api(kind, live.url)
    tag = uuid.uuid4().hex
    texts = [f"Report {i} of {tag}. {SENTENCES}" for i in range(8)]
    try:
        run = await api.batch(texts=texts, budget_usd=1e-9, tag=tag)
        await api.run(run, "wait", timeout=60, progress=False)
        counts = run.counts()
        assert run.is_held and counts.get(HELD, 0) >= 1, counts
        assert set(counts) <= {"COMPLETED", HELD}, counts  # ACTIVE ones finished
        spent = run.cost()
        assert spent > 0.0
        assert run.cost() == pytest.approx(
            sum(t.cost or 0.0 for t in run.tasks if t.state is TaskState.COMPLETED)
        )
        held_ids = {t.task_id for t in run.held}
        for task_id in held_ids:
            assert (await api("get", task_id)).state is TaskState.CANCELLED
        assert "held: budget" in repr(run)
        assert run.failures().empty

        requeued = await api.run(run, "raise_budget", None)
        assert {t.task_id for t in requeued} == held_ids
        await api.run(run, "wait", timeout=60, progress=False)
        assert run.counts() == {"COMPLETED": 8} and not run.is_held
        assert run.cost() > spent
        frame = run.results()
        assert (frame["cost"] > 0).all()
        assert frame["cost"].sum() == pytest.approx(run.cost())
    finally:
        await api.close()


async def test_batch_budget_with_injected_cost_on_the_offline_server(
    kind: str, redis_url: str
) -> None:
    """No worker runs, so the tasks stay PENDING; the run's cost is set on one entry (the
    flow's input) and the budget check cancels the rest on the server; raise_budget re-queues
    them through the retry route (CANCELLED -> PENDING)."""
    with run_server(redis_url, workers=0) as live:
        api = make_api(kind, live.url)
        try:
            texts = [f"Note {i} {uuid.uuid4().hex}. {SENTENCES}" for i in range(4)]
            run = await api.batch(texts=texts, budget_usd=0.5)
            core = run.core
            assert await run_flow(api, core.budget_flow()) == []  # under budget: nothing
            first = core.entries[0]
            assert first.task is not None
            first.task = Task(
                task_id=first.task.task_id,
                state=TaskState.COMPLETED,
                result={"usage": {"cost": 0.75}},
            )
            held = await run_flow(api, core.budget_flow())
            assert len(held) == 3
            for task_id in held:
                assert (await api("get", task_id)).state is TaskState.CANCELLED
            assert run.counts() == {"COMPLETED": 1, HELD: 3}
            assert "held: budget $0.50 reached" in repr(run)

            with pytest.raises(ValueError):
                await api.run(run, "raise_budget", 0.5)
            requeued = await api.run(run, "raise_budget", 2.0)
            assert sorted(t.task_id for t in requeued) == sorted(held)
            for task_id in held:
                task = await api("get", task_id)
                assert task.state is TaskState.PENDING
                assert task.state_history[-2].state == "CANCELLED"
            queues = await api("queues")
            assert queues.count("CANCELLED") == 0 and queues.count("PENDING") == 4
            assert not run.is_held and run.budget_usd == 2.0
        finally:
            await api.close()
