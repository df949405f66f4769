"""Submitting tasks: generic, summarize (v1), pdfxtract uploads (v1) and batches."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import httpx
from api_helpers import LiveApi, minimal_pdf

from taskflow_server.store.queue import TaskQueue

StoreFactory = Callable[[LiveApi], Awaitable[TaskQueue]]


async def test_summarize_v1(api: LiveApi, client: httpx.AsyncClient, store: StoreFactory) -> None:
    for path in ("/api/v1/tasks/summarize/", "/api/v1/tasks/summarize"):
        r = await client.post(path, json={"content": "A long article about rivers."})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["state"] == "PENDING"
        assert body["created"] is True
        queue = await store(api)
        assert body["task_id"] in await queue.queue_ids("primary", 100)
        record = await queue.get(body["task_id"])
        assert record is not None and record.task_type == "summarize" and record.lane == "llm"
        assert (await queue.payload(body["task_id"]) or {})["content"].startswith("A long")


async def test_summarize_bad_input(api: LiveApi, client: httpx.AsyncClient) -> None:
    cases = [
        {},
        {"content": ""},
        {"content": 42},
        {"content": "x", "priority": "urgent"},
        {"content": "x", "unknown": 1},
        {"content": "x", "max_retries": -1},
        {"content": "x", "idempotency_key": "has space"},
    ]
    for body in cases:
        r = await client.post("/api/v1/tasks/summarize/", json=body)
        assert r.status_code == 422, (body, r.text)
        assert "detail" in r.json()
    r = await client.post(
        "/api/v1/tasks/summarize/",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    r = await client.post("/api/v1/tasks/summarize/", content=b"[1, 2]")
    assert r.status_code == 422


async def test_summarize_text_limit(live_api: Callable[..., LiveApi]) -> None:
    api = live_api(max_text_chars=100)
    async with api.client() as client:
        r = await client.post("/api/v1/tasks/summarize/", json={"content": "x" * 101})
        assert r.status_code == 422
        assert "TASKFLOW_MAX_TEXT_CHARS" in r.json()["detail"]
        r = await client.post("/api/v1/tasks/summarize/", json={"content": "x" * 100})
        assert r.status_code == 201


async def test_generic_submit_and_idempotency(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    body = {
        "task_type": "demo.sleep",
        "payload": {"seconds": 0.5},
        "priority": "high",
        "max_retries": 5,
        "idempotency_key": "job-1",
        "metadata": {"source": "test"},
    }
    first = await client.post("/api/v1/tasks", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    again = await client.post("/api/v1/tasks/", json=body)
    assert again.status_code == 200  # a repeat: same task, not created
    assert again.json() == {**first.json(), "created": False}

    queue = await store(api)
    record = await queue.get(first.json()["task_id"])
    assert record is not None
    assert (record.priority, record.max_retries, record.metadata) == ("high", 5, {"source": "test"})
    assert await queue.queue_ids("primary", 10) == [record.id]
    assert (await queue.depths()).by_priority["high"] == 1


async def test_generic_submit_errors(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/tasks", json={"task_type": "nope", "payload": {}})
    assert r.status_code == 422
    assert "unknown task type 'nope'" in r.json()["detail"]
    assert "summarize" in r.json()["detail"]  # lists the known types

    r = await client.post(
        "/api/v1/tasks", json={"task_type": "demo.sleep", "payload": {"seconds": -1}}
    )
    assert r.status_code == 422
    assert "seconds" in r.json()["detail"]

    r = await client.post(
        "/api/v1/tasks",
        json={"task_type": "pdfxtract", "payload": {"blob": "0" * 64, "filename": "a.pdf"}},
    )
    assert r.status_code == 422
    assert "upload" in r.json()["detail"]

    for bad in (
        {"payload": {}},
        {"task_type": "demo.noop", "payload": []},
        {"task_type": "demo.noop", "priority": "urgent"},
        {"task_type": "demo.noop", "extra": True},
    ):
        assert (await client.post("/api/v1/tasks", json=bad)).status_code == 422, bad


async def test_pdfxtract_upload(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    pdf = minimal_pdf("Front page")
    r = await client.post(
        "/api/v1/tasks/pdfxtract",
        files={"file": ("issue.pdf", pdf, "application/pdf")},
        data={"issue_date": "2024-05-31"},
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["task_id"]
    queue = await store(api)
    payload = await queue.payload(task_id)
    sha = hashlib.sha256(pdf).hexdigest()
    assert payload is not None and payload["blob"] == sha
    assert payload["filename"] == "issue.pdf"
    assert payload["issue_date"] == "2024-05-31"
    # The task hash never holds the PDF; the blob store holds it once.
    raw = await queue.redis.hgetall(queue.keys.task(task_id))
    assert all(pdf[:100] not in v for v in raw.values())
    assert await queue.redis.get(queue.keys.blob(sha)) == pdf

    detail = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert detail["content"].startswith("PDF issue.pdf")
    assert detail["metadata"]["file_size"] == len(pdf)

    # A file named .pdf whose bytes are not a PDF is refused; so is an empty one.
    for name, data in (("fake.pdf", b"hello, not a pdf"), ("empty.pdf", b"")):
        bad = await client.post("/api/v1/tasks/pdfxtract/", files={"file": (name, data)})
        assert bad.status_code == 400, bad.text
        assert "%PDF-" in bad.json()["detail"]
    # A PDF named .txt is fine: the bytes decide.
    ok = await client.post("/api/v1/tasks/pdfxtract", files={"file": ("x.txt", pdf, "text/plain")})
    assert ok.status_code == 201
    missing = await client.post("/api/v1/tasks/pdfxtract", data={"issue_date": "2024-01-01"})
    assert missing.status_code == 422


async def test_pdfxtract_upload_limit(live_api: Callable[..., LiveApi]) -> None:
    api = live_api(max_upload_bytes=64 * 1024)
    big = b"%PDF-1.4\n" + b"0" * (64 * 1024)
    async with api.client() as client:
        r = await client.post("/api/v1/tasks/pdfxtract", files={"file": ("big.pdf", big)})
        assert r.status_code == 413, r.text
        assert "TASKFLOW_MAX_UPLOAD_BYTES" in r.json()["detail"]

        # Far over the limit: refused by the body limit before it is read.
        huge = b"%PDF-1.4\n" + b"0" * (2 * 1024 * 1024)
        r = await client.post("/api/v1/tasks/pdfxtract", files={"file": ("huge.pdf", huge)})
        assert r.status_code == 413

        # Streamed without a Content-Length: reading stops past the limit.
        async def chunks():  # type: ignore[no-untyped-def]
            boundary = b"--xyz\r\n"
            yield boundary
            yield b'Content-Disposition: form-data; name="file"; filename="s.pdf"\r\n\r\n%PDF-1.4\n'
            for _ in range(64):
                yield b"0" * 32 * 1024
            yield b"\r\n--xyz--\r\n"

        r = await client.post(
            "/api/v1/tasks/pdfxtract",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert r.status_code == 413
        assert (await client.get("/health")).status_code == 200


async def test_batch(api: LiveApi, client: httpx.AsyncClient, store: StoreFactory) -> None:
    items = [
        {"task_type": "demo.noop", "payload": {"i": i}, "idempotency_key": f"b-{i}"}
        for i in range(5)
    ]
    r = await client.post("/api/v1/tasks/batch", json={"tasks": items})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["accepted"], body["failed"], body["created"]) == (5, 0, 5)
    ids = [item["task_id"] for item in body["items"]]
    assert [item["index"] for item in body["items"]] == list(range(5))
    queue = await store(api)
    assert await queue.queue_ids("primary", 10) == ids  # FIFO in request order

    mixed = [
        items[0],  # a repeat: accepted, not created
        {"task_type": "demo.noop", "payload": {}},
        {"task_type": "nope"},
        {"task_type": "demo.sleep", "payload": {"seconds": "soon"}},
        {"payload": {}},
        "not an object",
        {"task_type": "summarize", "payload": {"content": "text"}, "priority": "low"},
    ]
    r = await client.post("/api/v1/tasks/batch/", json={"tasks": mixed})
    assert r.status_code == 207, r.text
    body = r.json()
    assert (body["accepted"], body["failed"], body["created"]) == (3, 4, 2)
    by_index = {item["index"]: item for item in body["items"]}
    assert by_index[0]["ok"] and by_index[0]["task_id"] == ids[0] and not by_index[0]["created"]
    assert by_index[1]["ok"] and by_index[1]["created"]
    assert not by_index[2]["ok"] and "unknown task type" in by_index[2]["error"]
    assert not by_index[3]["ok"] and "seconds" in by_index[3]["error"]
    assert not by_index[4]["ok"] and "task_type" in by_index[4]["error"]
    assert not by_index[5]["ok"]
    assert by_index[6]["ok"]


async def test_batch_limits(live_api: Callable[..., LiveApi]) -> None:
    api = live_api(max_batch_items=3)
    async with api.client() as client:
        r = await client.post(
            "/api/v1/tasks/batch", json={"tasks": [{"task_type": "demo.noop"}] * 4}
        )
        assert r.status_code == 422
        assert "TASKFLOW_MAX_BATCH_ITEMS" in r.json()["detail"]
        assert (await client.post("/api/v1/tasks/batch", json={"tasks": []})).status_code == 422
        assert (await client.post("/api/v1/tasks/batch", json={})).status_code == 422
        assert (await client.post("/api/v1/tasks/batch", json={"tasks": {}})).status_code == 422
