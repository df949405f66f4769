"""What the clients show of a live server's answers, once per client: a submit's settings, a
named batch's times, compact reprs of real results, and an error that says the base URL points
at something else than an AsyncTaskFlow server."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sdk_support import Api, LiveServer

from support import free_port
from taskflow_sdk import (
    AsyncClient,
    Client,
    InternalServerError,
    NotFoundError,
    TaskflowError,
    TaskState,
)
from taskflow_sdk.models import Tasks
from taskflow_server.pdf import sample_dir

TEXT = "The harbour committee met on Tuesday. It approved the new pier. Work starts in May."
PAGE = "<!doctype html><html><head><title>Other app</title></head><body>" + "x" * 4096
"""What another web app answers: a 4 KB HTML page."""


async def test_submit_shows_the_max_retries_asked_for(api: Api, server: LiveServer) -> None:
    key = f"retries-{api.kind}-{uuid.uuid4().hex}"
    task = await api("submit", "demo.noop", {"n": 1}, max_retries=1, idempotency_key=key)
    assert task.created is True and task.max_retries == 1
    assert task.task_type == "demo.noop" and task.priority == "default"
    assert "retries 0/1" in task.line()
    again = await api("submit", "demo.noop", {"n": 1}, max_retries=7, idempotency_key=key)
    assert again.created is False and again.task_id == task.task_id
    assert again.max_retries == 1  # the earlier task's own setting, not this request's
    default = await api("summarize", TEXT)
    assert default.max_retries == server.settings.default_max_retries
    full = await api("get", task.task_id)
    assert full.max_retries == 1


async def test_pdf_upload_shows_the_max_retries_asked_for(api: Api) -> None:
    pdf = sorted(sample_dir().glob("*.pdf"))[0]
    task = await api("extract_pdf", pdf, max_retries=2, idempotency_key=f"pdf-{uuid.uuid4().hex}")
    assert task.max_retries == 2 and task.task_type == "pdfxtract"


async def test_named_batch_keeps_its_name_and_times(api: Api) -> None:
    before = time.time()
    texts = [f"{TEXT} Item {uuid.uuid4().hex}." for _ in range(3)]
    run = await api.batch(texts=texts, name="harbour notes")
    assert run.name == "harbour notes" and "'harbour notes'" in repr(run)
    assert before <= run.started_at <= time.time() and run.finished_at is None
    await api.run(run, "wait", timeout=30, progress=False)
    assert run.counts() == {"COMPLETED": 3}
    assert run.finished_at is not None and run.started_at <= run.finished_at <= time.time()
    unnamed = await api.batch(texts=texts)  # the same batch: the name is not part of the keys
    assert unnamed.name is None and unnamed.new_tasks == 0


async def test_wait_queues_and_workers_print_compactly(api: Api) -> None:
    answer = await api(
        "submit_many", [{"task_type": "demo.noop", "payload": {"i": i}} for i in range(40)]
    )
    done = await api("wait", answer.tasks, timeout=30)
    assert isinstance(done, Tasks) and isinstance(done, list) and len(done) == 40
    assert all(t.state is TaskState.COMPLETED for t in done)
    text = repr(done)
    assert len(text) < 2048 and text.startswith("40 task(s): COMPLETED=40")
    assert done[0].task_id in text and text.endswith("… 20 more")
    queues = repr(await api("queues"))
    assert queues.startswith("QueueStatus") and "COMPLETED=" in queues and len(queues) < 600
    workers = await api("workers")
    shown = repr(workers)
    assert shown.startswith("1 worker(s): 1 healthy") and len(shown) < 600
    assert workers.workers[0].label in shown and "<table>" in workers._repr_html_()


def _other_app_handler(request: BaseHTTPRequestHandler) -> None:
    """Another web app: ``/boom...`` answers 500, ``/ok...`` 200 and anything else 404, each
    with an HTML page."""
    path = request.path
    status = 500 if "/boom" in path else 200 if "/ok" in path else 404
    body = PAGE.encode()
    request.send_response(status)
    request.send_header("Content-Type", "text/html; charset=utf-8")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


_OtherApp = type(
    "_OtherApp",
    (BaseHTTPRequestHandler,),
    {
        "do_GET": _other_app_handler,
        "do_POST": _other_app_handler,
        "log_message": lambda self, *args: None,
    },
)
"""The request handler of :func:`_other_app` (``http.server`` calls ``do_<METHOD>``)."""


@contextlib.contextmanager
def _other_app() -> Iterator[str]:
    """A loopback HTTP server that is not AsyncTaskFlow; yields its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _OtherApp)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize("prefix", ["", "/ok", "/boom"])
async def test_a_wrong_base_url_says_so_without_the_page(kind: str, prefix: str) -> None:
    with _other_app() as root:
        base = root + prefix
        client: Client | AsyncClient
        client = Client(base, max_retries=0) if kind == "sync" else AsyncClient(base, max_retries=0)
        api = Api(client)
        try:
            with pytest.raises(TaskflowError) as info:
                await api("get", "some-task")
        finally:
            await api.close()
    error = info.value
    status = {"": 404, "/ok": 200, "/boom": 500}[prefix]
    assert str(error) == f"no AsyncTaskFlow server at {base} (it answered {status} text/html)"
    assert "<html" not in str(error) and "xxxx" not in repr(error)
    if status == 404:
        assert isinstance(error, NotFoundError) and error.status_code == 404
    if status == 500:
        assert isinstance(error, InternalServerError)
    if status != 200:
        assert isinstance(error.body, str) and error.body == PAGE[:200]  # type: ignore[attr-defined]
        assert error.detail is None  # type: ignore[attr-defined]
