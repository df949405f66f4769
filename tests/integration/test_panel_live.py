"""The control panel against a real server (embedded store, in-process): live counts, the
breaker buttons, and a server restart the feed survives."""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from support import eventually, free_port, make_settings, wait_until
from taskflow_sdk import AsyncClient, Client
from taskflow_sdk.widgets import ControlPanel
from taskflow_server.serve import BackgroundServer

pytestmark = pytest.mark.timeout(120)


def _noops(client: Client, n: int) -> None:
    client.submit_many([{"task_type": "demo.noop", "payload": {}} for _ in range(n)])


def test_panel_follows_a_server_and_survives_its_restart() -> None:
    port = free_port()
    server = BackgroundServer(make_settings(port=port)).start()
    client = Client(server.url, max_retries=0)
    panel = ControlPanel(client, refresh_hz=10)
    try:
        _noops(client, 20)
        wait_until(lambda: panel.state.counts["COMPLETED"] == 20, "20 completions", 20)
        # the bar chart shows it
        wait_until(lambda: panel.counts.data[0]["y"][3] == 20, "the bar of 20 completions", 20)
        panel.open_breaker()
        assert panel.lamp.state == "open"
        panel.reset_breaker()
        assert panel.lamp.state == "closed"

        server.stop()
        wait_until(lambda: panel.state.feed.connected is False, "the panel to see the stop", 20)
        assert "reconnecting" in panel.header.value or panel.state.feed.connected is False

        server = BackgroundServer(make_settings(port=port)).start()
        _noops(client, 5)
        # A fresh embedded store: the snapshot says 5, and the events keep coming.
        wait_until(lambda: panel.state.feed.connected is True, "the panel to reconnect", 40)
        wait_until(lambda: panel.state.counts["COMPLETED"] == 5, "the new store's 5", 40)
        wait_until(lambda: panel.connected, "the event stream to reconnect", 40)
        seen = panel.state.feed.events
        _noops(client, 5)
        wait_until(lambda: panel.state.feed.events >= seen + 15, "15 more events", 40)
        assert panel.state.feed.reconnects >= 1
    finally:
        panel.stop()
        client.close()
        server.stop()


async def test_async_panel_on_the_running_loop() -> None:
    server = BackgroundServer(make_settings(port=0)).start()
    client = AsyncClient(server.url)
    panel = ControlPanel(client, refresh_hz=10)
    try:
        await eventually(lambda: panel.connected, "the event stream to connect")
        with Client(server.url) as sync:
            _noops(sync, 10)
        await eventually(lambda: panel.state.counts["COMPLETED"] == 10, "10 completions")
        await panel.open_breaker()
        assert panel.lamp.state == "open"
        await panel.reset_breaker()
        assert panel.lamp.state == "closed"
    finally:
        panel.stop()
        await client.close()
        server.stop()
