"""The task listing's query planner, called directly (no HTTP): query checks, date parsing, sort
keys, and the three plans (exact id, index page, scan) against the real test Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from support import make_settings
from taskflow_server.api import listing
from taskflow_server.api.listing import (
    MAX_DATE,
    InvalidListing,
    ListingQuery,
    find_page,
    parse_when,
    run_listing,
    sort_key,
)
from taskflow_server.states import TaskState
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask

LANES: dict[str, int | None] = {"local": None, "llm": None}
DAY = datetime(2024, 5, 31, tzinfo=UTC).timestamp()


@pytest.fixture
async def queue(redis: Redis) -> TaskQueue:
    """A loaded TaskQueue on the flushed test database."""
    q = TaskQueue(redis, Keys("tflisting"), make_settings())
    await q.load()
    return q


async def _submit(queue: TaskQueue, *tasks: tuple[str, str]) -> list[str]:
    """Submit (task_type, priority) pairs in order, each with a small payload; their ids."""
    made = await queue.submit_many(
        [NewTask(task_type=t, payload={"n": i}, priority=p) for i, (t, p) in enumerate(tasks)]
    )
    return [m.task_id for m in made]


async def _list(queue: TaskQueue, **query: Any) -> listing.Listing:
    return await run_listing(queue, ListingQuery(**query), max_page_size=100)


# --------------------------------------------------------------------------- pure parts


def test_parse_when_dates_and_datetimes() -> None:
    assert parse_when(None, "start_date", end=False) is None
    assert parse_when("  ", "start_date", end=False) is None
    assert parse_when("2024-05-31", "start_date", end=False) == DAY
    assert parse_when("2024-05-31", "end_date", end=True) == DAY + 86_400 - 0.001
    assert parse_when("2024-05-31T00:00:00", "start_date", end=False) == DAY  # naive: UTC
    assert parse_when("2024-05-31T02:00:00+02:00", "end_date", end=True) == DAY
    assert parse_when(" 2024-05-31 ", "start_date", end=False) == DAY


@pytest.mark.parametrize(
    ("value", "end", "words"),
    [
        ("yesterday", False, "is not a date"),
        ("2024-13-01", False, "is not a date"),
        ("9999-12-31", True, "is out of range"),  # its end is a day later: no datetime
        ("9999-12-31", False, "is out of range"),
    ],
)
def test_parse_when_refuses(value: str, end: bool, words: str) -> None:
    with pytest.raises(InvalidListing, match=words) as info:
        parse_when(value, "start_date", end=end)
    assert str(info.value).startswith(f"start_date {value!r}")


def test_parse_when_range_ends() -> None:
    assert parse_when("0001-01-01", "start_date", end=False) == listing.MIN_DATE
    assert parse_when("9999-12-30", "end_date", end=True) == MAX_DATE


def test_sort_key() -> None:
    assert sort_key("created_at", {"created_at": "5.5"}) == (0, 5.5)
    assert sort_key("completed_at", {"completed_at": None}) == (1, 0.0)  # missing: last
    assert sort_key("updated_at", {"updated_at": "garbage"}) == (1, 0.0)
    assert sort_key("retry_count", {"retry_count": "10"}) > sort_key("retry_count", {})
    ranks = [sort_key("priority", {"priority": p})[1] for p in ("high", "default", "low")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 3
    assert sort_key("state", {"state": "DLQ"}) == (0, "DLQ")
    assert sort_key("task_type", {}) == (0, "")


async def test_query_checks(queue: TaskQueue) -> None:
    with pytest.raises(InvalidListing, match=r"page_size 101 is over the maximum of 100"):
        await _list(queue, page_size=101)
    with pytest.raises(InvalidListing, match="disagree"):
        await _list(queue, task_status=TaskState.PENDING, status=TaskState.DLQ)
    with pytest.raises(InvalidListing, match="start_date is after end_date"):
        await _list(queue, start_date="2024-02-02", end_date="2024-02-01")
    same = await _list(queue, task_status=TaskState.DLQ, status=TaskState.DLQ)
    assert same.state == "DLQ" and type(same.state) is str  # echoed as a plain string


# --------------------------------------------------------------------------- plans


async def test_index_page(queue: TaskQueue) -> None:
    ids = await _submit(queue, *[("demo.noop", "default")] * 5)
    first = await _list(queue, page_size=2)
    assert [r.id for r in first.page.records] == ids[::-1][:2]  # newest first
    assert first.page_fields() == {
        "page": 1,
        "page_size": 2,
        "total_items": 5,
        "total_pages": 3,
        "status": None,
        "scan_limited": False,
    }
    assert first.payloads == [{"n": 4}, {"n": 3}]  # one per record, in order
    last = await _list(queue, page_size=2, page=3, sort_order="asc")
    assert [r.id for r in last.page.records] == [ids[4]]
    beyond = await _list(queue, page_size=2, page=9)
    assert (beyond.page.records, beyond.page.total, beyond.payloads) == ([], 5, [])
    later = await _list(queue, start_date="2999-01-01")
    assert later.page.total == 0 and later.page.total_pages == 0


async def test_exact_id_is_a_page_of_one(queue: TaskQueue) -> None:
    ids = await _submit(queue, ("demo.noop", "default"), ("other", "default"))
    exact = await _list(queue, task_id=f" {ids[0]} ", page=4, page_size=7)
    assert [r.id for r in exact.page.records] == [ids[0]]
    assert (exact.page.page, exact.page.size, exact.page.total_pages) == (1, 1, 1)
    # An exact id that fails another filter falls back to the substring scan: nothing.
    filtered = await _list(queue, task_id=ids[0], task_type="other")
    assert filtered.page.records == [] and filtered.page.total == 0


async def test_scan_filters(queue: TaskQueue) -> None:
    ids = await _submit(
        queue, ("demo.noop", "low"), ("summarize", "high"), ("demo.noop", "default")
    )
    [claim] = await queue.claim("w", "tok", 1, LANES)  # FIFO within a priority: high first
    assert claim.task_id == ids[1]
    await queue.complete_many([(claim.task_id, claim.token, {"ok": True})])

    done = await _list(queue, status=TaskState.COMPLETED)
    assert [r.id for r in done.page.records] == [ids[1]] and done.state == "COMPLETED"
    pending = await _list(queue, task_status=TaskState.PENDING, sort_order="asc")
    assert [r.id for r in pending.page.records] == [ids[0], ids[2]]
    typed = await _list(queue, task_type="demo.noop")
    assert [r.id for r in typed.page.records] == [ids[2], ids[0]]
    assert typed.payloads == [{"n": 2}, {"n": 0}]
    both = await _list(queue, task_type="demo.noop", status=TaskState.COMPLETED)
    assert both.page.total == 0

    fragment = ids[2][-8:].upper()  # case-insensitive substring
    found = await _list(queue, task_id=fragment)
    assert [r.id for r in found.page.records] == [ids[2]]


async def test_scan_sorts(queue: TaskQueue) -> None:
    ids = await _submit(queue, ("a", "low"), ("b", "high"), ("c", "default"))
    urgent = await _list(queue, sort_by="priority", sort_order="asc")
    assert [r.id for r in urgent.page.records] == [ids[1], ids[2], ids[0]]
    relaxed = await _list(queue, sort_by="priority", sort_order="desc")
    assert [r.id for r in relaxed.page.records] == [ids[0], ids[2], ids[1]]
    by_type = await _list(queue, sort_by="task_type", sort_order="desc", page_size=2)
    assert [r.id for r in by_type.page.records] == [ids[2], ids[1]]
    assert by_type.page.total_pages == 2

    # completed_at: the finished task first in either order (missing values last).
    [claim] = await queue.claim("w", "tok", 1, LANES)
    await queue.complete_many([(claim.task_id, claim.token, None)])
    for order in ("asc", "desc"):
        page = await _list(queue, sort_by="completed_at", sort_order=order)
        assert page.page.records[0].id == claim.task_id, order


async def test_scan_stops_at_its_limit(queue: TaskQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = await _submit(queue, *[("demo.noop", "default")] * 5)
    monkeypatch.setattr(listing, "SCAN_LIMIT", 3)
    monkeypatch.setattr(listing, "SCAN_CHUNK", 2)
    found = await find_page(
        queue,
        state=None,
        task_type="demo.noop",
        task_id=None,
        start=None,
        end=None,
        sort_by="created_at",
        desc=True,
        page=1,
        size=10,
    )
    assert found.limited and found.total == 3
    assert [r.id for r in found.records] == ids[::-1][:3]  # the most recent three
    # Without a filter the index answers: no scan, no limit.
    unfiltered = await _list(queue, page_size=10)
    assert unfiltered.page.total == 5 and not unfiltered.page.limited
