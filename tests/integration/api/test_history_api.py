"""The history routes against a live API and a real PostgreSQL.

Rows are written straight into a migrated database (``history_rows``), so every expectation is
computed from the rows the test wrote: filters select the right ids, keyset pages cover the
whole selection once each (also while newer tasks arrive), stats match the rows bucket by
bucket, bad values get a 4xx saying what to fix, a server without history says how to turn it
on, a PostgreSQL that is down is a 503, and ``GET /api/v1/tasks/{id}`` falls back to the history
once Redis no longer holds the task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from api_helpers import TOKEN, LiveApi
from redis.asyncio import Redis

from history_rows import (
    DAY0,
    duration,
    insert_rows,
    migrated,
    newest_first,
    percentile_cont,
    sample_rows,
    task_row,
)
from support import eventually
from taskflow_server.store.keys import Keys

pytest.importorskip("psycopg")


@pytest.fixture
async def rows(database_url: str) -> list[dict[str, Any]]:
    """The sample rows, written into the test's fresh database."""
    await migrated(database_url)
    sample = sample_rows()
    await insert_rows(database_url, sample)
    return sample


@pytest.fixture
def history_api(live_api: Callable[..., LiveApi], database_url: str) -> LiveApi:
    """A server with history on (no workers, no recorder: the test writes the rows)."""
    return live_api(database_url=database_url, max_page_size=500)


