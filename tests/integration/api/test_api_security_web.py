"""Browsers on other origins and DNS rebinding: a real server on loopback, the headers a browser
sends.

Without a token, a page on another origin must not change anything through "simple" requests
(no preflight: ``text/plain`` bodies, form posts, multipart uploads), must not read the event
streams (no ``Access-Control-Allow-Origin`` unless allowlisted), and a rebound DNS name (a foreign
``Host``) must not reach the API or the WebSocket. Same-origin requests, as a dashboard behind a
same-origin proxy sends them, keep working.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from api_helpers import LiveApi, minimal_pdf

EVIL = "http://evil.example"

# What Chromium sends with a cross-site fetch(..., {method: "POST", body: "{}", mode: "no-cors"})
# or a form post: a "simple" request, so no preflight comes first.
CROSS_SITE_TEXT = {
    "Origin": EVIL,
    "Content-Type": "text/plain;charset=UTF-8",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "empty",
    "Referer": EVIL + "/",
}
CROSS_SITE_UPLOAD = {
    "Origin": EVIL,
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
}


def _port(api: LiveApi) -> int:
    return int(urlsplit(api.url).port or 80)


def _same_origin(
    api: LiveApi, content_type: str | None = "text/plain;charset=UTF-8"
) -> dict[str, str]:
    headers = {"Origin": api.url, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


async def _pending_task(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/v1/tasks", json={"task_type": "demo.noop", "payload": {}})
    assert r.status_code == 201
    return str(r.json()["task_id"])


async def _breaker_state(client: httpx.AsyncClient) -> str:
    r = await client.get("/api/v1/workers/circuit-breaker")
    assert r.status_code == 200
    return str(r.json()["state"])


async def _ws_handshake(
    api: LiveApi, host: str, path: str = "/ws/stats", extra: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Send a raw WebSocket upgrade with exactly these headers; return the status and head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    try:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), head
    finally:
        writer.close()


async def test_cross_origin_simple_requests_are_refused_and_change_nothing(api: LiveApi) -> None:
    async with api.client() as client:
        task_id = await _pending_task(client)
        total = (await client.get("/api/v1/tasks")).json()["total_items"]

        # Cancel a task with a text/plain "JSON" body.
        r = await client.post(
            f"/api/v1/tasks/{task_id}/cancel", content=b"{}", headers=CROSS_SITE_TEXT
        )
        assert r.status_code == 403
        assert "TASKFLOW_CORS_ORIGINS" in r.json()["detail"]
        assert "access-control-allow-origin" not in r.headers
        assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["state"] == "PENDING"

        # Open the breaker.
        r = await client.post(
            "/api/v1/workers/open-circuit-breaker",
            content=b'{"reason": "pwned"}',
            headers=CROSS_SITE_TEXT,
        )
        assert r.status_code == 403
        assert await _breaker_state(client) == "closed"

        # Upload a file (a multipart form post) and queue a task with it.
        pdf = minimal_pdf("cross-site")
        r = await client.post(
            "/api/v1/tasks/pdfxtract",
            files={"file": ("a.pdf", pdf, "application/pdf")},
            headers=CROSS_SITE_UPLOAD,
        )
        assert r.status_code == 403
        sha = hashlib.sha256(pdf).hexdigest()
        assert (await client.head(f"/api/v1/blobs/{sha}")).status_code == 404
        assert (await client.get("/api/v1/tasks")).json()["total_items"] == total

        # Delete (a browser preflights it, but refuse it anyway), and an opaque origin.
        r = await client.delete(f"/api/v1/tasks/{task_id}", headers={"Origin": EVIL})
        assert r.status_code == 403
        r = await client.post(
            f"/api/v1/tasks/{task_id}/cancel",
            content=b"{}",
            headers={**CROSS_SITE_TEXT, "Origin": "null"},
        )
        assert r.status_code == 403
        # No Origin but a browser saying cross-site (older browsers, some redirects).
        no_origin = {k: v for k, v in CROSS_SITE_TEXT.items() if k != "Origin"}
        r = await client.post(f"/api/v1/tasks/{task_id}/cancel", content=b"{}", headers=no_origin)
        assert r.status_code == 403
        assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["state"] == "PENDING"


async def test_same_origin_requests_pass(api: LiveApi) -> None:
    async with api.client() as client:
        task_id = await _pending_task(client)
        r = await client.post(
            f"/api/v1/tasks/{task_id}/cancel", content=b"", headers=_same_origin(api)
        )
        assert r.status_code == 200, r.text
        cancelled = r.json()["state"]
        assert cancelled != "PENDING"
        assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["state"] == cancelled

        r = await client.post("/api/v1/workers/open-circuit-breaker", headers=_same_origin(api))
        assert r.status_code == 200, r.text
        assert await _breaker_state(client) == "open"
        r = await client.post("/api/v1/workers/reset-circuit-breaker", headers=_same_origin(api))
        assert r.status_code == 200

        pdf = minimal_pdf("same-origin")
        r = await client.post(
            "/api/v1/tasks/pdfxtract",
            files={"file": ("a.pdf", pdf, "application/pdf")},
            headers=_same_origin(api, content_type=None),
        )
        assert r.status_code == 201, r.text

        # The same origin under the other loopback name, and the default port left out.
        other = api.url.replace("127.0.0.1", "localhost")
        r = await client.delete(
            f"/api/v1/tasks/{task_id}",
            headers={"Origin": other, "Host": urlsplit(other).netloc},
        )
        assert r.status_code == 200, r.text

        # Clients that are not browsers send no Origin at all.
        task_id = await _pending_task(client)
        assert (await client.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 200


async def test_event_streams_are_not_readable_cross_origin(api: LiveApi) -> None:
    headers = {"Origin": EVIL, "Accept": "text/event-stream", "Sec-Fetch-Site": "cross-site"}
    async with api.client() as client:
        for url in ("/api/v1/events", "/api/v1/queues/status/stream"):
            async with asyncio.timeout(10), client.stream("GET", url, headers=headers) as r:
                assert r.status_code == 200
                assert "access-control-allow-origin" not in r.headers, url


async def test_allowlisted_origin_gets_exactly_its_origin(
    live_api: Callable[..., LiveApi],
) -> None:
    dash = "http://dash.example:5173"
    api = live_api(cors_origins=[dash])
    async with api.client() as client:
        async with (
            asyncio.timeout(10),
            client.stream("GET", "/api/v1/events", headers={"Origin": dash}) as r,
        ):
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == dash
            assert "origin" in r.headers.get("vary", "").lower()
        async with (
            asyncio.timeout(10),
            client.stream("GET", "/api/v1/events", headers={"Origin": EVIL}) as r,
        ):
            assert "access-control-allow-origin" not in r.headers
        # Its state-changing requests pass (a foreign one still does not), with the header.
        task_id = await _pending_task(client)
        r = await client.post(
            f"/api/v1/tasks/{task_id}/cancel", content=b"{}", headers=CROSS_SITE_TEXT
        )
        assert r.status_code == 403
        r = await client.post(
            f"/api/v1/tasks/{task_id}/cancel",
            headers={"Origin": dash, "Sec-Fetch-Site": "cross-site"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == dash
        # A preflight from it is answered (never with '*').
        r = await client.options(
            "/api/v1/tasks",
            headers={
                "Origin": dash,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == dash


async def test_foreign_host_is_refused_dns_rebinding(api: LiveApi) -> None:
    rebound = {"Host": f"attacker.example:{_port(api)}"}
    async with api.client() as client:
        for method, url in (
            ("GET", "/api/v1/tasks"),
            ("GET", "/api/v1/queues/status"),
            ("GET", "/api/v1/events"),
            ("POST", "/api/v1/workers/open-circuit-breaker"),
        ):
            r = await client.request(method, url, headers=rebound)
            assert r.status_code == 403, (method, url)
            assert "TASKFLOW_ALLOWED_HOSTS" in r.json()["detail"]
        assert await _breaker_state(client) == "closed"
        r = await client.get("/api/v1/tasks", headers={"Host": "attacker.example"})
        assert r.status_code == 403
        # Health routes answer under any name (container probes use an IP address).
        for path in ("/live", "/health"):
            assert (await client.get(path, headers=rebound)).status_code == 200

    status, head = await _ws_handshake(api, f"attacker.example:{_port(api)}")
    assert status == 403, head
    status, head = await _ws_handshake(api, f"127.0.0.1:{_port(api)}")
    assert status == 101, head
    # A cross-origin page may not open the WebSocket either (it has no CORS to protect it).
    status, head = await _ws_handshake(api, f"127.0.0.1:{_port(api)}", extra={"Origin": EVIL})
    assert status == 403, head


async def test_loopback_names_with_any_port_pass(api: LiveApi) -> None:
    port = _port(api)
    async with api.client() as client:
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"[::1]:{port}",
            "localhost",
            "LOCALHOST.:8080",
        ):
            r = await client.get("/api/v1/queues/status", headers={"Host": host})
            assert r.status_code == 200, host
    status, _ = await _ws_handshake(api, f"localhost:{port}")
    assert status == 101


async def test_allowed_hosts_settings(live_api: Callable[..., LiveApi]) -> None:
    # '*' turns the check off.
    anything = live_api(allowed_hosts=["*"])
    async with anything.client() as client:
        r = await client.get("/api/v1/tasks", headers={"Host": "attacker.example"})
        assert r.status_code == 200
    status, _ = await _ws_handshake(anything, "attacker.example")
    assert status == 101

    # Behind a same-origin proxy that forwards its own Host: the dashboard's requests pass.
    proxied = live_api(allowed_hosts=["dash.example"])
    async with proxied.client() as client:
        task_id = await _pending_task(client)
        r = await client.get("/api/v1/tasks/summaries/", headers={"Host": "dash.example"})
        assert r.status_code == 200
        r = await client.delete(
            f"/api/v1/tasks/{task_id}",
            headers={
                "Host": "dash.example",
                "Origin": "http://dash.example",
                "Sec-Fetch-Site": "same-origin",
            },
        )
        assert r.status_code == 200, r.text
        # Loopback names stay allowed; other names do not.
        r = await client.get("/api/v1/tasks", headers={"Host": f"localhost:{_port(proxied)}"})
        assert r.status_code == 200
        r = await client.get("/api/v1/tasks", headers={"Host": "other.example"})
        assert r.status_code == 403
