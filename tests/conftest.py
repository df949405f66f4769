"""Shared fixtures: a real Redis for the whole session, a fresh database per test.

The Redis comes from ``TASKFLOW_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/9``). When
nothing answers there, a ``redis-server`` is started on a free port for the session. When neither
works the session fails loudly under CI (``CI=true``) and skips the Redis tests elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
from redis.asyncio import Redis

from support import free_port

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "pdfs"


def _answers(url: str) -> bool:
    try:
        client = redis_sync.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        ok = bool(client.ping())
        client.close()
        return ok
    except (redis_sync.ConnectionError, redis_sync.TimeoutError, OSError):
        return False


def start_redis_server(
    extra_args: list[str] | None = None,
) -> tuple[subprocess.Popen[bytes], int, str]:
    """Start a private ``redis-server`` on a free loopback port; returns (process, port, dir)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="taskflow-redis-")
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", workdir, *(extra_args or [])]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(url):
            return proc, port, workdir
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server on port {port} did not answer within 10 s")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis for this session (a dedicated database number)."""
    url = os.environ.get("TASKFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    if _answers(url):
        yield url
        return
    try:
        proc, port, _ = start_redis_server()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Redis for the tests: {exc}")
        pytest.skip(f"no Redis for the tests: {exc}")
    try:
        yield f"redis://127.0.0.1:{port}/9"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An async client on a flushed test database, closed after the test."""
    client = Redis.from_url(redis_url, decode_responses=False)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared PDF corpus; tests that need it skip with a clear message when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"the shared PDF corpus is not present at ../shared/corpus/pdfs ({CORPUS})")
    return CORPUS


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A PostgreSQL to create test databases on: the configured one, else a private one.

    Skips (fails under ``CI=true``) with the reason when neither can be had.
    """
    from pg_support import admin_url, answers, start_private_postgres

    url = admin_url()
    if answers(url):
        yield url
        return
    try:
        server = start_private_postgres()
    except (RuntimeError, OSError) as exc:
        reason = f"no PostgreSQL for the history tests at {url} and none could be started: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield server.url
    finally:
        server.destroy()


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped after it."""
    from pg_support import create_database, drop_database

    url = create_database(pg_admin_url)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, url)
