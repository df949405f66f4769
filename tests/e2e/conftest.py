"""Fixtures of the end-to-end suites: real processes, all on loopback.

* ``spawn``: start an entry point (``taskflow-worker``, ``taskflow-server``) or a module
  (``spawn.module(...)``) as a process, logs under ``test-output/e2e-logs/``; leftovers (and
  their children) are SIGKILLed after the test.
* ``redis_server``: a private ``redis-server`` (AOF on) on a free port of its own, which a test may
  ``kill()`` and ``restart()`` on the SAME port; stopped after the test. Never the shared Redis.
* ``fake_upstream``: the fake OpenRouter as its own process, with ``control()`` and ``stats()``.
* ``start_server``: ``taskflow-server`` as a process, returned once ``/ready`` (or ``/live``)
  answers.
* ``rss``: samples the resident memory of processes (and their children) in a thread.
* ``figures``: numbers a test wants in the report; written to ``test-output/e2e-figures.json``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_support import (
    FIGURES,
    UPSTREAM_KEY,
    FakeUpstream,
    RedisServer,
    RssSampler,
    ServerProc,
    Spawner,
    StartServer,
    log_text,
)

from support import free_port

_FIGURES_LOCK = threading.Lock()


@pytest.fixture
def spawn(request: pytest.FixtureRequest) -> Iterator[Spawner]:
    """Start entry points / modules as processes (logs under test-output/); kills leftovers."""
    spawner = Spawner(request.node.name)
    try:
        yield spawner
    finally:
        spawner.stop_all()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis (AOF on) for one test, on a free loopback port; killed afterwards."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_upstream(spawn: Spawner) -> FakeUpstream:
    """The fake OpenRouter on a free port (latency 0.2 s), accepting ``UPSTREAM_KEY``."""
    port = free_port()
    proc = spawn.module(
        "taskflow_server.testing.openrouter",
        "--port", str(port),
        "--key", UPSTREAM_KEY,
        "--latency", "0.2",
        "--latency-dist", "uniform",
    )  # fmt: skip
    fake = FakeUpstream(proc, port)
    deadline = time.monotonic() + 30
    while True:
        try:
            fake.stats()
            return fake
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the fake upstream did not start:\n{log_text(proc)[-2000:]}")
            time.sleep(0.1)


@pytest.fixture
def start_server(spawn: Spawner) -> StartServer:
    """``start_server(env, wait="live"|"ready"|None)``: ``taskflow-server`` on a free port."""

    def start(env: dict[str, str], *args: str, wait: str | None = "ready") -> ServerProc:
        port = free_port()
        full = {"TASKFLOW_HOST": "127.0.0.1", "TASKFLOW_PORT": str(port), **env}
        proc = spawn("taskflow-server", *args, env=full)
        server = ServerProc(proc, f"http://127.0.0.1:{port}", env.get("TASKFLOW_API_TOKEN"))
        if wait is None:
            return server
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{server.url}/{wait}", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"taskflow-server did not answer /{wait}:\n{log_text(proc)[-3000:]}")
            time.sleep(0.1)

    return start


@pytest.fixture
def rss() -> Iterator[RssSampler]:
    sampler = RssSampler()
    try:
        yield sampler
    finally:
        sampler.stop()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict of figures for this test, merged into ``test-output/e2e-figures.json``."""
    data: dict[str, Any] = {}
    yield data
    if not data:
        return
    data["test"] = request.node.nodeid
    with _FIGURES_LOCK:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        try:
            existing = json.loads(FIGURES.read_text())
        except (OSError, ValueError):
            existing = {}
        existing[request.node.name] = data
        FIGURES.write_text(json.dumps(existing, indent=2, sort_keys=True))
    print(f"\nfigures {request.node.name}: {json.dumps(data, sort_keys=True)}")
