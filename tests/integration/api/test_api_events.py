"""The event stream (ids, Last-Event-ID resume) and the stats WebSocket."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from api_helpers import TOKEN, LiveApi, data_frames
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


async def _submit_one(client: httpx.AsyncClient, i: int) -> str:
    r = await client.post("/api/v1/tasks", json={"task_type": "demo.noop", "payload": {"i": i}})
    assert r.status_code == 201
    return str(r.json()["task_id"])


async def test_resume_after_disconnect_gets_exactly_the_missed_events(
    api: LiveApi, client: httpx.AsyncClient
) -> None:
    async with asyncio.timeout(20):
        # Connect, see one event, note its id, hang up.
        async with client.stream("GET", "/api/v1/events") as r:
            assert r.status_code == 200
            frames = data_frames(r)
            first_id = await _submit_one(client, -1)
            seen = await anext(frames)
            assert seen.json()["task_id"] == first_id
            assert seen.json()["type"] == "task_created"
            last_event_id = seen.id
            assert last_event_id

        # While disconnected: 100 events.
        missed = [await _submit_one(client, i) for i in range(100)]

        # Reconnect with Last-Event-ID: exactly those 100, in order, then live events.
        headers = {"Last-Event-ID": last_event_id}
        async with client.stream("GET", "/api/v1/events", headers=headers) as r:
            frames = data_frames(r)
            got = [await anext(frames) for _ in range(100)]
            assert [f.json()["task_id"] for f in got] == missed
            assert all(f.json()["type"] == "task_created" for f in got)
            ids = [tuple(int(x) for x in str(f.id).split("-")) for f in got]
            assert ids == sorted(ids) and len(set(ids)) == 100
            assert ids[0] > tuple(int(x) for x in last_event_id.split("-"))
            marker = await _submit_one(client, 1000)
            nxt = await anext(frames)
            assert nxt.json()["task_id"] == marker  # nothing extra came in between
            assert nxt.json()["timestamp"].endswith("Z")

        # The query parameter works too, and filters narrow the stream.
        params = {"last_event_id": last_event_id, "task_id": missed[41]}
        async with client.stream("GET", "/api/v1/events", params=params) as r:
            frame = await anext(data_frames(r))
            assert frame.json()["task_id"] == missed[41]
            assert frame.id == got[41].id


async def test_events_from_the_start_and_bad_ids(api: LiveApi, client: httpx.AsyncClient) -> None:
    first = await _submit_one(client, 0)
    async with asyncio.timeout(10), client.stream("GET", "/api/v1/events?last_event_id=0") as r:
        frame = await anext(data_frames(r))
        assert frame.json()["task_id"] == first
    for bad in ("abc", "1-x", "-1"):
        r = await client.get("/api/v1/events", params={"last_event_id": bad})
        assert r.status_code == 422, bad
        r = await client.get("/api/v1/events", headers={"Last-Event-ID": bad})
        assert r.status_code == 422, bad


async def test_events_lost_is_announced(live_api, store) -> None:  # type: ignore[no-untyped-def]
    api = live_api()
    async with api.client() as client, asyncio.timeout(10):
        await _submit_one(client, 0)
        queue = await store(api)
        await queue.redis.xtrim(queue.keys.events, maxlen=0)
        await _submit_one(client, 1)
        async with client.stream("GET", "/api/v1/events", params={"last_event_id": "1-0"}) as r:
            frame = await anext(data_frames(r))
            assert frame.json()["type"] == "events_lost"


async def test_ws_stats(api: LiveApi, client: httpx.AsyncClient) -> None:
    await _submit_one(client, 0)
    async with asyncio.timeout(10), connect(f"{api.ws_url}/ws/stats?interval=0.2") as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "stats"
        assert first["queue_depths"]["primary"] == 1
        assert first["state_counts"]["PENDING"] == 1
        assert first["queued_default"] == 1
        await _submit_one(client, 1)
        while (msg := json.loads(await ws.recv()))["queue_depths"]["primary"] != 2:
            pass
        assert msg["timestamp"].endswith("Z")
    # Trailing slash, and a bad interval is refused during the handshake.
    async with asyncio.timeout(10), connect(f"{api.ws_url}/ws/stats/") as ws:
        assert json.loads(await ws.recv())["type"] == "stats"
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{api.ws_url}/ws/stats?interval=0"):
            pass
    assert info.value.response.status_code == 422


async def test_ws_auth(secured: LiveApi) -> None:
    for url, headers in (
        (f"{secured.ws_url}/ws/stats", None),
        (f"{secured.ws_url}/ws/stats?token=wrong", None),
        (f"{secured.ws_url}/ws/stats", {"Authorization": "Bearer wrong"}),
    ):
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
        assert b"token" in info.value.response.body
    async with asyncio.timeout(10):
        async with connect(f"{secured.ws_url}/ws/stats?token={TOKEN}") as ws:
            assert json.loads(await ws.recv())["type"] == "stats"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with connect(f"{secured.ws_url}/ws/stats", additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "stats"


async def test_shutdown_ends_open_streams(live_api) -> None:  # type: ignore[no-untyped-def]
    api = live_api()
    async with (
        api.client() as client,
        asyncio.timeout(15),
        client.stream("GET", "/api/v1/events") as events,
        client.stream("GET", "/api/v1/queues/status/stream") as status,
    ):
        assert events.status_code == status.status_code == 200
        status_frames = data_frames(status)
        await anext(status_frames)
        ws = await connect(f"{api.ws_url}/ws/stats")
        await ws.recv()
        # Stop the server: the streams end cleanly instead of holding the shutdown.
        api.server.should_exit = True
        assert [f async for f in status_frames] == []
        assert [f async for f in data_frames(events)] == []
        await ws.wait_closed()
