"""Both clients against a live server: every method, every reachable error, auth, events.

Each test runs twice through the ``api`` fixture (sync client in a thread, async client on the
test's loop), so the two clients are held to one behaviour.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sdk_support import (
    TOKEN,
    Api,
    DroppingProxy,
    LiveServer,
    make_api,
    run_server,
)

from support import eventually, free_port, wait_until
from taskflow_sdk import (
    APIConnectionError,
    APITimeoutError,
    AsyncBatchRun,
    AsyncClient,
    AsyncEventStream,
    AsyncTaskPager,
    AuthenticationError,
    BadRequestError,
    BatchRun,
    BreakerStatus,
    Client,
    ConflictError,
    EventStream,
    Health,
    Metrics,
    NotFoundError,
    OpenRouterStatus,
    PayloadTooLargeError,
    QueueStatus,
    RequeueReport,
    ServiceUnavailableError,
    Task,
    TaskFailed,
    TaskList,
    TaskPager,
    TaskState,
    TaskTimeout,
    UnprocessableEntityError,
    WorkerList,
)
from taskflow_sdk.async_client import AsyncBreaker, AsyncOpenRouter
from taskflow_sdk.client import Breaker, OpenRouter
from taskflow_server.pdf import sample_dir

TEXT = (
    "The harbor district council met on Monday evening. It approved a plan for new buses. "
    "Residents asked about the costs and the timing of the work. The mayor promised monthly "
    "reports and an open meeting where anyone can speak."
)


# --------------------------------------------------------------------------- surface


def _public(cls: type) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if callable(member):
            out[name] = list(inspect.signature(member).parameters)
        else:
            out[name] = []
    return out


@pytest.mark.parametrize(
    ("sync_cls", "async_cls"),
    [
        (Client, AsyncClient),
        (Breaker, AsyncBreaker),
        (OpenRouter, AsyncOpenRouter),
        (BatchRun, AsyncBatchRun),
    ],
)
def test_both_clients_expose_the_same_public_names(sync_cls: type, async_cls: type) -> None:
    assert _public(sync_cls) == _public(async_cls)


def test_pagers_and_streams_match() -> None:
    assert {"pages", "to_list", "to_pandas"} <= set(_public(TaskPager))
    assert set(_public(TaskPager)) == set(_public(AsyncTaskPager))
    sync_stream = set(_public(EventStream)) - {"close"}
    async_stream = set(_public(AsyncEventStream)) - {"aclose"}
    assert sync_stream == async_stream


def test_instance_attributes_match(server: LiveServer) -> None:
    sync, other = Client(server.url), AsyncClient(server.url)
    try:
        assert {n for n in vars(sync) if not n.startswith("_")} == {
            n for n in vars(other) if not n.startswith("_")
        }
    finally:
        sync.close()


# --------------------------------------------------------------------------- tasks


async def test_summarize_wait_and_result(api: Api) -> None:
    task = await api("summarize", TEXT, sentences=2)
    assert task.created is True and task.state is TaskState.PENDING
    done = await api("wait", task, timeout=30)
    assert done.state is TaskState.COMPLETED and done.ok
    assert isinstance(done.result, dict) and done.result["provider"] == "offline"
    assert done.summary and done.summary == done.result_text
    assert done.created_at is not None and done.created_at.tzinfo is not None
    assert [s.state for s in done.state_history][-1] == "COMPLETED"
    assert "<table>" in done._repr_html_()


async def test_submit_with_options_and_idempotency(api: Api) -> None:
    key = f"sdk-{api.kind}-{time.monotonic_ns()}"
    first = await api(
        "submit",
        "demo.noop",
        {"n": 1},
        priority="high",
        max_retries=5,
        idempotency_key=key,
        metadata={"who": "test"},
    )
    again = await api("submit", "demo.noop", {"n": 2}, idempotency_key=key)
    assert first.created is True and again.created is False
    assert again.task_id == first.task_id
    full = await api("wait", first.task_id, timeout=10)
    assert full.priority == "high" and full.max_retries == 5
    assert full.metadata == {"who": "test"} and full.idempotency_key == key


async def test_submit_many_reports_refused_items(api: Api) -> None:
    items = [{"task_type": "demo.noop", "payload": {"i": i}} for i in range(3)]
    items.insert(1, {"task_type": "no.such.type"})
    result = await api("submit_many", items)
    assert (result.accepted, result.failed, result.created) == (3, 1, 3)
    assert [i.ok for i in result.items] == [True, False, True, True]
    assert "no.such.type" in (result.errors[0].error or "")
    assert len(result.to_pandas()) == 4
    done = await api("wait", result.tasks, timeout=10)
    assert [t.state for t in done] == [TaskState.COMPLETED] * 3


async def test_extract_pdf_uploads_once_and_flattens(api: Api) -> None:
    pdf = sorted(sample_dir().glob("*.pdf"))[0]
    task = await api("extract_pdf", pdf, issue_date="2024-05-31")
    again = await api(
        "extract_pdf",
        pdf.read_bytes(),
        issue_date="2024-05-31",
        filename=pdf.name,
        idempotency_key=f"pdf-{api.kind}-{time.time_ns()}",
    )
    with pdf.open("rb") as fh:
        third = await api("extract_pdf", fh)
    done = await api("wait", [task, again, third], timeout=60)
    assert all(t.ok for t in done)
    assert done[0].result["filename"] == pdf.name
    assert done[0].metadata.get("sha256") or done[0].content
    assert done[0].result["pages"][0]["articles"]


async def test_get_list_filters_and_pagination(api: Api) -> None:
    marker = f"{api.kind}{time.time_ns()}"
    subs = [await api("submit", "demo.noop", {"m": marker}) for _ in range(5)]
    await api("wait", subs, timeout=10)
    got = await api("get", subs[0])
    assert got.task_id == subs[0].task_id and got.task_type == "demo.noop"
    since = datetime.now(UTC) - timedelta(minutes=5)
    tasks = await api.list(
        task_type="demo.noop", state="COMPLETED", since=since, page_size=2, limit=500
    )
    ids = {t.task_id for t in tasks}
    assert {s.task_id for s in subs} <= ids
    assert len(ids) == len(tasks)  # no page repeats an item
    limited = await api.list(page_size=2, limit=3)
    assert len(limited) == 3
    prefix = await api.list(id_prefix=subs[1].task_id)
    assert [t.task_id for t in prefix] == [subs[1].task_id]
    frame = await api.list_frame(task_type="demo.noop", limit=4, sort="created_at")
    assert list(frame.columns[:3]) == ["task_id", "task_type", "state"] and len(frame) == 4


async def test_wait_many_stream_and_timeout(api: Api) -> None:
    subs = [await api("submit", "demo.sleep", {"seconds": 0.2}) for _ in range(3)]
    done = await api("wait", subs, timeout=20, stream=True)
    assert [t.task_id for t in done] == [s.task_id for s in subs]
    assert all(t.ok for t in done)
    slow = await api("submit", "demo.sleep", {"seconds": 30})
    started = time.monotonic()
    with pytest.raises(TaskTimeout) as info:
        await api("wait", [slow, subs[0]], timeout=0.5)
    assert time.monotonic() - started < 5
    assert [t.task_id for t in info.value.pending] == [slow.task_id]
    assert [t.task_id for t in info.value.done] == [subs[0].task_id]
    with pytest.raises(TaskTimeout):
        await api("wait", slow, timeout=0.5, stream=True)
    await api("cancel", slow)


async def test_statuses_answer_where_many_tasks_stand(api: Api) -> None:
    subs = [await api("submit", "demo.noop", {}) for _ in range(3)]
    await api("wait", subs, timeout=20)
    sleeper = await api("submit", "demo.sleep", {"seconds": 30})
    ids = [s.task_id for s in subs] + [sleeper.task_id, "no-such-task"]
    found = {s.task_id: s for s in await api("statuses", ids)}
    assert set(found) == set(ids) - {"no-such-task"}
    assert all(found[s.task_id].state is TaskState.COMPLETED for s in subs)
    assert found[sleeper.task_id].state in (TaskState.PENDING, TaskState.ACTIVE)
    await api("cancel", sleeper)


async def test_wait_raise_on_failure(api: Api) -> None:
    bad = await api("submit", "demo.fail", {"error_class": "invalid_input", "message": "nope"})
    with pytest.raises(TaskFailed) as info:
        await api("wait", bad, timeout=10, raise_on_failure=True)
    assert info.value.task.state is TaskState.DLQ
    assert info.value.task.error_type == "invalid_input" and "nope" in str(info.value)


async def test_cancel_retry_delete_dlq(api: Api) -> None:
    sleeper = await api("submit", "demo.sleep", {"seconds": 30})
    await eventually(lambda: _state_is(api, sleeper, TaskState.ACTIVE), "the sleeper to be ACTIVE")
    cancelled = await api("cancel", sleeper)
    assert cancelled.cancel_requested
    assert (await api("wait", sleeper, timeout=10)).state is TaskState.CANCELLED

    failed = await api("submit", "demo.fail", {"error_class": "invalid_input"})
    failed = await api("wait", failed, timeout=10)
    assert failed.state is TaskState.DLQ
    dead = await api("dlq", limit=1000)
    assert isinstance(dead, TaskList) and failed.task_id in {t.task_id for t in dead}
    assert "error_type" in dead.to_pandas().columns
    assert failed.task_id in await api("queue_tasks", "dlq", limit=1000)
    with pytest.raises(UnprocessableEntityError):
        await api("queue_tasks", "nope")
    again = await api("retry", failed, reset_retry_count=True)
    assert again.task_id == failed.task_id and again.retry_count == 0
    assert again.state in (TaskState.PENDING, TaskState.ACTIVE, TaskState.DLQ)  # a worker is fast
    assert (await api("wait", failed, timeout=10)).state is TaskState.DLQ

    await api("delete", failed)
    with pytest.raises(NotFoundError) as info:
        await api("get", failed)
    assert info.value.status_code == 404 and "not found" in (info.value.detail or "")


async def _state_is(api: Api, task: Task, state: TaskState) -> bool:
    return bool((await api("get", task)).state is state)


# --------------------------------------------------------------------------- system


async def test_queues_workers_health_openrouter(api: Api) -> None:
    queues = await api("queues")
    assert isinstance(queues, QueueStatus) and queues.count("COMPLETED") >= 0
    assert set(queues.to_pandas()["name"]) >= {"primary", "dlq", "PENDING", "CANCELLED"}
    workers = await api("workers")
    assert isinstance(workers, WorkerList) and len(workers) >= 1
    assert workers.workers[0].last_heartbeat is not None
    assert len(workers.to_pandas()) == len(workers)
    health = await api("health")
    assert isinstance(health, Health) and health.healthy
    status = await api("openrouter.status", force_refresh=True)
    assert isinstance(status, OpenRouterStatus) and status.status == "api_key_missing"
    metrics = await api("openrouter.metrics", days=3)
    assert isinstance(metrics, Metrics) and len(metrics.to_pandas()) == 3
    repaired = await api("requeue_orphaned")
    assert isinstance(repaired, RequeueReport)
    assert (repaired.found, repaired.requeued, repaired.task_ids) == (0, 0, [])


async def test_breaker_open_status_reset(api: Api) -> None:
    try:
        opened = await api("breaker.open", f"test {api.kind}")
        assert isinstance(opened, BreakerStatus) and opened.state == "open" and opened.held
        status = await api("breaker.status")
        assert status.is_open and status.reason == f"test {api.kind}"
    finally:
        reset = await api("breaker.reset")
    assert reset.state == "closed" and not reset.is_open


# --------------------------------------------------------------------------- errors


async def test_status_errors_from_the_server(api: Api, server: LiveServer) -> None:
    with pytest.raises(UnprocessableEntityError) as bad_type:
        await api("submit", "no.such.type")
    assert "unknown task type" in (bad_type.value.detail or "")
    with pytest.raises(UnprocessableEntityError):
        await api("submit", "demo.sleep", {"seconds": -1})
    done = await api("wait", await api("submit", "demo.noop"), timeout=10)
    with pytest.raises(BadRequestError):
        await api("retry", done)
    with pytest.raises(ConflictError):
        await api("cancel", done)
    with pytest.raises(NotFoundError):
        await api("delete", "nonexistent-task")
    with pytest.raises(PayloadTooLargeError) as big:
        await api("summarize", "x" * (server.settings.max_body_bytes + 10))
    assert big.value.status_code == 413
    with pytest.raises(BadRequestError):
        await api("extract_pdf", b"not a pdf at all", idempotency_key=f"np-{time.time_ns()}")


async def test_auth(kind: str, secured_server: LiveServer) -> None:
    anon = make_api(kind, secured_server.url, token=None)
    wrong = make_api(kind, secured_server.url, token="wrong")
    right = make_api(kind, secured_server.url, token=TOKEN)
    try:
        for bad in (anon, wrong):
            with pytest.raises(AuthenticationError) as info:
                await bad("queues")
            assert info.value.status_code == 401 and "token" in (info.value.detail or "")
        assert (await anon("health")).status  # health needs no token
        assert isinstance(await right("queues"), QueueStatus)
    finally:
        for a in (anon, wrong, right):
            await a.close()


async def test_token_from_environment(
    kind: str, secured_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKFLOW_API_TOKEN", TOKEN)
    monkeypatch.setenv("TASKFLOW_URL", secured_server.url + "/")
    env_api = make_api(kind, None)  # type: ignore[arg-type]
    try:
        assert env_api.client.base_url == secured_server.url
        assert isinstance(await env_api("queues"), QueueStatus)
    finally:
        await env_api.close()


async def test_connection_errors(kind: str) -> None:
    dead = make_api(kind, f"http://127.0.0.1:{_closed_port()}", max_retries=1)
    try:
        with pytest.raises(APIConnectionError) as info:
            await dead("get", "x")
        assert "cannot reach" in str(info.value)
    finally:
        await dead.close()


async def test_timeout_error(kind: str) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = silent.getsockname()[1]
    slow = make_api(kind, f"http://127.0.0.1:{port}", max_retries=0, timeout=5.0)
    try:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await slow("queues", timeout=0.3)
        assert time.monotonic() - started < 4  # the per-call timeout won over the client's
    finally:
        await slow.close()
        silent.close()


async def test_store_down_is_503_after_retries(kind: str) -> None:
    dead_redis = f"redis://127.0.0.1:{_closed_port()}/0"
    with run_server(dead_redis, workers=0) as broken:
        client = make_api(kind, broken.url, max_retries=1)
        try:
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError) as info:
                await client("queues")
            assert info.value.status_code == 503
            assert time.monotonic() - started >= 0.9  # one retry after Retry-After: 1
        finally:
            await client.close()


def _closed_port() -> int:
    return free_port()


# --------------------------------------------------------------------------- events


async def test_events_stream(api: Api) -> None:
    holder: dict[str, Task] = {}

    def submit() -> None:
        with Client(api.client.base_url) as c:
            holder["t"] = c.submit("demo.noop")

    events, stream = await api.events(
        3, on_open=submit, types=["task_created", "task_state_changed"]
    )
    tid = holder["t"].task_id
    mine = [e for e in events if e.task_id == tid]
    assert [e.type for e in mine][:1] == ["task_created"]
    assert stream.last_event_id == events[-1].id


async def test_events_resume_after_dropped_connection(api: Api, server: LiveServer) -> None:
    """Cut the stream's TCP connection while events flow: the stream reconnects with
    Last-Event-ID and delivers every event exactly once, in order."""
    proxy = DroppingProxy(int(server.url.rsplit(":", 1)[1]))
    client: Client | AsyncClient
    client = Client(proxy.url) if not api.is_async else AsyncClient(proxy.url)
    via_proxy = Api(client)
    n = 30
    submitted: list[str] = []

    def drop_and_wait_for_reconnect() -> None:
        connections = proxy.accepted
        proxy.drop_all()
        time.sleep(0.3)  # events keep coming while the stream is down
        wait_until(lambda: proxy.accepted != connections, "the stream to reconnect", 15, every=0.01)

    def produce() -> None:
        with Client(server.url) as direct:
            for i in range(n):
                submitted.append(direct.submit("demo.noop", {"i": i}).task_id)
                if i in (9, 19):
                    drop_and_wait_for_reconnect()

    try:
        events, stream = await via_proxy.events(
            n, on_open=produce, types=["task_created"], timeout=30
        )
    finally:
        await via_proxy.close()
        proxy.close()
    created = [e.task_id for e in events]
    assert created == submitted  # no gap, no duplicate, in order
    ids = [e.id for e in events]
    assert len(set(ids)) == n
    assert stream.reconnects >= 2 and proxy.accepted >= 3


async def test_events_resume_from_id(api: Api) -> None:
    first = await api("submit", "demo.noop")
    await api("wait", first, timeout=10)
    seen, _ = await api.events(1, last_event_id="0-0", task_id=first.task_id)
    assert seen[0].type == "task_created"
    later, _ = await api.events(1, last_event_id=seen[0].id, task_id=first.task_id)
    assert later[0].id > seen[0].id  # type: ignore[operator]


# --------------------------------------------------------------------------- loops and threads


async def test_async_client_inside_running_loop(server: LiveServer) -> None:
    async with AsyncClient(server.url) as client:
        tasks = await asyncio.gather(*(client.submit("demo.noop", {"i": i}) for i in range(20)))
        done = await client.wait(tasks, timeout=20)
        assert all(t.ok for t in done)
        assert asyncio.get_running_loop().is_running()


async def test_sync_client_from_a_thread_while_a_loop_runs(server: LiveServer) -> None:
    results: list[Task] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with Client(server.url) as client:
                task = client.submit("demo.sleep", {"seconds": 0.1})
                results.append(client.wait(task, timeout=10))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    ticks = 0
    while thread.is_alive():  # the loop keeps running meanwhile
        ticks += 1
        await asyncio.sleep(0.01)
    thread.join()
    assert not errors and results[0].ok and ticks > 1
