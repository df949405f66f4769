"""Pure logic of the SDK: configuration, retries, the error mapping, SSE decoding, models, keys,
result flattening. HTTP goes to ``httpx.MockTransport``; nothing here needs a server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from taskflow_sdk import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    Task,
    TaskflowError,
    TaskState,
    UnprocessableEntityError,
)
from taskflow_sdk._config import USE_CLIENT_DEFAULT, ClientConfig, resolve_config
from taskflow_sdk._flows import RequestSpec, retry_after_seconds, retry_delay
from taskflow_sdk._requests import BATCH_BYTES
from taskflow_sdk._sse import SSEDecoder
from taskflow_sdk._wait import WaitState
from taskflow_sdk.batch import derive_key, flatten_pdf_result
from taskflow_sdk.errors import error_for_response
from taskflow_sdk.events import EventCursor
from taskflow_sdk.models import BreakerStatus, Worker

URL = "http://taskflow.test"


def _config(**kw: Any) -> ClientConfig:
    return resolve_config(URL, None, 5.0, kw.pop("max_retries", 3), env={})


# --------------------------------------------------------------------------- config


def test_config_from_arguments_environment_and_defaults() -> None:
    env = {"TASKFLOW_URL": "http://env:9000/", "TASKFLOW_API_TOKEN": "tok"}
    cfg = resolve_config(None, None, 3.0, 2, env=env)
    assert cfg.base_url == "http://env:9000" and cfg.token == "tok"
    assert cfg.headers()["Authorization"] == "Bearer tok"
    assert resolve_config("h:1", "x", None, 0, env=env).base_url == "http://h:1"
    plain = resolve_config(None, None, 3.0, 2, env={})
    assert plain.base_url == "http://127.0.0.1:8000" and "Authorization" not in plain.headers()
    assert plain.timeout_for(USE_CLIENT_DEFAULT) == plain.timeout
    assert plain.timeout_for(None) == httpx.Timeout(None)
    with pytest.raises(ValueError):
        resolve_config(None, None, 1.0, -1, env={})


# --------------------------------------------------------------------------- retry decision


def _resp(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", URL))


def test_retry_delay_rules() -> None:
    cfg = _config()
    get = RequestSpec("GET", "/x")
    post = RequestSpec("POST", "/x", idempotent=False)
    assert retry_delay(cfg, get, 0, _resp(404)) is None
    assert retry_delay(cfg, post, 0, _resp(503)) is None  # not idempotent
    assert retry_delay(cfg, get, 3, _resp(503)) is None  # out of retries
    assert retry_delay(cfg, get, 0, _resp(503, {"Retry-After": "2"})) == 2.0
    assert retry_delay(cfg, get, 0, _resp(429, {"Retry-After": "9999"})) == cfg.retry_after_max
    # exponential with up to 25 % jitter, capped
    assert retry_delay(cfg, get, 0, _resp(502), rng=lambda: 0.0) == cfg.backoff_initial
    assert retry_delay(cfg, get, 2, _resp(502), rng=lambda: 1.0) == cfg.backoff_initial * 4 * 0.75
    big = ClientConfig(URL, None, httpx.Timeout(1), 50)
    assert retry_delay(big, get, 40, _resp(500), rng=lambda: 0.0) == big.backoff_max
    refused = httpx.ConnectError("refused")
    assert retry_delay(cfg, post, 0, refused) is not None  # never reached the server
    assert retry_delay(cfg, post, 0, httpx.ReadError("reset")) is None
    assert retry_delay(cfg, get, 0, httpx.ReadError("reset")) is not None
    assert retry_delay(cfg, get, 0, ValueError("bug")) is None


def test_retry_after_http_date() -> None:
    response = _resp(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_seconds(response, now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds(_resp(503, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(_resp(503)) is None


def _mock(handler: Any) -> tuple[httpx.Client, httpx.AsyncClient]:
    def sync_handler(request: httpx.Request) -> httpx.Response:
        return handler(request)  # type: ignore[no-any-return]

    async def async_handler(request: httpx.Request) -> httpx.Response:
        return handler(request)  # type: ignore[no-any-return]

    return (
        httpx.Client(transport=httpx.MockTransport(sync_handler)),
        httpx.AsyncClient(transport=httpx.MockTransport(async_handler)),
    )


def _both(handler: Any, **kw: Any) -> tuple[Client, AsyncClient]:
    http, ahttp = _mock(handler)
    return Client(URL, http_client=http, **kw), AsyncClient(URL, http_client=ahttp, **kw)


def test_submit_retries_with_one_stable_idempotency_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("taskflow_sdk._flows.random.random", lambda: 0.0)
    monkeypatch.setattr("time.sleep", lambda s: None)
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        keys.append(body["idempotency_key"])
        assert request.headers["Authorization"] == "Bearer t"
        if len(keys) % 3:
            return httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})
        return httpx.Response(201, json={"task_id": "abc", "state": "PENDING", "created": True})

    sync, other = _both(handler, token="t", max_retries=2)
    task = sync.submit("demo.noop", {"a": 1})
    assert task.task_id == "abc" and task.created
    assert len(keys) == 3 and len(set(keys)) == 1
    keys.clear()
    atask = asyncio.run(other.submit("demo.noop"))
    assert atask.task_id == "abc" and len(set(keys)) == 1 and len(keys) == 3
    keys.clear()
    sync.submit("demo.noop")
    sync.submit("demo.noop")
    assert len(set(keys)) == 2  # a new key per call


def test_not_idempotent_calls_are_not_retried_on_5xx() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(500, json={"detail": "boom"})

    sync, _ = _both(handler, max_retries=3)
    with pytest.raises(InternalServerError):
        sync.retry("t1")
    assert calls == ["/api/v1/tasks/t1/retry"]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, ServiceUnavailableError),
        (418, APIStatusError),
    ],
)
def test_every_status_maps_to_its_class(status: int, cls: type[APIStatusError]) -> None:
    body: Any = {"detail": f"because {status}"}
    if status == 422:
        body = {"detail": [{"loc": ["body", "payload", "seconds"], "msg": "too big", "type": "x"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    sync, other = _both(handler, max_retries=0)
    for call in (lambda: sync.get("t"), lambda: asyncio.run(other.get("t"))):
        with pytest.raises(cls) as info:
            call()
        err = info.value
        assert type(err) is cls and isinstance(err, TaskflowError)
        assert err.status_code == status and err.response.status_code == status
        assert err.request.url.path == "/api/v1/tasks/t" and err.body == body
        expected = "payload.seconds: too big" if status == 422 else f"because {status}"
        assert err.detail == expected and expected in str(err)


def test_error_for_a_non_json_body() -> None:
    """A proxy's plain-text 502 is not an AsyncTaskFlow answer: the error says so, the body is
    kept (cut) in ``body`` but stays out of the message and ``detail``."""
    request = httpx.Request("GET", URL + "/api/v1/tasks/t")
    err = error_for_response(httpx.Response(502, text="Bad gateway " * 40, request=request))
    assert isinstance(err, InternalServerError) and err.body == ("Bad gateway " * 40)[:200]
    assert err.detail is None
    assert str(err) == f"no AsyncTaskFlow server at {URL} (it answered 502 text/plain)"


def test_transport_errors_map_to_connection_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    sync, other = _both(refuse, max_retries=0)
    with pytest.raises(APIConnectionError) as info:
        sync.queues()
    assert not isinstance(info.value, APITimeoutError) and info.value.request is not None
    with pytest.raises(APIConnectionError):
        asyncio.run(other.queues())
    sync, other = _both(slow, max_retries=0)
    with pytest.raises(APITimeoutError):
        sync.health()
    with pytest.raises(APITimeoutError):
        asyncio.run(other.health())


def test_requests_are_built_as_the_server_expects() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path.endswith("/tasks"):
            return httpx.Response(
                200,
                json={"tasks": [], "page": 1, "page_size": 5, "total_items": 0, "total_pages": 0},
            )
        if path.endswith("/dlq"):
            return httpx.Response(200, json=[])
        if "circuit-breaker" in path:
            return httpx.Response(200, json={"message": "ok", "breaker": {"state": "half_open"}})
        return httpx.Response(200, json={"status": "active", "metrics": {}, "days": 2})

    sync, _ = _both(handler)
    assert (
        sync.list(
            state="dlq", task_type="summarize", since="2024-01-01", sort="updated_at", page_size=5
        ).to_list()
        == []
    )
    params = dict(seen[-1].url.params)
    assert params == {
        "task_status": "DLQ",
        "task_type": "summarize",
        "start_date": "2024-01-01",
        "sort_by": "updated_at",
        "sort_order": "asc",
        "page": "1",
        "page_size": "5",
    }
    assert len(sync.dlq(limit=7)) == 0 and seen[-1].url.params["limit"] == "7"
    assert sync.breaker.open("why").state == "half-open"
    assert json.loads(seen[-1].content) == {"reason": "why"}
    sync.openrouter.status(force_refresh=True)
    assert seen[-1].url.params["force_refresh"] == "true"
    sync.openrouter.metrics(days=2)
    assert seen[-1].url.params["days"] == "2"
    with pytest.raises(ValueError):
        sync.get("a/b")
    with pytest.raises(ValueError):
        sync.list(state="NOPE")


# --------------------------------------------------------------------------- waiting


def test_wait_state_deadline_and_order() -> None:
    now = [0.0]
    state = WaitState(["a", "b", "a"], 5.0, False, clock=lambda: now[0])
    assert state.pending == ["a", "b"]
    state.update(Task(task_id="b", state=TaskState.COMPLETED))
    assert state.pending == ["a"] and state.clip(10) == 5.0
    now[0] = 6.0
    with pytest.raises(TaskflowError) as info:
        state.check_deadline()
    assert "1 task(s) still unfinished" in str(info.value)
    state.update(Task(task_id="a", state="DLQ"))  # type: ignore[arg-type]
    assert state.finished and [t.task_id for t in state.result()] == ["a", "b"]


def test_wait_with_progress_shows_each_round(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    polls: list[list[str]] = []
    fetched: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = json.loads(request.content)["task_ids"]
        if request.url.path.endswith("/lookup"):
            fetched.append(ids)
            tasks = [{"task_id": i, "state": "COMPLETED", "content": "x" * 50} for i in ids]
            return httpx.Response(200, json={"tasks": tasks, "missing": []})
        assert request.url.path == "/api/v1/tasks/states"
        polls.append(ids)
        # first round: a finished, b running; second round: both finished
        state = {"a": "COMPLETED", "b": "COMPLETED" if len(polls) % 2 == 0 else "ACTIVE"}
        rows = [{"task_id": i, "state": state[i], "retry_count": 0, "progress": 0.5} for i in ids]
        return httpx.Response(200, json={"tasks": rows, "missing": []})

    sync, other = _both(handler)
    for run in (lambda: sync.wait(["a", "b"], progress=True), lambda: asyncio.run(_await(other))):
        polls.clear()
        fetched.clear()
        done = run()
        assert [t.state for t in done] == [TaskState.COMPLETED, TaskState.COMPLETED]
        assert all(t.content == "x" * 50 for t in done)  # the full detail, not the slim view
        assert polls == [["a", "b"], ["b"]]  # the second round asks only for the unfinished task
        assert fetched == [["a"], ["b"]]  # each full detail once, when it has finished
        shown = capsys.readouterr().err
        assert "wait" in shown and "1/2" in shown and "2/2" in shown
        assert "ACTIVE=1" in shown and "COMPLETED=2" in shown


async def _await(client: AsyncClient) -> list[Task]:
    async with asyncio.timeout(10):
        return await client.wait(["a", "b"], progress=True, poll_interval=0.01)


# --------------------------------------------------------------------------- SSE


def test_sse_decoder_handles_any_chunking_and_line_endings() -> None:
    stream = (
        '\ufeffretry: 3000\n\n: ping\n\nid: 1-0\ndata: {"a":1}\n\n'
        "id: 2-0\r\nevent: named\r\ndata: line one\r\ndata: line two\r\n\r\n"
        "id: 3-0\rdata:no-space\r\r"
        "data: no id\n\nid: 4-0\n\n"
    ).encode()
    expected = [
        ("1-0", "message", '{"a":1}'),
        ("2-0", "named", "line one\nline two"),
        ("3-0", "message", "no-space"),
        ("3-0", "message", "no id"),
    ]
    for size in (1, 2, 3, 7, len(stream)):
        decoder = SSEDecoder()
        events = []
        for start in range(0, len(stream), size):
            events += decoder.feed(stream[start : start + size])
        assert [(e.id, e.event, e.data) for e in events] == expected
        assert decoder.last_event_id == "4-0" and decoder.retry == 3000


def test_sse_utf8_split_across_chunks() -> None:
    raw = "data: caffè ☕\n\n".encode()
    decoder = SSEDecoder()
    events = [e for i in range(len(raw)) for e in decoder.feed(raw[i : i + 1])]
    assert events[0].data == "caffè ☕"


def test_event_cursor_drops_replayed_events_and_paces_reconnects() -> None:
    cursor = EventCursor("5-0", max_reconnects=2)
    frames = b"".join(
        f'id: {i}-0\ndata: {{"type":"task_created","task_id":"t{i}"}}\n\n'.encode()
        for i in (4, 5, 6, 7)
    )
    events = cursor.feed(frames)
    assert [e.task_id for e in events] == ["t6", "t7"] and cursor.last_event_id == "7-0"
    cursor.decoder.retry = 3000
    assert cursor.dropped(None) == 3.0
    assert cursor.dropped(None) > 0
    with pytest.raises(APIConnectionError):
        cursor.dropped(None)


# --------------------------------------------------------------------------- models


def test_task_result_prefers_result_data_then_json_text() -> None:
    structured = Task.model_validate(
        {
            "task_id": "t",
            "state": "COMPLETED",
            "task_type": "summarize",
            "result": "short",
            "result_data": {"summary": "short", "provider": "offline"},
            "metadata": None,
            "new_field": 1,
        }
    )
    assert structured.result == {"summary": "short", "provider": "offline"}
    assert structured.result_text == "short" and structured.summary == "short"
    assert structured.metadata == {} and structured.model_extra == {"new_field": 1}
    v1 = Task.model_validate(
        {
            "task_id": "t",
            "state": "COMPLETED",
            "task_type": "pdfxtract",
            "result": '{"pages": []}',
            "created_at": "2024-01-01T00:00:00Z",
        }
    )
    assert v1.result == {"pages": []} and v1.created_at is not None
    plain = Task.model_validate(
        {"task_id": "t", "state": "COMPLETED", "task_type": "summarize", "result": "{not json"}
    )
    assert plain.result == "{not json" and plain.summary == "{not json"
    assert TaskState.CANCELLED.is_terminal and not TaskState.SCHEDULED.is_terminal
    assert Task(task_id="x", state=TaskState.PENDING).row()["state"] == "PENDING"


def test_worker_and_breaker_timestamps() -> None:
    worker = Worker.model_validate(
        {
            "worker_id": "w",
            "status": "healthy",
            "circuit_breaker": {"state": "closed"},
            "last_heartbeat": "1700000000.5",
        }
    )
    assert worker.last_heartbeat is not None and worker.last_heartbeat.year == 2023
    breaker = BreakerStatus.model_validate({"state": "HALF_OPEN", "opened_at": 1700000000})
    assert breaker.state == "half-open" and breaker.is_open and breaker.opened_at is not None


# --------------------------------------------------------------------------- batch logic


def test_derive_key_is_stable_and_option_sensitive() -> None:
    a = derive_key("summarize", "ab" * 32, {"sentences": 2, "language": None})
    assert a == derive_key("summarize", "ab" * 32, {"sentences": 2})
    assert a != derive_key("summarize", "ab" * 32, {"sentences": 3})
    assert a != derive_key("summarize", "cd" * 32, {"sentences": 2})
    assert a != derive_key("pdfxtract", "ab" * 32, {"sentences": 2})
    assert a.startswith("tfb-summarize-") and len(a) < 200 and " " not in a


def test_flatten_pdf_result() -> None:
    result = {
        "filename": "a.pdf",
        "issue_date": "2024-05-31",
        "pages": [
            {
                "page_number": 1,
                "status": "processed",
                "reason": None,
                "articles": [
                    {
                        "title": "T1",
                        "subtitle": "S",
                        "author": "By A",
                        "body": "B1",
                        "topics": ["x"],
                        "summary": "sum",
                    },
                    {"title": "T2", "body": "B2"},
                ],
            },
            {"page_number": 2, "status": "skipped", "reason": "no text layer", "articles": []},
            {"page_number": 3, "articles": [{"title": "T3", "body": "B3", "topics": None}]},
        ],
    }
    rows = flatten_pdf_result(result)
    assert [(r["page"], r["article"], r["title"]) for r in rows] == [
        (1, 0, "T1"),
        (1, 1, "T2"),
        (3, 0, "T3"),
    ]
    assert rows[0]["author"] == "By A" and rows[1]["summary"] == "" and rows[2]["topics"] == []
    assert rows[0]["file"] == "a.pdf" and rows[0]["issue_date"] == "2024-05-31"
    assert flatten_pdf_result(None) == [] and flatten_pdf_result({"pages": None}) == []
    assert flatten_pdf_result(result, file="renamed.pdf")[0]["file"] == "renamed.pdf"


def test_batch_rejects_bad_arguments() -> None:
    sync, _ = _both(lambda r: httpx.Response(500))
    with pytest.raises(ValueError):
        sync.batch()
    with pytest.raises(TypeError):
        sync.batch(texts=["a"], colour="red")


def test_submit_many_splits_by_count_and_by_size() -> None:
    bodies: list[int] = []
    counts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["tasks"]
        bodies.append(len(request.content))
        counts.append(len(items))
        answer = [
            {"index": i, "ok": True, "task_id": it["idempotency_key"], "state": "PENDING"}
            for i, it in enumerate(items)
        ]
        return httpx.Response(200, json={"accepted": len(items), "items": answer})

    sync, _ = _both(handler)
    big = "x" * 300_000  # four fit in 1 MiB, not five
    items = [
        {"task_type": "summarize", "payload": {"content": big}, "idempotency_key": f"k{i}"}
        for i in range(9)
    ]
    result = sync.submit_many(items)
    assert counts == [3, 3, 3] and max(bodies) <= BATCH_BYTES
    assert [t.task_id for t in result.tasks] == [f"k{i}" for i in range(9)]
    assert [i.index for i in result.items] == list(range(9))
    bodies.clear()
    counts.clear()
    small = [{"task_type": "demo.noop", "idempotency_key": f"s{i}"} for i in range(2500)]
    assert len(sync.submit_many(small).tasks) == 2500 and counts == [1000, 1000, 500]
    huge = [{"task_type": "summarize", "payload": {"content": "y" * (BATCH_BYTES + 10)}}]
    counts.clear()
    sync.submit_many(huge + small[:2])
    assert counts == [1, 2]  # an item bigger than the budget goes alone
