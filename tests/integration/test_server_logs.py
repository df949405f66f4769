"""What the server logs, and where: per-request lines at DEBUG, the monitor's ``/credits`` 403
said once, and an in-process server that keeps its logs out of the caller's output."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from support import delete_prefix, make_settings, wait_until
from taskflow_sdk import Client
from taskflow_server.llm.monitor import CREDITS_HIDDEN, OpenRouterMonitor
from taskflow_server.llm.openrouter import OpenRouterClient
from taskflow_server.logs import SERVER_LOGGERS
from taskflow_server.serve import BackgroundServer
from taskflow_server.store.keys import Keys
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread

KEY = "sk-test-not-management"
TEXT = "The harbour committee met on Tuesday. It approved the new pier. Work starts in May."


@pytest.fixture
def fake(fake_server: FakeOpenRouterThread) -> FakeOpenRouterThread:
    """The fake OpenRouter with one plain key: ``/credits`` answers it 403, as OpenRouter does
    for a key that is not a management key."""
    return fake_server.reset(FakeConfig(keys=frozenset({KEY})))


@pytest.fixture
def monitor(redis: Redis, fake: FakeOpenRouterThread) -> Iterator[OpenRouterMonitor]:
    settings = make_settings(
        openrouter_api_key=KEY, openrouter_base_url=fake.base_url, openrouter_timeout=2.0
    )
    client = OpenRouterClient(settings)
    yield OpenRouterMonitor(redis, Keys(f"tflog{uuid.uuid4().hex[:8]}"), settings, client)


def _records(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(name) and r.levelno == level]


async def test_upstream_requests_are_logged_at_debug(
    monitor: OpenRouterMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await monitor.status(force_refresh=True)  # GET /key and GET /credits upstream
    assert not [r for r in caplog.records if r.name == "httpx"]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="httpx")
    await monitor.status(force_refresh=True)
    lines = [r for r in caplog.records if r.name == "httpx"]
    assert lines and all(r.levelno == logging.DEBUG for r in lines)
    assert any("/credits" in r.getMessage() for r in lines)
    assert monitor.client is not None
    await monitor.client.aclose()


async def test_credits_403_is_logged_once(
    monitor: OpenRouterMonitor, fake: FakeOpenRouterThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskflow_server.llm.monitor")
    first = await monitor.status(force_refresh=True)
    assert first["status"] == "active" and first["credits"] is None
    said = _records(caplog, "taskflow_server.llm.monitor", logging.INFO)
    assert [r.getMessage() for r in said] == [CREDITS_HIDDEN]
    assert "not visible with this key" in CREDITS_HIDDEN
    caplog.clear()
    for _ in range(2):  # the next checks (every minute in a running server) say nothing new
        await monitor.status(force_refresh=True)
    assert fake.state.snapshot()["by_status"].get("403", 0) >= 3  # every check did ask
    assert not _records(caplog, "taskflow_server.llm.monitor", logging.INFO)
    repeats = _records(caplog, "taskflow_server.llm.monitor", logging.DEBUG)
    assert [r.getMessage() for r in repeats] == [CREDITS_HIDDEN, CREDITS_HIDDEN]
    assert monitor.client is not None
    await monitor.client.aclose()


def _state() -> list[tuple[bool, int, list[logging.Handler]]]:
    return [
        (logging.getLogger(n).propagate, logging.getLogger(n).level, logging.getLogger(n).handlers)
        for n in SERVER_LOGGERS
    ]


def _run_one_task(url: str) -> None:
    with Client(url) as client:
        client.wait(client.summarize(TEXT), timeout=30)


def test_background_server_keeps_info_out_of_the_callers_logs(
    redis_url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)  # a notebook or an application that logs INFO
    before = _state()
    prefix = f"tflog{uuid.uuid4().hex[:8]}"
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, port=0, host="127.0.0.1")
    server = BackgroundServer(settings).start()
    try:
        _run_one_task(server.url)
        logging.getLogger("taskflow_server.worker").warning("a warning still shows")
    finally:
        server.stop()
        delete_prefix(redis_url, prefix)
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("taskflow_server", "uvicorn")]
    assert not [r for r in caplog.records if r.name == "httpx" and r.levelno >= logging.INFO]
    err = capsys.readouterr().err
    assert "a warning still shows" in err and "started" not in err and "POST /api" not in err
    assert _state() == before  # stop() put the loggers back


def test_background_server_can_log_into_a_file(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    log_file = tmp_path / "logs" / "server.log"
    prefix = f"tflog{uuid.uuid4().hex[:8]}"
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, port=0, host="127.0.0.1")
    server = BackgroundServer(settings, log_file=log_file).start()
    try:
        _run_one_task(server.url)
        wait_until(lambda: "worker" in log_file.read_text(), "the worker's start in the file")
    finally:
        server.stop()
        delete_prefix(redis_url, prefix)
    text = log_file.read_text()
    assert "info    taskflow_server.worker" in text and "started" in text
    assert not [r for r in caplog.records if r.name.startswith("taskflow_server")]


def test_background_server_log_level_shows_more(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"tflog{uuid.uuid4().hex[:8]}"
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, port=0, host="127.0.0.1")
    server = BackgroundServer(settings, log_level="INFO").start()
    try:
        _run_one_task(server.url)
    finally:
        server.stop()
        delete_prefix(redis_url, prefix)
    assert "taskflow_server.worker" in capsys.readouterr().err


def test_inside_a_notebook_kernel_the_logs_go_to_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A kernel prints a thread's stderr into whichever cell runs: there the default is a file."""
    import os

    from taskflow_server import logs

    monkeypatch.setattr(logs, "_in_kernel", lambda: True)
    monkeypatch.setattr(logs.tempfile, "gettempdir", lambda: str(tmp_path))
    routed = logs.ServerLogs().install()
    try:
        assert routed.file == tmp_path / f"taskflow-server-{os.getpid()}.log"
        logging.getLogger("taskflow_server.worker").warning("a warning for the file")
        assert routed.handler is not None
        routed.handler.flush()
        assert "a warning for the file" in routed.file.read_text()
    finally:
        routed.restore()
    monkeypatch.setattr(logs, "_in_kernel", lambda: False)
    assert logs.ServerLogs().file is None
