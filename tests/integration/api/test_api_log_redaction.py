"""The API token never reaches a log line, and the WebSocket takes it as a subprotocol.

Browsers must put the token in the query string of EventSource and WebSocket URLs, and the
access log prints full paths. Two real server processes on loopback: the app under ``uvicorn``
with its own log config and access log on, and ``taskflow-server`` with its logging; every line
they print is captured and searched for the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import serve
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from support import delete_prefix, free_port

SECRET = f"SECRET-{uuid.uuid4().hex}"
"""The server's token: long and unique, so a leak is unmistakable."""

WRONG = f"WRONGSECRET-{uuid.uuid4().hex}"
"""A wrong token a client sends: it must not be logged either."""


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run a server process until the block ends; yields its URL; output goes to ``log_path``."""
    port = int(env["TASKFLOW_PORT"])
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [*args, "--port", str(port)],
            env={**os.environ, **env},
            cwd=log_path.parent,  # no stray .env
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/live", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _env(redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "TASKFLOW_REDIS_URL": redis_url,
        "TASKFLOW_KEY_PREFIX": prefix,
        "TASKFLOW_API_TOKEN": SECRET,
        "TASKFLOW_PORT": str(free_port()),
        "TASKFLOW_WORKERS": "0",
        "TASKFLOW_LOG_LEVEL": "INFO",
    }


async def _exercise(url: str) -> None:
    """Send the token every way a browser or client does, right and wrong."""
    ws = "ws" + url[len("http") :]
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for path in ("/api/v1/events", "/api/v1/queues/status/stream"):
            async with (
                asyncio.timeout(10),
                client.stream("GET", path, params={"types": "task_created", "token": SECRET}) as r,
            ):
                assert r.status_code == 200
            r = await client.get(path, params={"token": WRONG})
            assert r.status_code == 401
    async with asyncio.timeout(10):
        async with connect(f"{ws}/ws/stats?interval=0.5&token={SECRET}") as conn:
            assert json.loads(await conn.recv())["type"] == "stats"
        with pytest.raises(InvalidStatus):
            async with connect(f"{ws}/ws/stats?token={WRONG}"):
                pass


def _check_log(text: str) -> None:
    assert SECRET not in text, text
    assert WRONG not in text, text
    assert "token=***" in text, text


def test_uvicorn_access_log_redacts_tokens(redis_url: str, tmp_path: Path) -> None:
    prefix = f"tfred{uuid.uuid4().hex[:10]}"
    log_path = tmp_path / "uvicorn.log"
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "taskflow_server.api.app:create_app",
        "--host",
        "127.0.0.1",
        "--log-level",
        "info",
        "--access-log",
        "--ws",
        "websockets-sansio",
    ]
    try:
        with _process(args, _env(redis_url, prefix), log_path) as url:
            asyncio.run(_exercise(url))
    finally:
        delete_prefix(redis_url, prefix)
    text = log_path.read_text()
    _check_log(text)
    # The rest of each line is kept: the access line of the stream, the WebSocket lines.
    assert '"GET /api/v1/events?types=task_created&token=*** HTTP/1.1" 200' in text, text
    assert '"WebSocket /ws/stats?interval=0.5&token=***" [accepted]' in text, text
    assert '"WebSocket /ws/stats?token=***" 401' in text, text


def test_taskflow_server_log_redacts_tokens(redis_url: str, tmp_path: Path) -> None:
    prefix = f"tfred{uuid.uuid4().hex[:10]}"
    log_path = tmp_path / "server.log"
    args = [str(Path(sys.executable).with_name("taskflow-server")), "--host", "127.0.0.1"]
    try:
        with _process(args, _env(redis_url, prefix), log_path) as url:
            asyncio.run(_exercise(url))
    finally:
        delete_prefix(redis_url, prefix)
    text = log_path.read_text()
    _check_log(text)
    assert "/ws/stats?interval=0.5&token=***" in text, text


async def test_websocket_token_by_subprotocol(redis_url: str) -> None:
    with serve(redis_url, api_token=SECRET) as api:
        async with asyncio.timeout(10):
            async with connect(
                f"{api.ws_url}/ws/stats",
                subprotocols=["bearer", SECRET],  # type: ignore[list-item]
            ) as conn:
                assert conn.subprotocol == "bearer"  # echoed, never the token
                assert conn.response is not None
                assert SECRET not in str(conn.response.headers)
                assert json.loads(await conn.recv())["type"] == "stats"
            for offered in (["bearer", WRONG], ["bearer"], [SECRET]):
                with pytest.raises(InvalidStatus) as info:
                    async with connect(
                        f"{api.ws_url}/ws/stats",
                        subprotocols=offered,  # type: ignore[arg-type]
                    ):
                        pass
                assert info.value.response.status_code == 401, offered
    # Without a token on the server, a client that offers the pair still gets 'bearer' back.
    with serve(redis_url) as api:
        async with (
            asyncio.timeout(10),
            connect(f"{api.ws_url}/ws/stats", subprotocols=["bearer", WRONG]) as conn,  # type: ignore[list-item]
        ):
            assert conn.subprotocol == "bearer"
