"""Uploaded files (blobs) against a live API: deleted with their last task, within a quota, and
counted in ``GET /api/v1/queues/status``.

A blob is reference-counted by the tasks whose payload names it (the submit, delete and
retention scripts keep the count); a blob no task refers to expires after ``blob_ttl_seconds``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from api_helpers import LiveApi, minimal_pdf
from redis.asyncio import Redis

from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue

StoreFactory = Callable[[LiveApi], Awaitable[TaskQueue]]


async def _upload(client: httpx.AsyncClient, pdf: bytes, **data: str) -> httpx.Response:
    return await client.post(
        "/api/v1/tasks/pdfxtract", files={"file": ("issue.pdf", pdf, "application/pdf")}, data=data
    )


async def _stored(client: httpx.AsyncClient, sha: str) -> bool:
    r = await client.get(f"/api/v1/blobs/{sha}")
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


async def _blob_status(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/v1/queues/status")
    assert r.status_code == 200, r.text
    return dict(r.json()["blobs"])


async def test_blob_is_deleted_with_its_last_task(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    """upload -> task -> delete task -> the blob (and its accounting) is gone."""
    pdf = minimal_pdf("Deleted with its task")
    sha = hashlib.sha256(pdf).hexdigest()
    r = await _upload(client, pdf)
    assert r.status_code == 201, r.text
    assert await _stored(client, sha)
    assert await _blob_status(client) == {
        "count": 1,
        "bytes": len(pdf),
        "max_bytes": api.settings.max_blob_bytes,
    }
    assert (await client.delete(f"/api/v1/tasks/{r.json()['task_id']}")).status_code == 200
    assert not await _stored(client, sha)
    assert await _blob_status(client) == {
        "count": 0,
        "bytes": 0,
        "max_bytes": api.settings.max_blob_bytes,
    }
    queue = await store(api)
    keys = Keys(api.settings.key_prefix)
    redis: Redis = queue.redis
    assert not await redis.exists(keys.blob(sha), keys.blob_refs, keys.blob_sizes)


async def test_shared_blob_lives_until_its_last_task_goes(
    api: LiveApi, client: httpx.AsyncClient, store: StoreFactory
) -> None:
    """Two tasks share one upload: deleting one keeps it, deleting both frees it; the
    retention sweep of finished tasks releases references the same way."""
    pdf = minimal_pdf("Shared")
    sha = hashlib.sha256(pdf).hexdigest()
    first = await _upload(client, pdf)
    assert first.status_code == 201, first.text
    # The same file again (stored once), and a generic submit that names it by sha256.
    second = await _upload(client, pdf)
    third = await client.post(
        "/api/v1/tasks", json={"task_type": "pdfxtract", "payload": {"blob": sha}}
    )
    assert second.status_code == 201 and third.status_code == 201, (second.text, third.text)
    assert (await _blob_status(client))["count"] == 1
    ids = [r.json()["task_id"] for r in (first, second, third)]

    assert (await client.delete(f"/api/v1/tasks/{ids[0]}")).status_code == 200
    assert await _stored(client, sha), "deleting one of three tasks deleted the shared file"
    assert (await client.delete(f"/api/v1/tasks/{ids[1]}")).status_code == 200
    assert await _stored(client, sha), "deleting two of three tasks deleted the shared file"

    # The last reference goes with the retention sweep of a finished task.
    queue = await store(api)
    claims = await queue.claim("w1", "tok", 10, {"local": None, "llm": None})
    assert [c.task_id for c in claims] == [ids[2]]
    assert await queue.complete_many([(ids[2], "tok", {"ok": True})]) == [True]
    swept = await queue._run("sweep", [0, 100])  # retention 0 ms: sweep it now
    assert int(swept) == 1
    assert not await _stored(client, sha)
    assert (await _blob_status(client))["bytes"] == 0


async def test_blob_quota(live_api: Callable[..., LiveApi]) -> None:
    """An upload that would take all blobs over max_blob_bytes is 507 and names the setting;
    room comes back when a task (and so its file) is deleted; a stored file is free to reuse."""
    one, two = minimal_pdf("First issue"), minimal_pdf("Second issue")
    api = live_api(max_blob_bytes=len(one) + len(two) - 1)
    async with api.client() as client:
        r1 = await _upload(client, one)
        assert r1.status_code == 201, r1.text
        refused = await _upload(client, two)
        assert refused.status_code == 507, refused.text
        detail = refused.json()["detail"]
        assert "TASKFLOW_MAX_BLOB_BYTES" in detail and "quota" in detail
        # Re-uploading a file already stored costs nothing, so it is accepted.
        assert (await _upload(client, one)).status_code == 201
        status = await _blob_status(client)
        assert status == {"count": 1, "bytes": len(one), "max_bytes": len(one) + len(two) - 1}
        listed = (await client.get("/api/v1/tasks", params={"page_size": 10})).json()
        for task in listed["tasks"]:
            assert (await client.delete(f"/api/v1/tasks/{task['task_id']}")).status_code == 200
        assert (await _upload(client, two)).status_code == 201


async def test_status_keeps_its_v1_fields(client: httpx.AsyncClient) -> None:
    """``blobs`` is an extra field: the v1 dashboard's fields are all still there."""
    body = (await client.get("/api/v1/queues/status")).json()
    assert set(body) == {"queues", "states", "retry_ratio", "blobs"}
    assert {"primary", "retry", "scheduled", "dlq", "active"} <= set(body["queues"])
    assert set(body["blobs"]) == {"count", "bytes", "max_bytes"}