async def _all_pages(c: httpx.AsyncClient, limit: int, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await c.get("/api/v1/history", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([t["task_id"] for t in body["tasks"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "the cursor never ends"


# --------------------------------------------------------------------------- history off


async def test_history_off_says_how_to_turn_it_on(api: LiveApi) -> None:
    async with api.client() as c:
        for path in ("/api/v1/history", "/api/v1/history/stats"):
            r = await c.get(path)
            assert r.status_code == 404
            assert r.headers["x-taskflow-history"] == "off"
            assert "history is off" in r.json()["detail"]
            assert "TASKFLOW_DATABASE_URL" in r.json()["detail"]
        r = await c.get("/api/v1/tasks/no-such-task")
        assert r.status_code == 404
        assert r.json() == {"detail": "task no-such-task not found"}


async def test_history_routes_need_the_token(
    live_api: Callable[..., LiveApi], database_url: str
) -> None:
    server = live_api(database_url=database_url, api_token=TOKEN)
    async with server.client(token="") as c:
        assert (await c.get("/api/v1/history")).status_code == 401
        assert (await c.get("/api/v1/history/stats")).status_code == 401
    async with server.client() as c:
        assert (await c.get("/api/v1/history")).status_code == 200


# --------------------------------------------------------------------------- list


async def test_each_filter_selects_the_matching_rows(
    history_api: LiveApi, rows: list[dict[str, Any]]
) -> None:
    day1 = DAY0 + timedelta(days=1)
    cases: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
        ({}, lambda r: True),
        ({"task_type": "pdfxtract"}, lambda r: r["task_type"] == "pdfxtract"),
        ({"state": "DLQ"}, lambda r: r["state"] == "DLQ"),
        ({"state": "dlq,cancelled"}, lambda r: r["state"] in ("DLQ", "CANCELLED")),
        ({"error_class": "timeout"}, lambda r: r["error_class"] == "timeout"),
        ({"batch": "beta"}, lambda r: r["batch"] == "beta"),
        ({"min_cost": "0.005"}, lambda r: r["cost_usd"] >= Decimal("0.005")),
        ({"max_cost": "0.002"}, lambda r: r["cost_usd"] <= Decimal("0.002")),
        ({"since": "2026-03-02", "until": "2026-03-02"}, lambda r: r["created_at"].day == 2),
        (
            {"since": day1.timestamp(), "until": (day1 + timedelta(hours=2)).isoformat()},
            lambda r: day1 <= r["created_at"] <= day1 + timedelta(hours=2),
        ),
        (
            {"time_field": "finished", "since": "2026-03-04T00:00:00Z"},
            lambda r: r["finished_at"] is not None and r["finished_at"] >= DAY0 + timedelta(3),
        ),
        (
            {"task_type": "summarize", "state": "COMPLETED", "batch": "alpha"},
            lambda r: (
                (r["task_type"], r["state"], r["batch"]) == ("summarize", "COMPLETED", "alpha")
            ),
        ),
    ]
    async with history_api.client() as c:
        for params, keep in cases:
            r = await c.get("/api/v1/history", params={**params, "limit": 500})
            assert r.status_code == 200, (params, r.text)
            got = [t["task_id"] for t in r.json()["tasks"]]
            want = newest_first(row for row in rows if keep(row))
            assert want, f"the sample has no row for {params}"
            assert got == want, params


async def test_a_listed_task_carries_its_recorded_fields(
    history_api: LiveApi, rows: list[dict[str, Any]]
) -> None:
    row = next(r for r in rows if r["state"] == "DLQ")
    async with history_api.client() as c:
        r = await c.get("/api/v1/history", params={"error_class": row["error_class"]})
    item = next(t for t in r.json()["tasks"] if t["task_id"] == row["id"])
    assert item["state"] == "DLQ"
    assert item["error_message"] == row["error_message"]
    assert item["cost_usd"] == pytest.approx(float(row["cost_usd"]))
    assert item["duration_seconds"] == pytest.approx(duration(row))
    assert item["prompt_tokens"] == row["prompt_tokens"]
    assert datetime.fromisoformat(item["created_at"]) == row["created_at"]
    assert r.json()["source"] == "history"


async def test_keyset_pages_cover_every_task_once(
    history_api: LiveApi, rows: list[dict[str, Any]]
) -> None:
    async with history_api.client() as c:
        for limit in (1, 7, 60, 61):
            pages = await _all_pages(c, limit)
            flat = [i for page in pages for i in page]
            assert flat == newest_first(rows), limit
            assert all(len(p) == limit for p in pages[:-1])
        filtered = await _all_pages(c, 4, batch="alpha", state="COMPLETED")
        want = newest_first(r for r in rows if r["batch"] == "alpha" and r["state"] == "COMPLETED")
        assert [i for p in filtered for i in p] == want


async def test_pages_stay_whole_while_newer_tasks_arrive(
    history_api: LiveApi, rows: list[dict[str, Any]], database_url: str
) -> None:
    async with history_api.client() as c:
        r = await c.get("/api/v1/history", params={"limit": 10})
        seen = [t["task_id"] for t in r.json()["tasks"]]
        cursor = r.json()["next_cursor"]
        # Newer tasks recorded between two pages go before the walk; none shows in it.
        later = DAY0 + timedelta(days=10)
        await insert_rows(database_url, [task_row(f"new{n}", later) for n in range(5)])
        while cursor:
            r = await c.get("/api/v1/history", params={"limit": 10, "cursor": cursor})
            seen += [t["task_id"] for t in r.json()["tasks"]]
            cursor = r.json()["next_cursor"]
    assert seen == newest_first(rows)


async def test_the_page_size_is_capped_at_max_page_size(
    live_api: Callable[..., LiveApi], database_url: str, rows: list[dict[str, Any]]
) -> None:
    server = live_api(database_url=database_url, max_page_size=25)
    async with server.client() as c:
        r = await c.get("/api/v1/history", params={"limit": 1000})
    assert r.status_code == 200
    assert r.json()["limit"] == 25
    assert len(r.json()["tasks"]) == 25
    assert r.json()["next_cursor"]


# --------------------------------------------------------------------------- stats


def _expected_day(rows: list[dict[str, Any]], start: datetime) -> dict[str, Any]:
    mine = [r for r in rows if start <= r["created_at"] < start + timedelta(days=1)]
    spans = [d for d in (duration(r) for r in mine) if d is not None]
    failures = Counter(r["error_class"] for r in mine if r["state"] in ("DLQ", "FAILED"))
    return {
        "tasks": len(mine),
        "states": dict(Counter(r["state"] for r in mine)),
        "failures": dict(failures),
        "timed": len(spans),
        "p50": percentile_cont(spans, 0.5),
        "p95": percentile_cont(spans, 0.95),
        "cost": sum(float(r["cost_usd"]) for r in mine),
        "prompt": sum(r["prompt_tokens"] for r in mine),
    }


async def test_daily_stats_match_the_rows(history_api: LiveApi, rows: list[dict[str, Any]]) -> None:
    async with history_api.client() as c:
        r = await c.get("/api/v1/history/stats", params={"bucket": "day"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bucket"] == "day" and body["source"] == "history"
    starts = [datetime.fromisoformat(b["start"]) for b in body["buckets"]]
    assert starts == [DAY0 + timedelta(days=d) for d in range(4)]  # day 2 filled with zeros
    for bucket, start in zip(body["buckets"], starts, strict=True):
        want = _expected_day(rows, start)
        assert bucket["tasks"] == want["tasks"]
        assert bucket["states"] == want["states"]
        assert bucket["failures"] == want["failures"]
        assert bucket["timed"] == want["timed"]
        assert bucket["cost_usd"] == pytest.approx(want["cost"])
        assert bucket["prompt_tokens"] == want["prompt"]
        if want["p50"] is None:
            assert bucket["duration_p50_seconds"] is None
        else:
            assert bucket["duration_p50_seconds"] == pytest.approx(want["p50"])
            assert bucket["duration_p95_seconds"] == pytest.approx(want["p95"])
    assert body["buckets"][2]["tasks"] == 0 and body["buckets"][2]["states"] == {}
    assert sum(b["tasks"] for b in body["buckets"]) == len(rows)


async def test_hourly_stats_with_filters_and_a_range(
    history_api: LiveApi, rows: list[dict[str, Any]]
) -> None:
    day1 = DAY0 + timedelta(days=1)
    params = {"bucket": "hour", "since": "2026-03-02", "until": "2026-03-02", "batch": "alpha"}
    async with history_api.client() as c:
        r = await c.get("/api/v1/history/stats", params=params)
    assert r.status_code == 200, r.text
    buckets = r.json()["buckets"]
    assert len(buckets) == 24  # the whole day, empty hours included
    for hour, bucket in enumerate(buckets):
        start = day1 + timedelta(hours=hour)
        assert datetime.fromisoformat(bucket["start"]) == start
        mine = [
            x
            for x in rows
            if x["batch"] == "alpha" and start <= x["created_at"] < start + timedelta(hours=1)
        ]
        assert bucket["tasks"] == len(mine)
        assert bucket["cost_usd"] == pytest.approx(sum(float(x["cost_usd"]) for x in mine))


async def test_stats_by_finish_time_leave_open_tasks_out(
    history_api: LiveApi, rows: list[dict[str, Any]]
) -> None:
    async with history_api.client() as c:
        r = await c.get("/api/v1/history/stats", params={"time_field": "finished"})
    finished = [x for x in rows if x["finished_at"] is not None]
    assert len(finished) < len(rows)
    assert sum(b["tasks"] for b in r.json()["buckets"]) == len(finished)
    assert "PENDING" not in {s for b in r.json()["buckets"] for s in b["states"]}


async def test_stats_of_an_empty_history(history_api: LiveApi, database_url: str) -> None:
    async with history_api.client() as c:
        r = await c.get("/api/v1/history/stats")
        assert r.status_code == 200 and r.json()["buckets"] == []
        r = await c.get("/api/v1/history")
        assert r.json() == {"tasks": [], "next_cursor": None, "limit": 100, "source": "history"}


# --------------------------------------------------------------------------- bad values


async def test_bad_values_get_a_4xx_saying_what_to_fix(
    history_api: LiveApi, rows: list[dict[str, Any]]
) -> None:
    async with history_api.client() as c:
        first = (await c.get("/api/v1/history", params={"limit": 2})).json()["next_cursor"]
        bad: list[tuple[str, dict[str, Any], str]] = [
            ("/api/v1/history", {"since": "last tuesday"}, "ISO 8601"),
            ("/api/v1/history", {"until": "2026-13-45"}, "not a time"),
            ("/api/v1/history", {"since": "2026-03-05", "until": "2026-03-01"}, "swap"),
            ("/api/v1/history", {"state": "DONE"}, "use one of"),
            ("/api/v1/history", {"min_cost": 2, "max_cost": 1}, "above max_cost"),
            ("/api/v1/history", {"max_cost": "inf"}, "finite"),
            ("/api/v1/history", {"min_cost": -1}, "greater than or equal"),
            ("/api/v1/history", {"limit": 0}, "greater than or equal"),
            ("/api/v1/history", {"time_field": "updated"}, "created"),
            ("/api/v1/history", {"cursor": "not-a-cursor"}, "next_cursor"),
            ("/api/v1/history", {"cursor": first, "batch": "alpha"}, "other filters"),
            ("/api/v1/history", {"batch": "a\x00b"}, "NUL"),
            ("/api/v1/history/stats", {"bucket": "week"}, "day"),
            ("/api/v1/history/stats", {"since": "1e300"}, "out of range"),
            (
                "/api/v1/history/stats",
                {"bucket": "hour", "since": "2020-01-01", "until": "2026-01-01"},
                "bucket=day",
            ),
        ]
        for path, params, hint in bad:
            r = await c.get(path, params=params)
            assert r.status_code in (400, 422), (params, r.status_code, r.text)
            assert hint in r.text, (params, r.text)


# --------------------------------------------------------------------------- tasks/{id}


async def test_a_task_redis_no_longer_holds_is_answered_from_the_history(
    history_api: LiveApi, database_url: str, redis_url: str
) -> None:
    await migrated(database_url)
    async with history_api.client() as c:
        r = await c.post("/api/v1/tasks/summarize", json={"content": "Short text to keep."})
        assert r.status_code == 201
        task_id = r.json()["task_id"]
        live = (await c.get(f"/api/v1/tasks/{task_id}")).json()
        assert live["source"] == "store"

        created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        started, ended = created + timedelta(seconds=1), created + timedelta(seconds=4)
        row = task_row(
            task_id,
            created,
            state="COMPLETED",
            started_at=started,
            finished_at=created + timedelta(seconds=9),
            updated_at=created + timedelta(seconds=9),
            attempts=2,
            retry_count=1,
            error_class="timeout",
            error_message="upstream timed out",
            result={"summary": "kept", "usage": {"cost": 0.002}},
            metadata={"source": "test"},
        )
        events = [
            {
                "event_id": "1-0",
                "task_id": task_id,
                "type": "task_created",
                "state": "PENDING",
                "at": created,
            },
            {
                "event_id": "2-0",
                "task_id": task_id,
                "type": "task_state_changed",
                "old_state": "PENDING",
                "state": "ACTIVE",
                "at": started,
            },
            {
                "event_id": "3-0",
                "task_id": task_id,
                "type": "task_state_changed",
                "old_state": "ACTIVE",
                "state": "SCHEDULED",
                "at": ended,
            },
            {
                "event_id": "4-0",
                "task_id": task_id,
                "type": "task_state_changed",
                "old_state": "SCHEDULED",
                "state": "PENDING",
                "at": created + timedelta(seconds=5),
            },
            {
                "event_id": "5-0",
                "task_id": task_id,
                "type": "task_state_changed",
                "old_state": "PENDING",
                "state": "ACTIVE",
                "at": created + timedelta(seconds=6),
            },
            {
                "event_id": "6-0",
                "task_id": task_id,
                "type": "task_state_changed",
                "old_state": "ACTIVE",
                "state": "COMPLETED",
                "at": created + timedelta(seconds=9),
            },
        ]
        attempts = [
            {
                "task_id": task_id,
                "attempt": 1,
                "worker_id": "w1",
                "started_at": started,
                "ended_at": ended,
                "outcome": "FAILED",
                "error_class": "timeout",
                "error": "upstream timed out",
            },
            {
                "task_id": task_id,
                "attempt": 2,
                "worker_id": "w2",
                "outcome": "COMPLETED",
                "started_at": created + timedelta(seconds=6),
                "ended_at": created + timedelta(seconds=9),
            },
        ]
        await insert_rows(database_url, [row], events, attempts)
        # While Redis holds the task, the store answers (the history is not asked).
        assert (await c.get(f"/api/v1/tasks/{task_id}")).json()["source"] == "store"

        # Redis lets the task go, as its retention would: the history answers.
        redis = Redis.from_url(redis_url)
        try:
            assert await redis.delete(Keys(history_api.settings.key_prefix).task(task_id)) == 1
        finally:
            await redis.aclose()
        r = await c.get(f"/api/v1/tasks/{task_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["source"] == "history"
        assert body["state"] == "COMPLETED"
        assert body["result"] == "kept" and body["result_data"]["summary"] == "kept"
        assert body["retry_count"] == 1 and body["worker_id"] == "w2"
        assert body["error_type"] == "timeout"
        assert set(body) == set(live)  # the same fields as the store's answer
        assert [s["state"] for s in body["state_history"]] == [
            "PENDING",
            "ACTIVE",
            "FAILED",
            "SCHEDULED",
            "PENDING",
            "ACTIVE",
            "COMPLETED",
        ]
        assert len(body["error_history"]) == 1
        assert body["error_history"][0]["error_type"] == "timeout"
        assert body["error_history"][0]["state_transition"] == "ACTIVE -> SCHEDULED"
        assert datetime.fromisoformat(body["completed_at"]) == row["finished_at"]
        assert body["usage"]["cost_usd"] == pytest.approx(0.001)
        assert body["metadata"] == {"source": "test"}

        # What a client waiting on many tasks polls falls back too, in the order asked.
        r = await c.post("/api/v1/tasks/states", json={"task_ids": ["never-recorded", task_id]})
        assert r.status_code == 200, r.text
        states = r.json()
        assert states["missing"] == ["never-recorded"]
        (item,) = states["tasks"]
        assert (item["task_id"], item["state"], item["retry_count"]) == (task_id, "COMPLETED", 1)
        assert item["progress"] == 1.0
        assert datetime.fromisoformat(item["updated_at"]) == row["updated_at"]
        r = await c.post("/api/v1/tasks/lookup", json={"task_ids": [task_id, "never-recorded"]})
        assert r.status_code == 200, r.text
        lookup = r.json()
        assert lookup["missing"] == ["never-recorded"]
        assert [t["source"] for t in lookup["tasks"]] == ["history"]
        assert lookup["tasks"][0]["state_history"] == body["state_history"]

        # In neither: still a plain 404.
        assert (await c.get("/api/v1/tasks/nul%00id")).status_code == 404
        r = await c.get("/api/v1/tasks/never-recorded")
        assert r.status_code == 404 and r.json()["detail"] == "task never-recorded not found"


async def test_a_task_only_in_the_history_without_events(
    history_api: LiveApi, database_url: str
) -> None:
    await migrated(database_url)
    created = DAY0 + timedelta(hours=3)
    row = task_row(
        "only-in-pg",
        created,
        state="DLQ",
        error_class="invalid_input",
        error_message="not a PDF",
        task_type="pdfxtract",
        result_ref="result of 9000000 bytes not recorded",
    )
    await insert_rows(database_url, [row])
    async with history_api.client() as c:
        body = (await c.get("/api/v1/tasks/only-in-pg")).json()
    assert body["source"] == "history"
    assert body["state"] == "DLQ"
    assert datetime.fromisoformat(body["dlq_at"]) == row["finished_at"]
    assert body["completed_at"] is None
    assert body["result"] is None and body["result_ref"].startswith("result of")
    assert body["state_history"][0]["state"] == "PENDING"
    assert body["last_error"] == "not a PDF"


# --------------------------------------------------------------------------- PostgreSQL down


async def test_postgres_down_is_a_503_and_back_is_200(
    live_api: Callable[..., LiveApi],
) -> None:
    from pg_support import create_database, start_private_postgres

    try:
        pg = start_private_postgres()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start a private PostgreSQL: {exc}")
    try:
        url = create_database(pg.url)
        await migrated(url)
        await insert_rows(url, [task_row("pg-task", DAY0)])
        server = live_api(database_url=url)
        async with server.client(timeout=30.0) as c:
            assert (await c.get("/api/v1/history")).status_code == 200
            pg.stop()
            for path in ("/api/v1/history", "/api/v1/history/stats", "/api/v1/tasks/pg-task"):
                r = await c.get(path)
                assert r.status_code == 503, (path, r.text)
                assert "PostgreSQL" in r.json()["detail"]
                assert r.headers["retry-after"]
            pg.start()

            async def answers() -> bool:
                r = await c.get("/api/v1/tasks/pg-task")
                return r.status_code == 200 and r.json()["source"] == "history"

            await eventually(answers, "the history to answer again", timeout=30, every=0.5)
    finally:
        pg.destroy()


# --------------------------------------------------------------------------- generated input


@pytest.mark.parametrize("path", ["/api/v1/history", "/api/v1/history/stats"])
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_queries_never_get_a_5xx(
    live_api: Callable[..., LiveApi], database_url: str, path: str, mode: str
) -> None:
    """schemathesis, from the route's own OpenAPI, with history on and rows to find: every
    answer is documented and none is a 5xx (as test_api_schemathesis does with history off)."""
    import asyncio

    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    async def prepare() -> None:
        await migrated(database_url)
        await insert_rows(database_url, sample_rows())

    asyncio.run(prepare())
    server = live_api(database_url=database_url)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operation = schema[path]["GET"]
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    @given(case=operation.as_strategy(generation_mode=generation))
    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks, timeout=10)

    run()
