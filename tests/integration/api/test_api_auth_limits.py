"""Auth on every /api route, body limits, both slash forms, and errors that are always JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from api_helpers import TOKEN, LiveApi, data_frames

STREAMS = {"/api/v1/events", "/api/v1/queues/status/stream", "/api/v1/tasks/{task_id}/stream"}


def _api_routes(api: LiveApi) -> list[tuple[str, str]]:
    """Every (method, path) under /api, from the OpenAPI schema (every route is in it)."""
    out = []
    for path, operations in api.app.openapi()["paths"].items():
        if path.startswith("/api"):
            out.extend((method.upper(), path) for method in sorted(operations))
    return out


def _concrete(path: str) -> str:
    return (
        path.replace("{task_id}", "some-id")
        .replace("{name}", "primary")
        .replace("{sha256}", "0" * 64)
    )


async def test_every_api_route_needs_the_token(secured: LiveApi) -> None:
    routes = _api_routes(secured)
    assert len(routes) == 31  # the budget routes (GET, PUT) joined the 26, then POST /states,
    # then GET /history and GET /history/stats
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as anonymous:
        for method, path in routes:
            url = _concrete(path)
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": "Bearer"},
            ):
                r = await anonymous.request(method, url, headers=headers)
                assert r.status_code == 401, (method, url, headers, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
                if method != "HEAD":  # a HEAD answer has no body
                    assert "token" in r.json()["detail"]
            # The slashed form is protected the same way.
            r = await anonymous.request(method, url + "/")
            assert r.status_code == 401, (method, url)
            # ?token= is accepted only on event streams.
            if path not in STREAMS:
                r = await anonymous.request(method, url, params={"token": TOKEN})
                assert r.status_code == 401, (method, url)


async def test_the_token_opens_every_route(secured: LiveApi) -> None:
    async with secured.client() as client:
        for method, path in _api_routes(secured):
            url = _concrete(path)
            if path in STREAMS:
                async with client.stream(method, url) as r:
                    assert r.status_code in (200, 404), (method, url)
                continue
            r = await client.request(method, url)
            assert r.status_code not in (401, 403), (method, url, r.text)
            assert r.status_code < 500, (method, url, r.text)


async def test_query_token_on_streams(secured: LiveApi) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as anonymous:
        for url in ("/api/v1/events", "/api/v1/queues/status/stream"):
            async with (
                asyncio.timeout(10),
                anonymous.stream("GET", url, params={"token": TOKEN}) as r,
            ):
                assert r.status_code == 200
            r = await anonymous.get(url, params={"token": "wrong"})
            assert r.status_code == 401
        async with secured.client() as client:
            task_id = (
                await client.post("/api/v1/tasks/summarize/", json={"content": "hello"})
            ).json()["task_id"]
        params = {"token": TOKEN}
        async with (
            asyncio.timeout(10),
            anonymous.stream("GET", f"/api/v1/tasks/{task_id}/stream", params=params) as r,
        ):
            assert r.status_code == 200
            first = await anext(data_frames(r))
            assert first.json()["task_id"] == task_id


async def test_body_limit(live_api: Callable[..., LiveApi]) -> None:
    api = live_api(max_body_bytes=4096)
    async with api.client() as client:
        big = {"content": "x" * 5000}
        r = await client.post("/api/v1/tasks/summarize/", json=big)
        assert r.status_code == 413
        assert "TASKFLOW_MAX_BODY_BYTES" in r.json()["detail"]

        async def chunked():  # type: ignore[no-untyped-def]
            yield b'{"content": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        r = await client.post(
            "/api/v1/tasks/summarize/",
            content=chunked(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/json"
        small = await client.post("/api/v1/tasks/summarize/", json={"content": "x" * 100})
        assert small.status_code == 201


async def test_both_slash_forms_without_redirect(api: LiveApi, client: httpx.AsyncClient) -> None:
    for path in (
        "/api/v1/workers",
        "/api/v1/tasks",
        "/api/v1/tasks/summaries",
        "/api/v1/queues/status",
        "/health",
    ):
        for form in (path, path + "/"):
            r = await client.get(form)
            assert r.status_code == 200, form
            assert "location" not in r.headers


async def test_errors_are_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = await client.put("/api/v1/tasks")
    assert r.status_code == 405 and "detail" in r.json()
    r = await client.post(
        "/api/v1/tasks/summarize/",
        content=b"\xff\xfe",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "detail" in r.json()
    r = await client.post(
        "/api/v1/tasks/pdfxtract",
        content=b"garbage",
        headers={"content-type": "multipart/form-data"},
    )
    assert 400 <= r.status_code < 500 and "detail" in r.json()
