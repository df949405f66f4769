"""``client.history()`` and ``client.history_stats()`` against a live server and a real
PostgreSQL, once per client (sync in a thread, async on the test's loop).

The server has history on and a small ``max_page_size``, so ``history()`` has to follow the
cursor over several pages; every expected value is computed from the rows the module wrote.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sdk_support import Api, LiveServer, make_api, run_server

from history_rows import (
    DAY0,
    duration,
    insert_rows,
    migrated,
    newest_first,
    percentile_cont,
    sample_rows,
)
from taskflow_sdk import (
    HistoryDisabledError,
    HistoryStats,
    NotFoundError,
    TaskState,
    UnprocessableEntityError,
)
from taskflow_sdk.models import HISTORY_COLUMNS

pd = pytest.importorskip("pandas")
pytest.importorskip("psycopg")

PAGE = 9
"""The server's max_page_size: 60 rows take seven pages."""


@pytest.fixture(scope="module")
def recorded(pg_admin_url: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A database of the module's own, migrated and holding the sample rows."""
    from pg_support import create_database, drop_database

    url = create_database(pg_admin_url)
    rows = sample_rows()

    async def prepare() -> None:
        await migrated(url)
        await insert_rows(url, rows)

    try:
        asyncio.run(prepare())
        yield url, rows
    finally:
        drop_database(pg_admin_url, url)


@pytest.fixture(scope="module")
def history_server(
    redis_url: str, recorded: tuple[str, list[dict[str, Any]]]
) -> Iterator[LiveServer]:
    """API only (no workers, no recorder) with history on."""
    with run_server(
        redis_url, workers=0, database_url=recorded[0], recorder=False, max_page_size=PAGE
    ) as live:
        yield live


@pytest.fixture
async def hist(kind: str, history_server: LiveServer) -> AsyncIterator[Api]:
    """A client of ``kind`` on the history server."""
    api = make_api(kind, history_server.url)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
def rows(recorded: tuple[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows the database holds."""
    return recorded[1]


async def test_history_follows_the_cursor_into_one_frame(
    hist: Api, rows: list[dict[str, Any]]
) -> None:
    frame = await hist("history", limit=None)
    assert list(frame.columns) == HISTORY_COLUMNS
    assert list(frame["task_id"]) == newest_first(rows)  # 7 pages of at most 9, in order
    by_id = {r["id"]: r for r in rows}
    for record in frame.to_dict("records"):
        row = by_id[record["task_id"]]
        assert record["state"] == row["state"]
        assert record["cost_usd"] == pytest.approx(float(row["cost_usd"]))
        assert record["created_at"] == pd.Timestamp(row["created_at"])
    dtype = frame["created_at"].dtype
    assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"


async def test_history_limit_and_filters(hist: Api, rows: list[dict[str, Any]]) -> None:
    first = await hist("history", limit=20)
    assert list(first["task_id"]) == newest_first(rows)[:20]

    failed = await hist("history", state=[TaskState.DLQ, "cancelled"], batch="alpha", limit=None)
    want = newest_first(
        r for r in rows if r["state"] in ("DLQ", "CANCELLED") and r["batch"] == "alpha"
    )
    assert want and list(failed["task_id"]) == want

    day = DAY0 + timedelta(days=1)
    window = await hist(
        "history", since=day, until=day + timedelta(hours=2), task_type="pdfxtract", limit=None
    )
    want = newest_first(
        r
        for r in rows
        if day <= r["created_at"] <= day + timedelta(hours=2) and r["task_type"] == "pdfxtract"
    )
    assert want and list(window["task_id"]) == want

    pricey = await hist("history", min_cost=0.006, limit=None)
    assert set(pricey["task_id"]) == {r["id"] for r in rows if float(r["cost_usd"]) >= 0.006}

    empty = await hist("history", error_class="no-such-class")
    assert empty.empty and list(empty.columns) == HISTORY_COLUMNS


async def test_history_stats_is_one_row_per_day(hist: Api, rows: list[dict[str, Any]]) -> None:
    frame = await hist("history_stats", bucket="day")
    assert len(frame) == 4  # days 0..3, the empty day 2 included
    classes = sorted({r["error_class"] for r in rows if r["error_class"]})
    expected_columns = [
        "bucket",
        "tasks",
        *(s.value for s in TaskState),
        "failures",
        *(f"failures_{c}" for c in classes),
        "timed",
        "duration_p50_s",
        "duration_p95_s",
        "cost_usd",
        "prompt_tokens",
        "completion_tokens",
    ]
    assert list(frame.columns) == expected_columns
    for n, record in enumerate(frame.to_dict("records")):
        start = DAY0 + timedelta(days=n)
        assert record["bucket"] == pd.Timestamp(start)
        mine = [r for r in rows if start <= r["created_at"] < start + timedelta(days=1)]
        assert record["tasks"] == len(mine)
        states = Counter(r["state"] for r in mine)
        for state in TaskState:
            assert record[state.value] == states.get(state.value, 0)
        failures = Counter(r["error_class"] for r in mine if r["state"] == "DLQ")
        assert record["failures"] == sum(failures.values())
        for c in classes:
            assert record[f"failures_{c}"] == failures.get(c, 0)
        assert record["cost_usd"] == pytest.approx(sum(float(r["cost_usd"]) for r in mine))
        spans = [d for d in (duration(r) for r in mine) if d is not None]
        if spans:
            assert record["duration_p50_s"] == pytest.approx(percentile_cont(spans, 0.5))
            assert record["duration_p95_s"] == pytest.approx(percentile_cont(spans, 0.95))
        else:
            assert pd.isna(record["duration_p50_s"])


async def test_history_stats_by_hour_with_filters(hist: Api, rows: list[dict[str, Any]]) -> None:
    frame = await hist(
        "history_stats", bucket="hour", since="2026-03-04", until="2026-03-04", state="COMPLETED"
    )
    assert len(frame) == 24
    assert set(frame.columns) >= {"COMPLETED", "DLQ", "failures"}
    day3 = DAY0 + timedelta(days=3)
    done = [r for r in rows if r["state"] == "COMPLETED" and r["created_at"].date() == day3.date()]
    assert int(frame["tasks"].sum()) == len(done) == int(frame["COMPLETED"].sum())
    assert int(frame["DLQ"].sum()) == 0


async def test_history_buckets_is_the_model_without_pandas(
    hist: Api, rows: list[dict[str, Any]]
) -> None:
    stats = await hist("history_buckets", bucket="day")
    assert isinstance(stats, HistoryStats)
    assert [b.tasks for b in stats.buckets] == [20, 20, 0, 20]
    assert sum(b.tasks for b in stats.buckets) == len(rows)


async def test_bad_filters_are_refused_with_what_to_fix(hist: Api) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await hist("history", since="next week")
    assert caught.value.detail and "ISO 8601" in caught.value.detail
    with pytest.raises(ValueError, match="not a state"):
        await hist("history", state="DONE")
    with pytest.raises(ValueError, match="bucket"):
        await hist("history_stats", bucket="week")
    with pytest.raises(ValueError, match="min_cost"):
        await hist("history", min_cost=-1)


async def test_a_task_only_in_the_history_comes_back_from_get(
    hist: Api, rows: list[dict[str, Any]]
) -> None:
    row = next(r for r in rows if r["state"] == "DLQ")
    task = await hist("get", row["id"])
    assert task.state is TaskState.DLQ
    assert task.error_type == row["error_class"]
    assert task.source == "history"


async def test_a_server_without_history_raises_history_disabled(
    kind: str, server: LiveServer
) -> None:
    api = make_api(kind, server.url)
    try:
        for method in ("history", "history_stats"):
            with pytest.raises(HistoryDisabledError) as caught:
                await api(method)
            assert isinstance(caught.value, NotFoundError)
            assert caught.value.status_code == 404
            assert "TASKFLOW_DATABASE_URL" in str(caught.value)
        with pytest.raises(NotFoundError) as other:
            await api("get", "no-such-task-anywhere")
        assert not isinstance(other.value, HistoryDisabledError)
    finally:
        await api.close()


def test_the_panel_history_tab_against_live_servers(
    history_server: LiveServer, server: LiveServer, rows: list[dict[str, Any]]
) -> None:
    """The History tab with a real Client: a server with history fills the chart from the
    recorded rows (history_days reaches back to the sample's days); one without says it is off."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from taskflow_sdk import Client
    from taskflow_sdk.widgets import ControlPanel
    from taskflow_sdk.widgets.panel import HISTORY_OFF_TEXT

    days = (datetime.now(UTC).date() - DAY0.date()).days + 1
    with Client(history_server.url) as client:
        panel = ControlPanel(client, autostart=False, history_days=days)
        panel.tabs.selected_index = 1
        panel.wait_actions(timeout=30)
        assert panel.history is not None
        shown = {b.start: b.tasks for b in panel.history.buckets if b.tasks}
        want = Counter(
            r["created_at"].replace(hour=0, minute=0, second=0, microsecond=0) for r in rows
        )
        assert shown == dict(want)
        completed = next(t for t in panel.history_chart.data if t["name"] == "COMPLETED")
        assert sum(completed["y"]) == sum(1 for r in rows if r["state"] == "COMPLETED")
        assert f"{len(rows):,} recorded task(s)" in panel.history_note.value
    with Client(server.url) as client:
        panel = ControlPanel(client, autostart=False)
        panel.load_history()
        assert panel.history_note.value == HISTORY_OFF_TEXT


async def test_a_recorded_task_reads_back_as_the_store_showed_it(
    redis_url: str, database_url: str
) -> None:
    """End to end with the recorder: a task that fails, is retried and is dead-lettered, read
    from Redis, then (once recorded and gone from Redis) from the history: the same story."""
    import httpx
    import psycopg
    from redis.asyncio import Redis

    from support import eventually
    from taskflow_sdk import AsyncClient
    from taskflow_server.store.keys import Keys

    with run_server(redis_url, workers=1, database_url=database_url) as live:
        async with AsyncClient(live.url) as client:
            task = await client.submit(
                "demo.fail",
                {"error_class": "timeout", "message": "upstream timed out"},
                max_retries=1,
            )
            done = await client.wait(task, timeout=60)
            assert done.state is TaskState.DLQ
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            store = (await http.get(f"/api/v1/tasks/{task.task_id}")).json()
            assert store["source"] == "store"

            async def recorded() -> bool:
                async with await psycopg.AsyncConnection.connect(database_url) as conn:
                    cur = await conn.execute(
                        "SELECT state, (SELECT count(*) FROM attempts a WHERE a.task_id = t.id)"
                        " FROM tasks t WHERE id = %s",
                        (task.task_id,),
                    )
                    row = await cur.fetchone()
                return row == ("DLQ", 2)

            await eventually(recorded, "the recorder to store the task", timeout=30, every=0.2)
            redis = Redis.from_url(redis_url)
            try:
                await redis.delete(Keys(live.settings.key_prefix).task(task.task_id))
            finally:
                await redis.aclose()
            r = await http.get(f"/api/v1/tasks/{task.task_id}")
            assert r.status_code == 200, r.text
            history = r.json()
    assert history["source"] == "history"
    for name in ("task_id", "state", "task_type", "retry_count", "max_retries", "error_type"):
        assert history[name] == store[name], name
    assert history["last_error"] == store["last_error"] == "upstream timed out"
    for name in ("created_at", "dlq_at"):
        gap = datetime.fromisoformat(history[name]) - datetime.fromisoformat(store[name])
        assert abs(gap.total_seconds()) < 0.002, name
    assert [s["state"] for s in history["state_history"]] == [
        s["state"] for s in store["state_history"]
    ]
    assert [(e["error_type"], e["state_transition"]) for e in history["error_history"]] == [
        (e["error_type"], e["state_transition"]) for e in store["error_history"]
    ]
