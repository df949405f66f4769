"""The control panel against a real server (embedded store, in-process): live counts, the
breaker buttons, and a server restart the feed survives."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from taskflow_sdk import AsyncClient, Client
from taskflow_sdk.widgets import ControlPanel
from taskflow_server.config import Settings
from taskflow_server.serve import BackgroundServer

pytestmark = pytest.mark.timeout(120)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _noops(client: Client, n: int) -> None:
    client.submit_many([{"task_type": "demo.noop", "payload": {}} for _ in range(n)])


def test_panel_follows_a_server_and_survives_its_restart() -> None:
    port = _port()
    server = BackgroundServer(Settings(_env_file=None, port=port)).start()
    client = Client(server.url, max_retries=0)
    panel = ControlPanel(client, refresh_hz=10, freeze_gc=False)
    try:
        _noops(client, 20)
        _until(lambda: panel.state.counts["COMPLETED"] == 20)
        _until(lambda: panel.counts.data[0].y[3] == 20)  # the bar chart shows it
        panel.open_breaker()
        assert panel.lamp.state == "open"
        panel.reset_breaker()
        assert panel.lamp.state == "closed"

        server.stop()
        _until(lambda: panel.state.feed.connected is False)
        assert "reconnecting" in panel.header.value or panel.state.feed.connected is False

        server = BackgroundServer(Settings(_env_file=None, port=port)).start()
        _noops(client, 5)
        # A fresh embedded store: the snapshot says 5, and the events keep coming.
        _until(lambda: panel.state.feed.connected is True, timeout=40)
        _until(lambda: panel.state.counts["COMPLETED"] == 5, timeout=40)
        seen = panel.state.feed.events
        _noops(client, 5)
        _until(lambda: panel.state.feed.events >= seen + 15, timeout=40)
        assert panel.state.feed.reconnects >= 1
    finally:
        panel.stop()
        client.close()
        server.stop()


async def test_async_panel_on_the_running_loop() -> None:
    server = BackgroundServer(Settings(_env_file=None, port=0)).start()
    client = AsyncClient(server.url)
    panel = ControlPanel(client, refresh_hz=10, freeze_gc=False)
    try:
        await asyncio.sleep(0.5)
        with Client(server.url) as sync:
            _noops(sync, 10)
        for _ in range(200):
            if panel.state.counts["COMPLETED"] == 10:
                break
            await asyncio.sleep(0.05)
        assert panel.state.counts["COMPLETED"] == 10
        await panel.open_breaker()
        assert panel.lamp.state == "open"
        await panel.reset_breaker()
        assert panel.lamp.state == "closed"
    finally:
        panel.stop()
        await client.close()
        server.stop()
