"""Poison input: bodies the API must refuse at the door, and stored tasks it must still show.

Every request here is sent as the exact bytes a client would put on the wire (a lone surrogate as
the JSON escape ``\\udfff``, deep nesting as literal brackets, ``Infinity`` as a bare word), to a
real server on loopback. A refusal must be a 4xx whose ``detail`` names the field and the problem;
no answer may be a 500. Timing is only ever compared as a ratio between two requests of the same
test, never against a fixed number of seconds.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from api_helpers import LiveApi

from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask

StoreFactory = Callable[[LiveApi], Awaitable[TaskQueue]]

JSON = {"content-type": "application/json"}
LONE = "\\udfff"
"""A lone low surrogate as a JSON escape (the six characters a client sends)."""


def deep(levels: int, leaf: str = "1") -> str:
    """JSON text of ``levels`` nested objects around ``leaf``: {"a":{"a":...}}."""
    return '{"a":' * levels + leaf + "}" * levels


def detail_text(response: httpx.Response) -> str:
    """The ``detail`` of an error body as one string (a 422 list joined)."""
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


# --------------------------------------------------------------------------- refused at the door

BAD_BODIES: list[Any] = [
    pytest.param(
        "/api/v1/tasks",
        '{"task_type":"demo.noop","payload":{"note":"a' + LONE + 'b"}}',
        ["body.payload.note", "surrogate"],
        id="payload-lone-surrogate",
    ),
    pytest.param(
        "/api/v1/tasks",
        '{"task_type":"demo.noop","payload":{},"metadata":{"' + LONE + '":1}}',
        ["body.metadata", "(a key)", "surrogate"],
        id="metadata-key-lone-surrogate",
    ),
    pytest.param(
        "/api/v1/tasks",
        '{"task_type":"sum' + LONE + '","payload":{}}',
        ["body.task_type", "surrogate"],
        id="task-type-lone-surrogate",
    ),
    pytest.param(
        "/api/v1/tasks/summarize/",
        '{"content":"' + LONE + '"}',
        ["body.content", "surrogate"],
        id="summarize-content-lone-surrogate",
    ),
    pytest.param(
        "/api/v1/tasks/lookup",
        '{"task_ids":["abc","' + LONE + '"]}',
        ["body.task_ids[1]", "surrogate"],
        id="lookup-id-lone-surrogate",
    ),
    pytest.param(
        "/api/v1/workers/open-circuit-breaker",
        '{"reason":"maintenance ' + LONE + '"}',
        ["body.reason", "surrogate"],
        id="breaker-reason-lone-surrogate",
    ),
    pytest.param(
        "/api/v1/tasks/batch",
        '{"tasks":[{"task_type":"demo.noop","payload":{"x":"' + LONE + '"}}]}',
        ["body.tasks[0].payload.x", "surrogate"],
        id="batch-item-lone-surrogate",
    ),
    pytest.param(
        "/api/v1/tasks/summarize/",
        b'{"content":"\xed\xbf\xbf"}',
        ["not UTF-8"],
        id="surrogate-as-raw-bytes",
    ),
    *[
        pytest.param(
            "/api/v1/tasks",
            '{"task_type":"demo.noop","payload":{},"max_retries":' + token + "}",
            ["body.max_retries", "not a finite number"],
            id=f"max-retries-{token}",
        )
        for token in ("Infinity", "-Infinity", "NaN", "1e309")
    ],
    pytest.param(
        "/api/v1/tasks/summarize/",
        '{"content":"x","max_retries":Infinity}',
        ["body.max_retries", "not a finite number"],
        id="summarize-max-retries-infinity",
    ),
    pytest.param(
        "/api/v1/openrouter/budget",
        '{"daily_usd":NaN}',
        ["body.daily_usd", "not a finite number"],
        id="budget-nan",
    ),
    pytest.param(
        "/api/v1/tasks",
        '{"task_type":"demo.noop","payload":{},"metadata":' + deep(600) + "}",
        ["body.metadata", "nested more than 64", "TASKFLOW_MAX_JSON_DEPTH"],
        id="metadata-600-deep",
    ),
    pytest.param(
        "/api/v1/tasks",
        '{"task_type":"demo.noop","payload":' + deep(600) + "}",
        ["body.payload", "nested more than 64"],
        id="payload-600-deep",
    ),
    pytest.param(
        "/api/v1/tasks",
        '{"task_type":"demo.noop","payload":{"x":' + "[" * 5000 + "]" * 5000 + "}}",
        ["nested more than 64"],
        id="payload-5000-deep-array",
    ),
    pytest.param(
        "/api/v1/tasks",
        '{"task_type":"demo.noop","payload":{"x":' + "[" * 200_000 + "]" * 200_000 + "}}",
        ["nested more than 64"],
        id="payload-200k-deep-array",
    ),
]


@pytest.mark.parametrize(("path", "body", "expected"), BAD_BODIES)
async def test_poison_body_is_refused(
    client: httpx.AsyncClient, path: str, body: str | bytes, expected: list[str]
) -> None:
    method = "PUT" if path.endswith("/budget") else "POST"
    raw = body.encode("ascii") if isinstance(body, str) else body
    r = await client.request(method, path, content=raw, headers=JSON)
    assert r.status_code == 422, r.text[:500]
    text = detail_text(r)
    for needle in expected:
        assert needle in text, (needle, text)
    r.content.decode("utf-8")  # the answer itself is valid UTF-8


async def test_surrogate_pairs_and_depth_at_the_limit_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    """The checks refuse only what is wrong: an escaped emoji and 64 levels pass."""
    body = '{"task_type":"demo.noop","payload":{"e":"\\ud83d\\ude00"},"metadata":' + deep(63) + "}"
    r = await client.post("/api/v1/tasks", content=body.encode(), headers=JSON)
    assert r.status_code == 201, r.text
    task = (await client.get(f"/api/v1/tasks/{r.json()['task_id']}")).json()
    assert "\U0001f600" in task["content"]
    assert task["error"] is None


@pytest.mark.parametrize(
    "query",
    [
        "end_date=9999-12-31",
        "start_date=9999-12-31",
        "end_date=9999-12-31T23:59:59Z",
        "start_date=0001-01-01&end_date=9999-12-31",
    ],
)
@pytest.mark.parametrize("route", ["/api/v1/tasks", "/api/v1/tasks/summaries/"])
async def test_out_of_range_dates_are_refused(
    client: httpx.AsyncClient, route: str, query: str
) -> None:
    r = await client.get(f"{route}?{query}")
    assert r.status_code == 422, r.text
    assert "out of range" in r.json()["detail"] and "9999-12-30" in r.json()["detail"]


async def test_last_date_in_range_is_accepted(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/tasks?start_date=0001-01-01&end_date=9999-12-30")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"last_event_id": "18446744073709551616-0"}, {}),
        ({"last_event_id": "1-18446744073709551616"}, {}),
        ({"last_event_id": "99999999999999999999999999"}, {}),
        ({}, {"Last-Event-ID": "18446744073709551616-0"}),
    ],
    ids=["ms-query", "seq-query", "bare-ms-query", "ms-header"],
)
async def test_out_of_range_last_event_id_is_refused(
    client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str]
) -> None:
    async with client.stream("GET", "/api/v1/events", params=params, headers=headers) as r:
        assert r.status_code == 422
        body = json.loads(await r.aread())
    assert "out of range" in body["detail"]


# --------------------------------------------------------------------------- many fields


def _many_fields(n: int, into_payload: bool = False) -> bytes:
    fields = ",".join(f'"f{i:07d}":0' for i in range(n))
    if into_payload:
        return ('{"task_type":"demo.sleep","payload":{"seconds":0,' + fields + "}}").encode()
    return ('{"task_type":"demo.noop","payload":{},' + fields + "}").encode()


async def _median_seconds(client: httpx.AsyncClient, path: str, body: bytes) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        r = await client.post(path, content=body, headers=JSON)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 422, r.text[:300]
    return statistics.median(times)


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/api/v1/tasks", _many_fields(150_000), "body: 150000 unknown field(s)"),
        (
            "/api/v1/tasks",
            _many_fields(150_000, into_payload=True),
            "body.payload: 150000 unknown field(s)",
        ),
        (
            "/api/v1/tasks/batch",
            b'{"tasks":[' + _many_fields(150_000) + b"]}",
            "body.tasks[0]: 150000 unknown field(s)",
        ),
    ],
    ids=["top-level", "payload", "batch-item"],
)
async def test_many_unknown_fields_answer_small_and_fast(
    live_api: Callable[..., LiveApi], path: str, body: bytes, where: str
) -> None:
    api = live_api(max_body_bytes=4 * 1024 * 1024)
    async with api.client(timeout=60) as client:
        r = await client.post(path, content=body, headers=JSON)
        assert r.status_code in (422, 207), r.text[:300]
        assert len(r.content) < 16 * 1024, len(r.content)
        text = r.text
        assert where in text, text[:500]
        assert "f0000000" in text and "and 149980 more" in text
        # The same 150k fields where any field is allowed (a demo.noop payload), with one
        # error elsewhere: parsing costs the same, so the unknown fields must add little.
        fields = body[body.index(b'"f0000000"') :].split(b"}", 1)[0]
        baseline_body = b'{"task_type":"demo.noop","max_retries":-1,"payload":{' + fields + b"}}"
        baseline = await _median_seconds(client, "/api/v1/tasks", baseline_body)
        if r.status_code == 422:
            many = await _median_seconds(client, path, body)
            assert many <= 3 * baseline, (many, baseline)


async def test_validation_errors_are_capped(client: httpx.AsyncClient) -> None:
    """1,000 bad ids make 1,000 pydantic errors; the 422 lists 20 and counts the rest."""
    body = json.dumps({"task_ids": list(range(1000))}).encode()
    r = await client.post("/api/v1/tasks/lookup", content=body, headers=JSON)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == 21
    assert detail[-1]["type"] == "too_many_errors" and "980 more" in detail[-1]["msg"]
    assert detail[0]["loc"] == ["body", "task_ids", 0]


async def test_large_bad_input_is_not_echoed(client: httpx.AsyncClient) -> None:
    """A 1 MiB string where a list belongs: the 422 shows only the start of it."""
    body = json.dumps({"task_ids": "x" * (1024 * 1024)}).encode()
    r = await client.post("/api/v1/tasks/lookup", content=body, headers=JSON)
    assert r.status_code == 422
    assert len(r.content) < 4 * 1024, len(r.content)
    assert r.json()["detail"][0]["loc"] == ["body", "task_ids"]


# --------------------------------------------------------------------------- poisoned store


async def test_poisoned_tasks_in_the_store_do_not_break_reads(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    """Tasks written past the door (an old server, another Redis client) are shown marked."""
    good = []
    for text in ("first good text", "second good text"):
        r = await client.post("/api/v1/tasks/summarize/", json={"content": text})
        assert r.status_code == 201
        good.append(r.json()["task_id"])

    queue = await store(api)
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(600):
        cursor["a"] = {}
        cursor = cursor["a"]
    written = await queue.submit_many(
        [
            NewTask(task_type="demo.noop", payload={"note": "bad \udfff"}),
            NewTask(task_type="demo.noop", payload={}, metadata={"deep": nested}),
            NewTask(task_type="demo.noop", payload={}),
        ]
    )
    surrogate, deep_meta, garbage = (s.task_id for s in written)
    # A hash another client damaged: bytes that are not UTF-8, numbers that are not numbers,
    # a state no version writes, a result with a lone surrogate.
    await queue.redis.hset(
        queue.keys.task(garbage),
        mapping={
            b"last_error": b"\xff\xfe not utf-8",
            b"progress": b"not-a-number",
            b"retry_count": b"many",
            b"state": b"BOGUS",
            b"result": b'{"text":"\\udfff"}',
        },
    )
    bad = {surrogate: "payload", deep_meta: "metadata", garbage: "state"}

    def check(task: dict[str, Any]) -> None:
        if task["task_id"] in bad:
            assert task["error"] and bad[task["task_id"]] in task["error"], task["error"]
        else:
            assert task["error"] is None
            assert task["content"].endswith("good text")

    listing = await client.get("/api/v1/tasks", params={"page_size": 100})
    assert listing.status_code == 200, listing.text[:300]
    tasks = listing.json()["tasks"]
    assert {t["task_id"] for t in tasks} >= set(good) | set(bad)
    for task in tasks:
        check(task)

    summaries = await client.get("/api/v1/tasks/summaries/", params={"page_size": 100})
    assert summaries.status_code == 200, summaries.text[:300]
    marked = {t["task_id"] for t in summaries.json()["tasks"] if t["error"]}
    assert marked == set(bad)

    filtered = await client.get("/api/v1/tasks", params={"task_type": "demo.noop"})
    assert filtered.status_code == 200

    for task_id in [*good, *bad]:
        one = await client.get(f"/api/v1/tasks/{task_id}")
        assert one.status_code == 200, one.text[:300]
        check(one.json())

    lookup = await client.post("/api/v1/tasks/lookup", json={"task_ids": [*good, *bad]})
    assert lookup.status_code == 200, lookup.text[:300]
    assert [t["task_id"] for t in lookup.json()["tasks"]] == [*good, *bad]
    for task in lookup.json()["tasks"]:
        check(task)

    shown = next(t for t in lookup.json()["tasks"] if t["task_id"] == garbage)
    assert shown["state"] == "FAILED" and "\ufffd" in shown["last_error"]
    assert "progress" in shown["error"] and "retry_count" in shown["error"], shown["error"]

    queue_view = await client.get("/api/v1/queues/primary/tasks")
    assert queue_view.status_code == 200, queue_view.text[:300]
