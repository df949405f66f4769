"""Helpers of the e2e suites: processes on loopback, a private Redis, the store, the poll period.

The fixtures that use them live in conftest.py. Every process gets an environment without
inherited ``TASKFLOW_*``/``OPENROUTER_*`` settings and runs in a scratch directory, so a
developer's ``.env`` cannot change what a test does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis as redis_sync
from redis.asyncio import Redis
from redis.exceptions import RedisError

from support import fake_control_sync, free_port, make_settings, wait_until
from taskflow_server.store.audit import audit
from taskflow_server.store.events import EventLog
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask
from taskflow_server.tasks.registry import get_spec, load_builtin_tasks

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = REPO / "test-output" / "e2e-logs"
FIGURES = REPO / "test-output" / "e2e-figures.json"
UPSTREAM_KEY = "sk-e2e-test"


def console_script(name: str) -> list[str]:
    """The command for an entry point of this install (next to the running interpreter)."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return [found]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without taskflow/OpenRouter settings, plus ``extra``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKFLOW_", "OPENROUTER_")) and k != "PYTEST_CURRENT_TEST"
    }
    base["PYTHONUNBUFFERED"] = "1"
    return {**base, **(extra or {})}


def worker_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Settings for short, test-sized periods (leases, reaper, heartbeats)."""
    return {
        "TASKFLOW_REDIS_URL": redis_url,
        "TASKFLOW_KEY_PREFIX": prefix,
        "TASKFLOW_CONCURRENCY": "20",
        "TASKFLOW_LEASE_SECONDS": "2",
        "TASKFLOW_REAPER_EVERY": "0.3",
        "TASKFLOW_SCHEDULER_EVERY": "0.1",
        "TASKFLOW_HEARTBEAT_SECONDS": "0.5",
        "TASKFLOW_GRACE_SECONDS": "2",
        **extra,
    }


POLL = 0.1
"""Seconds between two polls of an e2e wait (``support.eventually(..., every=POLL)``): the
checks query processes, Redis and HTTP, so they are spaced wider than in-process ones."""


def log_text(proc: subprocess.Popen[bytes]) -> str:
    """What a spawned process has logged so far."""
    path = getattr(proc, "log_path", None)
    return Path(path).read_text(errors="replace") if path else ""


class Spawner:
    """Starts processes for one test; ``stop_all`` kills what is left."""

    def __init__(self, test_name: str) -> None:
        self.test_name = test_name.replace("/", "_").replace("[", "-").replace("]", "")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cwd = tempfile.mkdtemp(prefix="taskflow-e2e-")

    def _start(
        self, label: str, argv: list[str], env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{self.test_name}-{label}-{len(self.procs)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                env=clean_env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        proc.log_path = str(log_path)  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def __call__(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the entry point ``name`` with ``args``."""
        return self._start(name, [*console_script(name), *args], env)

    def module(
        self, module: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m module args``."""
        label = module.rsplit(".", 1)[-1]
        return self._start(label, [sys.executable, "-m", module, *args], env)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                _kill_group(proc)
        shutil.rmtree(self.cwd, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and its children (the CPU pool), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait(timeout=10)


# ----------------------------------------------------------------------------------- Redis


class RedisServer:
    """A private ``redis-server`` with AOF on, which can be killed and restarted on its port."""

    def __init__(self, port: int | None = None, *, appendonly: bool = True) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.exe = exe
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="taskflow-e2e-redis-")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            client = redis_sync.Redis(
                host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=2
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis_sync.ConnectionError, redis_sync.TimeoutError, OSError):
            return False
        except redis_sync.ResponseError:  # LOADING: the AOF is being read
            return False

    def start(self, timeout: float = 15.0) -> RedisServer:
        args = [
            self.exe,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--logfile", str(Path(self.dir) / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            return self.answers()

        wait_until(up, f"redis-server on port {self.port} to answer", timeout, every=0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF rewrite (what a crash does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Start again on the same port and directory (the AOF is replayed)."""
        self.kill()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------------------- fake upstream


@dataclass
class FakeUpstream:
    """The fake OpenRouter process: its URLs and its control endpoints."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/api/v1"

    def env(self) -> dict[str, str]:
        """The settings that point a worker at this upstream."""
        return {"OPENROUTER_API_KEY": UPSTREAM_KEY, "OPENROUTER_BASE_URL": self.base_url}

    def control(self, **changes: Any) -> dict[str, Any]:
        """Change the upstream at run time (:func:`support.fake_control_sync`)."""
        return fake_control_sync(self.root, **changes)

    def stats(self) -> dict[str, Any]:
        resp = httpx.get(f"{self.root}/_stats", timeout=5)
        resp.raise_for_status()
        return dict(resp.json())


# --------------------------------------------------------------------------------- server


@dataclass
class ServerProc:
    """A running ``taskflow-server``."""

    proc: subprocess.Popen[bytes]
    url: str
    token: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10.0)
        return httpx.AsyncClient(base_url=self.url, headers=self.headers(), **kwargs)


StartServer = Callable[..., ServerProc]


# ------------------------------------------------------------------------------------ RSS


@dataclass
class RssSampler:
    """Samples the RSS of labelled processes (with their children) every ``every`` seconds."""

    every: float = 0.25
    peaks: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, label: str, pid: int) -> None:
        self._procs.setdefault(label, []).append(pid)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
            self._thread.start()

    def _sample(self, pid: int) -> int:
        try:
            proc = psutil.Process(pid)
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            return int(total)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for label, pids in list(self._procs.items()):
                for pid in pids:
                    rss = self._sample(pid)
                    if rss > self.peaks.get(label, 0):
                        self.peaks[label] = rss

    def peak_mib(self) -> dict[str, float]:
        return {k: round(v / 2**20, 1) for k, v in self.peaks.items()}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# -------------------------------------------------------------------------------- figures


TEXT = (
    "The harbour authority approved the new ferry timetable on Tuesday. Services to the "
    "islands will run every forty minutes in summer. Local traders welcomed the change, "
    "which they say will bring more visitors. The council will review the plan in October."
)


@contextlib.asynccontextmanager
async def open_queue(url: str, prefix: str) -> AsyncIterator[TaskQueue]:
    """A loaded :class:`TaskQueue` on ``url`` under ``prefix`` (the client is closed after)."""
    client = Redis.from_url(url, decode_responses=False, socket_timeout=10)
    queue = TaskQueue(client, Keys(prefix), make_settings(key_prefix=prefix))
    await queue.load()
    try:
        yield queue
    finally:
        await client.aclose()


def new_task(task_type: str, payload: dict[str, Any], **kwargs: Any) -> NewTask:
    """A task in the lane its type runs in (``summarize`` is an LLM-lane task)."""
    load_builtin_tasks()
    return NewTask(task_type, payload, lane=get_spec(task_type).lane, **kwargs)


async def submit_chunked(queue: TaskQueue, tasks: list[NewTask], chunk: int = 2000) -> list[str]:
    ids: list[str] = []
    for i in range(0, len(tasks), chunk):
        ids += [s.task_id for s in await queue.submit_many(tasks[i : i + chunk])]
    return ids


async def counts_or_none(queue: TaskQueue) -> dict[str, int] | None:
    """State counters, or None while Redis does not answer."""
    try:
        return await queue.counts()
    except (RedisError, OSError):
        return None


async def completions(queue: TaskQueue) -> dict[str, int]:
    """How many times each task was reported COMPLETED in the event log."""
    seen: dict[str, int] = {}
    after = "0-0"
    log = EventLog(queue.redis, queue.keys)
    while True:
        batch = await log.read(after=after, count=10_000)
        if not batch:
            return seen
        for event in batch:
            if event.type == "task_state_changed" and event.state == "COMPLETED" and event.task_id:
                seen[event.task_id] = seen.get(event.task_id, 0) + 1
        after = batch[-1].id


async def assert_all_completed_once(queue: TaskQueue, ids: list[str]) -> None:
    """Every task COMPLETED with a result, exactly one completion each; counters = full scan."""
    counts = await queue.counts()
    assert counts["COMPLETED"] == len(ids), counts
    for state in ("ACTIVE", "PENDING", "SCHEDULED", "DLQ"):
        assert counts[state] == 0, counts
    report = await audit(queue.redis, queue.keys)
    assert report.ok, report.problems[:20]
    done = await completions(queue)
    assert set(done) == set(ids), f"{len(set(ids) - set(done))} tasks never completed"
    twice = {tid: n for tid, n in done.items() if n != 1}
    assert not twice, f"completed more than once: {list(twice.items())[:10]}"
    records = await queue.get_many(ids)
    missing = [tid for tid, rec in zip(ids, records, strict=True) if rec is None]
    assert not missing, missing[:10]
    no_result = [r.id for r in records if r is not None and r.result is None]
    assert not no_result, no_result[:10]
