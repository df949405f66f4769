"""Goodput under an upstream rate limit: how close the shared limiter gets to the limit, unrefused.

Setup (everything on 127.0.0.1, nothing outlives the run):

- a private ``redis-server`` on a free port;
- the fake OpenRouter (``python -m taskflow_server.testing.openrouter``) with a server-side
  token bucket of ``--rate`` (default 100 requests per 10 s) that answers real 429s, and
  ``--latency`` seconds (default 0.3) per answer;
- ``--procs`` ``taskflow-worker`` processes (default 4, ``--concurrency`` slots each) sharing that
  Redis, with ``TASKFLOW_RATE_LIMIT`` set to the same rate (mode ``limited``) or unset (mode
  ``unlimited``: no limiter of our own, only the 429 cool-down and the retry schedule).

The driver waits for every worker's heartbeat, submits ``--tasks`` ``summarize`` tasks at once,
and polls until each is COMPLETED or in the DLQ (or a deadline passes). It reports:

- **goodput / limit**: completions per second over the run (first submit to last completion)
  divided by the limit's rate. Both buckets start full, so the first burst of requests goes at
  once and a run can exceed 100 %;
- **sustained / limit**: the same from one interval (10 s) after the submit, when the burst is
  spent and only the refill rate lets requests through;
- the 429s the upstream sent (from its ``GET /_stats``), and the most requests it had in flight;
- p50/p95 task latency, created -> completed (Redis clock); all tasks are submitted at t=0, so
  this is mostly time spent queued;
- DLQ and retry counts.

**Fault windows** (``--faults``): one more ``limited`` run in which the driver keeps about
``--backlog`` tasks queued (at most ``--max-tasks`` in all), warms up, then switches the fake to
each of its documented failure modes (``POST /_control {"mode": ...}``: key-limit, credits,
daily-cap, provider-429, length, outage) for ``--window`` seconds, one after the other. After
each window it waits for the completion rate to come back (at most ``--max-recovery`` seconds)
and then ``--settle`` seconds, so the next window starts from a steady rate. The workers run with
short hold timings (``TASKFLOW_HOLD_CHECK_SECONDS`` 1, ``TASKFLOW_HOLD_PROBE_SECONDS`` 5); the
daily-cap hold (a cool-down of hours) is ended as a user would at the window's end, with
``reset_breaker`` and ``RateLimiter.clear_cooldown`` (what the reset route does). Per window:
calls sent while the mode was on and calls answered with the fault (the fake's ``modes``
stats), retries, hand-backs and DLQ entries (task records and the event log, up to the next
window), the breaker's transitions, our limiter's tokens taken during the window, the rate in
the window against the rate before it, and how long after the window's end the rate was back to
>= 90 % (from the records' ``completed_at``, Redis clock). Tasks still queued at the end are left
unfinished; every process is stopped.

Prints a table on stdout and, with ``--json PATH``, writes the figures as JSON::

    python benchmarks/bench_goodput.py                       # 2,000 tasks, both modes (~6 min)
    python benchmarks/bench_goodput.py --tasks 300 --modes limited   # a quick check (~30 s)
    python benchmarks/bench_goodput.py --faults              # the fault windows only (~4 min)
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bench_support import free_port, percentile, wait_until
from redis.asyncio import Redis

from taskflow_server.config import Rate, Settings
from taskflow_server.resilience.breaker import reset_breaker
from taskflow_server.resilience.ratelimit import RateLimiter, upstream_burst
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask, TaskRecord

KEY = "sk-bench"
PREFIX = "bench"
TEXT = (
    "The council met on Tuesday to discuss the new library. Funding was approved for two more "
    "years. Construction starts in the spring, and the old building will stay open until then. "
    "Residents asked for longer opening hours; the council promised a survey."
)
FINAL = ("COMPLETED", "DLQ")


@dataclass
class ModeResult:
    """The figures of one run (``rate_limited_at``: seconds after the submit of each 429)."""

    mode: str
    tasks: int
    procs: int
    concurrency: int
    rate: str
    latency_s: float
    completed: int = 0
    dlq: int = 0
    unfinished: int = 0
    elapsed_s: float = 0.0
    goodput_per_s: float = 0.0
    goodput_ratio: float = 0.0
    sustained_per_s: float | None = None
    sustained_ratio: float | None = None
    upstream_requests: int = 0
    upstream_ok: int = 0
    upstream_429: int = 0
    upstream_max_in_flight: int = 0
    retries: int = 0
    p50_latency_s: float | None = None
    p95_latency_s: float | None = None
    by_status: dict[str, int] = field(default_factory=dict)
    rate_limited_at: list[float] = field(default_factory=list)
    timed_out: bool = False


# ----------------------------------------------------------------------------- processes


def log(message: str) -> None:
    """Progress on stderr (stdout carries the table)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def stop_together(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM every process group at once, then SIGKILL what is left after ``timeout``."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        stop_process(proc, timeout=0.0)


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to put started processes in; all are stopped (last first) on exit."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            stop_process(proc)


def spawn(
    args: list[str], logfile: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, output to ``logfile``."""
    with logfile.open("wb") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def worker_command() -> list[str]:
    """The ``taskflow-worker`` entry point of this interpreter's environment."""
    beside = Path(sys.executable).with_name("taskflow-worker")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("taskflow-worker")
    if found is None:
        raise SystemExit("taskflow-worker is not installed (pip install -e .[server])")
    return [found]


# ----------------------------------------------------------------------------- measuring


async def submit_all(queue: TaskQueue, count: int) -> list[str]:
    """Submit ``count`` summarize tasks (lane ``llm``) in batches; returns their ids."""
    ids: list[str] = []
    for start in range(0, count, 500):
        batch = [
            NewTask("summarize", {"content": TEXT, "sentences": 2}, lane="llm")
            for _ in range(min(500, count - start))
        ]
        ids += [s.task_id for s in await queue.submit_many(batch)]
    return ids


async def fetch_records(queue: TaskQueue, ids: list[str]) -> list[TaskRecord]:
    """Every task's record, fetched in chunks."""
    out: list[TaskRecord] = []
    for start in range(0, len(ids), 500):
        out += [r for r in await queue.get_many(ids[start : start + 500]) if r is not None]
    return out


async def drive(
    redis_url: str, fake_root: str, args: argparse.Namespace, result: ModeResult
) -> None:
    """Wait for the workers, submit, poll to the end, and fill ``result``."""
    settings = Settings(_env_file=None, key_prefix=PREFIX)  # type: ignore[call-arg]
    redis = Redis.from_url(redis_url)
    queue = TaskQueue(redis, Keys(PREFIX), settings)
    await queue.load()
    try:
        deadline = time.monotonic() + 60
        while len(await queue.workers()) < args.procs:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not all report a heartbeat within 60 s")
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient(timeout=10) as http:
            (await http.post(f"{fake_root}/_reset")).raise_for_status()
            t0_pair = await redis.time()
            t0 = float(t0_pair[0]) + t0_pair[1] / 1e6
            ids = await submit_all(queue, args.tasks)
            rate = Rate.parse(args.rate)
            budget = args.timeout or (args.tasks / rate.per_second * 2 + 60)
            log(f"{result.mode}: submitted {len(ids)} tasks; polling (deadline {budget:.0f} s)")
            end = time.monotonic() + budget
            last_report = 0.0
            while True:
                counts = await queue.counts()
                finished = sum(counts.get(s, 0) for s in FINAL)
                if finished >= len(ids):
                    break
                if time.monotonic() > end:
                    result.timed_out = True
                    log(f"{result.mode}: deadline passed with {len(ids) - finished} unfinished")
                    break
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    log(
                        f"{result.mode}: completed {counts.get('COMPLETED', 0)}, "
                        f"dlq {counts.get('DLQ', 0)}, scheduled {counts.get('SCHEDULED', 0)}"
                    )
                await asyncio.sleep(0.25)
            stats = (await http.get(f"{fake_root}/_stats")).json()
        records = await fetch_records(queue, ids)
    finally:
        await redis.aclose()

    done = sorted(r.completed_at for r in records if r.state == "COMPLETED" and r.completed_at)
    result.completed = len(done)
    result.dlq = sum(r.state == "DLQ" for r in records)
    result.unfinished = len(ids) - result.completed - result.dlq
    result.retries = sum(r.retry_count for r in records)
    result.rate_limited_at = sorted(
        round(float(e.get("timestamp", 0)) - t0, 2)
        for r in records
        for e in r.error_history
        if e.get("error_type") == "rate_limited"
    )
    last = max([r.updated_at for r in records if r.state in FINAL] or [t0])
    result.elapsed_s = round(last - t0, 3)
    rate = Rate.parse(args.rate)
    if done:
        span = done[-1] - t0
        result.goodput_per_s = round(len(done) / span, 3) if span > 0 else 0.0
        result.goodput_ratio = round(result.goodput_per_s / rate.per_second, 4)
        # After one interval the initial burst is long spent: from then on only the refill
        # rate lets requests through.
        settle = t0 + rate.interval_s
        before = sum(1 for t in done if t <= settle)
        if done[-1] > settle + 1 and len(done) > before:
            sustained = (len(done) - before) / (done[-1] - settle)
            result.sustained_per_s = round(sustained, 3)
            result.sustained_ratio = round(sustained / rate.per_second, 4)
    latencies = [r.completed_at - r.created_at for r in records if r.completed_at]
    if latencies:
        result.p50_latency_s = round(percentile(latencies, 0.50), 2)
        result.p95_latency_s = round(percentile(latencies, 0.95), 2)
    result.upstream_requests = int(stats.get("chat_requests", 0))
    result.upstream_ok = int(stats.get("ok", 0))
    result.by_status = {str(k): int(v) for k, v in stats.get("by_status", {}).items()}
    result.upstream_429 = result.by_status.get("429", 0)
    result.upstream_max_in_flight = int(stats.get("max_in_flight", 0))


@contextlib.contextmanager
def stack(
    name: str, args: argparse.Namespace, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """Redis, the fake and the workers, all on loopback; yields ``(redis URL, fake root)``.

    Every process started here is stopped (last first) when the block ends, however it ends.
    """
    logs = workdir / name
    logs.mkdir(parents=True, exist_ok=True)
    redis_port, fake_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    fake_root = f"http://127.0.0.1:{fake_port}"
    with processes() as started:
        redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        redis_args += ["--appendonly", "no", "--dir", str(logs)]
        started.append(spawn([args.redis_server, *redis_args], logs / "redis.log"))
        fake_args = ["--port", str(fake_port), "--rate-limit", args.rate, "--key", KEY]
        fake_args += ["--latency", str(args.latency), "--seed", "1"]
        fake_module = "taskflow_server.testing.openrouter"
        started.append(spawn([sys.executable, "-m", fake_module, *fake_args], logs / "fake.log"))
        wait_until(
            lambda: httpx.get(f"{fake_root}/_stats", timeout=1).status_code == 200,
            "the fake OpenRouter answering",
            30,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "OPENROUTER"))}
        env |= {
            "TASKFLOW_REDIS_URL": redis_url,
            "TASKFLOW_KEY_PREFIX": PREFIX,
            "TASKFLOW_LOG_LEVEL": args.worker_log_level,
            "OPENROUTER_API_KEY": KEY,
            "OPENROUTER_BASE_URL": f"{fake_root}/api/v1",
            "OPENROUTER_MODEL": "fake/model",
        }
        env |= extra_env or {}
        workers: list[subprocess.Popen[bytes]] = []
        for i in range(args.procs):
            workers.append(
                spawn(
                    [*worker_command(), "--concurrency", str(args.concurrency)],
                    logs / f"worker-{i}.log",
                    env=env,
                    cwd=logs,  # no stray .env file is read
                )
            )
            started.append(workers[-1])
        log(f"{name}: redis :{redis_port}, fake :{fake_port}, {args.procs} worker processes")
        try:
            yield redis_url, fake_root
        finally:
            # Workers with claimed tasks may take their lease time to stop: stop them all at
            # once (then the fake and Redis, last first, as ``processes`` does).
            stop_together(workers)


def run_mode(mode: str, args: argparse.Namespace, workdir: Path) -> ModeResult:
    """One complete run with fresh processes: redis, the fake, the workers, the driver."""
    result = ModeResult(
        mode=mode,
        tasks=args.tasks,
        procs=args.procs,
        concurrency=args.concurrency,
        rate=args.rate,
        latency_s=args.latency,
    )
    extra = {"TASKFLOW_RATE_LIMIT": args.rate} if mode == "limited" else {}
    with stack(mode, args, workdir, extra) as (redis_url, fake_root):
        asyncio.run(drive(redis_url, fake_root, args, result))
    return result


# ----------------------------------------------------------------------------- fault windows

FAULT_MODES: tuple[str, ...] = (
    "key-limit",
    "credits",
    "daily-cap",
    "provider-429",
    "length",
    "outage",
)
"""The fake's documented failure modes, in the order ``--faults`` switches them on."""

RESET_BY_USER = ("daily-cap",)
"""Windows whose hold ends only by the clock (hours) or a user: the driver resets the breaker
and clears the cool-down (what ``POST /api/v1/workers/reset-circuit-breaker`` does) as soon as
the window ends."""

EVENTS_MAXLEN = 2_000_000
"""Event-log cap for the fault run, so that no event of the run is trimmed before it is read."""


@dataclass
class FaultWindow:
    """One fault window and what it cost. Times are seconds; ``*_at`` are relative to the
    window's start, on the Redis clock (the fake and Redis share the machine's clock).

    ``segment_s`` runs from the window's start to the next window's start (or the run's end):
    retries, hand-backs and DLQ entries are counted over it, since a window's effects trail
    past its end. ``recovered_after_s`` is the time from the window's end to the first
    completion that starts ``recovery_span_s`` seconds of completions at >= 90 % of the
    pre-window rate (``None``: never within the segment). ``net_lost_s`` is the segment's
    length minus its completions divided by the pre-window rate: the work lost once the
    refilled buckets' burst has caught up what it could. ``tokens_taken_in_window`` counts our
    limiter's tokens granted during the window (a call refused after its token still took it)
    and ``tokens_left_at_end`` is our bucket's level when the window ended. For the JSON:
    ``call_times``, when each call the mode answered arrived (from the fake's request log), and
    ``breaker_timeline``, every breaker transition of the segment (``"t old->new hold"``).
    """

    name: str
    serves: str
    window_s: float
    ended_by: str
    started_at: float = 0.0
    segment_s: float = 0.0
    pre_rate_per_s: float = 0.0
    window_rate_per_s: float = 0.0
    recovered_after_s: float | None = None
    net_lost_s: float = 0.0
    calls_in_window: int = 0
    wasted_calls: int = 0
    retries: int = 0
    handed_back: int = 0
    dlq: int = 0
    completed_in_segment: int = 0
    truncated_results: int = 0
    breaker_opened_at: float | None = None
    breaker_closed_at: float | None = None
    breaker_opens: int = 0
    holds: list[str] = field(default_factory=list)
    retry_classes: dict[str, int] = field(default_factory=dict)
    handed_back_why: dict[str, int] = field(default_factory=dict)
    tokens_taken_in_window: int = 0
    tokens_left_at_end: float | None = None
    call_times: list[float] = field(default_factory=list)
    breaker_timeline: list[str] = field(default_factory=list)


@dataclass
class FaultsResult:
    """The fault run: its settings, one :class:`FaultWindow` per mode, and the totals."""

    tasks_submitted: int
    procs: int
    concurrency: int
    rate: str
    latency_s: float
    window_s: float
    hold_check_seconds: float
    hold_probe_seconds: float
    windows: list[FaultWindow] = field(default_factory=list)
    completed: int = 0
    dlq: int = 0
    left_unfinished: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    upstream_requests: int = 0
    upstream_429_from_bucket: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    retry_log: list[str] = field(default_factory=list)
    ran_dry: bool = False
    timed_out: bool = False


class FaultDriver:
    """Keeps the queue fed, samples the completion count every 0.25 s, and runs the windows."""

    def __init__(
        self, redis: Redis, queue: TaskQueue, http: httpx.AsyncClient, fake_root: str, args: Any
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.http = http
        self.fake_root = fake_root
        self.args = args
        self.ids: list[str] = []
        self.samples: list[tuple[float, int]] = []  # (Redis time, COMPLETED)
        self.ran_dry = False
        self.deadline = 0.0
        self.last_report = 0.0
        rate = Rate.parse(args.rate)
        # The workers' limiter, as make_provider builds it; read only (status).
        self.limiter = RateLimiter(
            redis, queue.keys, "openrouter", rate, burst=upstream_burst(rate)
        )

    async def now(self) -> float:
        """The Redis clock, in epoch seconds."""
        sec, usec = await self.redis.time()
        return float(sec) + usec / 1e6

    async def tick(self) -> float:
        """One 0.25 s step: top the backlog up, record a sample; returns the Redis time."""
        await asyncio.sleep(0.25)
        counts = await self.queue.counts()
        now = await self.now()
        self.samples.append((now, counts.get("COMPLETED", 0)))
        if counts.get("PENDING", 0) < self.args.backlog:
            room = self.args.max_tasks - len(self.ids)
            if room > 0:
                self.ids += await submit_all(self.queue, min(500, room))
            elif counts.get("PENDING", 0) == 0 and not self.ran_dry:
                self.ran_dry = True
                log("faults: the queue ran dry (raise --max-tasks): the figures are not valid")
        if time.monotonic() - self.last_report > 10:
            self.last_report = time.monotonic()
            log(
                f"faults: completed {counts.get('COMPLETED', 0)}, pending "
                f"{counts.get('PENDING', 0)}, scheduled {counts.get('SCHEDULED', 0)}, "
                f"dlq {counts.get('DLQ', 0)}"
            )
        if time.monotonic() > self.deadline:
            raise TimeoutError("the fault run passed its deadline")
        return now

    async def until(self, moment: float) -> None:
        """Tick until the Redis clock reaches ``moment``."""
        while await self.tick() < moment:
            pass

    def completed_between(self, start: float, end: float) -> int:
        """Completions between two sample times (from the samples nearest to them)."""

        def at(moment: float) -> int:
            before = [count for t, count in self.samples if t <= moment]
            return before[-1] if before else 0

        return at(end) - at(start)

    async def recover(self, end: float, pre_rate: float) -> None:
        """Tick until the last ``recovery_span`` seconds after ``end`` ran at >= 90 % of
        ``pre_rate`` (a live check that only decides when to go on; the reported figure is
        computed afterwards from the records), or ``max_recovery`` seconds pass."""
        span = self.args.recovery_span
        while True:
            now = await self.tick()
            if now - end > self.args.max_recovery:
                log(f"faults: no recovery within {self.args.max_recovery:g} s")
                return
            if now - span >= end and self.completed_between(now - span, now) >= (
                0.9 * pre_rate * span
            ):
                return

    async def window(self, name: str) -> FaultWindow:
        """Switch mode ``name`` on for ``--window`` seconds, end a user-ended hold as a user
        would, wait for recovery and for ``--settle`` seconds of steady work."""
        args = self.args
        now = await self.now()
        baseline = self.completed_between(now - args.baseline, now) / args.baseline
        taken_before = (await self.limiter.status())["taken"]
        body = {"mode": {"name": name, "seconds": args.window}}
        reply = await self.http.post(f"{self.fake_root}/_control", json=body)
        reply.raise_for_status()
        control = reply.json()
        started = float(control["mode"]["started_at"])
        serves = str(control["modes"].get(name, {}).get("serves") or name)
        ended_by = "itself"
        if name in RESET_BY_USER:
            ended_by = "reset_breaker + clear_cooldown at the window's end"
        elif name in ("key-limit", "credits"):
            ended_by = "hold check / probe"
        entry = FaultWindow(name, serves, args.window, ended_by, started_at=started)
        log(f"faults: {name} on for {args.window:g} s (serves {serves}; pre-rate {baseline:.1f}/s)")
        end = started + args.window
        await self.until(end)
        while True:  # the fake ends a mode when it next looks at it
            stats = (await self.http.get(f"{self.fake_root}/_stats")).json()
            if not stats["modes"].get(name, {}).get("on"):
                break
            await asyncio.sleep(0.01)
        if name in RESET_BY_USER:
            await reset_breaker(self.redis, self.queue.keys, settings=self.queue.settings)
            limiter = RateLimiter(self.redis, self.queue.keys, "openrouter")
            await limiter.clear_cooldown()
        bucket = await self.limiter.status()
        entry.tokens_taken_in_window = int(bucket["taken"]) - int(taken_before)
        entry.tokens_left_at_end = bucket["tokens"]
        requests = (await self.http.get(f"{self.fake_root}/_requests")).json()
        entry.call_times = [
            round(float(r["at"]) - started, 3)
            for r in requests
            if r.get("fault") == f"mode:{name}" and float(r["at"]) >= started
        ]
        if name in RESET_BY_USER:
            log(f"faults: {name} ended; breaker reset and cool-down cleared")
        await self.recover(end, baseline)
        now = await self.now()
        log(f"faults: {name} recovered {now - end:.1f} s after the window (live check)")
        await self.until(now + args.settle)
        mode_stats = stats["modes"].get(name, {})
        entry.calls_in_window = int(mode_stats.get("chat_requests", 0))
        entry.wasted_calls = int(mode_stats.get("answers", 0))
        return entry


async def read_events(redis: Redis, key: str) -> list[tuple[float, dict[str, str]]]:
    """Every entry of the event log as ``(Redis time, fields)``."""
    out: list[tuple[float, dict[str, str]]] = []
    start = "-"
    while True:
        chunk = await redis.xrange(key, min=start, max="+", count=5000)
        if not chunk:
            return out
        for raw_id, raw in chunk:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            fields = {
                (k.decode() if isinstance(k, bytes) else str(k)): (
                    v.decode() if isinstance(v, bytes) else str(v)
                )
                for k, v in (raw or {}).items()
            }
            out.append((int(entry_id.split("-")[0]) / 1000.0, fields))
        last = chunk[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))


def analyse_window(
    w: FaultWindow,
    segment_end: float,
    done: list[float],
    records: list[TaskRecord],
    events: list[tuple[float, dict[str, str]]],
    args: argparse.Namespace,
) -> None:
    """Fill a window's figures from the task records and the event log (Redis clock)."""
    s, e = w.started_at, w.started_at + w.window_s
    w.segment_s = round(segment_end - s, 2)

    def between(a: float, b: float) -> int:
        return bisect.bisect_left(done, b) - bisect.bisect_left(done, a)

    pre = between(s - args.baseline, s) / args.baseline
    w.pre_rate_per_s = round(pre, 2)
    w.window_rate_per_s = round(between(s, e) / w.window_s, 2)
    w.completed_in_segment = between(s, segment_end)
    if pre > 0:
        w.net_lost_s = round((segment_end - s) - w.completed_in_segment / pre, 2)
        span = args.recovery_span
        for t in done[bisect.bisect_left(done, e) :]:
            if t + span > segment_end:
                break
            if between(t, t + span) >= 0.9 * pre * span:
                w.recovered_after_s = round(t - e, 2)
                break
    retry_classes: collections.Counter[str] = collections.Counter()
    why: collections.Counter[str] = collections.Counter()
    for r in records:
        for h in r.error_history:
            at = float(h.get("timestamp", 0))
            if s <= at < segment_end and str(h.get("state_transition", "")).endswith("SCHEDULED"):
                w.retries += 1
                retry_classes[str(h.get("error_type") or "?")] += 1
        if (
            r.state == "COMPLETED"
            and r.completed_at
            and s <= r.completed_at < segment_end
            and isinstance(r.result, dict)
            and r.result.get("truncated")
        ):
            w.truncated_results += 1
    holds: set[str] = set()
    for at, ev in events:
        if not s <= at < segment_end:
            continue
        if ev.get("type") == "task_state_changed":
            if ev.get("old") == "ACTIVE" and ev.get("state") == "PENDING":
                w.handed_back += 1
                why[handback_reason(ev.get("reason", ""))] += 1
            elif ev.get("state") == "DLQ":
                w.dlq += 1
        elif ev.get("type") == "breaker_state_changed":
            w.breaker_timeline.append(
                f"{at - s:.2f} {ev.get('old')}->{ev.get('state')} {ev.get('hold', '')}".strip()
            )
            if ev.get("state") == "open":
                w.breaker_opens += 1
                if ev.get("hold"):
                    holds.add(ev["hold"])
                if w.breaker_opened_at is None:
                    w.breaker_opened_at = round(at - s, 2)
            elif ev.get("state") == "closed":
                w.breaker_closed_at = round(at - s, 2)
    w.holds = sorted(holds)
    w.retry_classes = dict(retry_classes)
    w.handed_back_why = dict(why)


def handback_reason(message: str) -> str:
    """A short name for why a task was handed back (from its requeue event's reason)."""
    if "on hold (" in message:
        return "not sent: hold " + message.split("on hold (", 1)[1].split(")", 1)[0]
    if "circuit breaker is open" in message:
        return "not sent: breaker open"
    if "not free within" in message:
        if "cool-down" in message:
            return "not sent: cool-down longer than the max wait"
        if "token" in message:
            return "not sent: token wait longer than the max wait"
        return "not sent: slot wait longer than the max wait"
    if "worker stopping" in message:
        return "worker stopping"
    if message.startswith("OpenRouter"):
        return "answered, upstream paused: " + message.split(":", 1)[0]
    return message[:60] or "?"


async def drive_faults(
    redis_url: str, fake_root: str, args: argparse.Namespace, result: FaultsResult
) -> None:
    """Warm up, run every window in turn, then read the records and the event log."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, key_prefix=PREFIX, events_maxlen=EVENTS_MAXLEN
    )
    redis = Redis.from_url(redis_url)
    queue = TaskQueue(redis, Keys(PREFIX), settings)
    await queue.load()
    try:
        deadline = time.monotonic() + 60
        while len(await queue.workers()) < args.procs:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not all report a heartbeat within 60 s")
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient(timeout=10) as http:
            (await http.post(f"{fake_root}/_reset")).raise_for_status()
            driver = FaultDriver(redis, queue, http, fake_root, args)
            per_window = args.window + args.max_recovery + args.settle + 5
            budget = args.timeout or (args.warmup + len(args.fault_list) * per_window + 60)
            driver.deadline = time.monotonic() + budget
            t0 = await driver.now()
            driver.ids += await submit_all(queue, min(args.backlog + 500, args.max_tasks))
            log(f"faults: submitted {len(driver.ids)} tasks; warming up {args.warmup:g} s")
            try:
                await driver.until(t0 + args.warmup)
                for name in args.fault_list:
                    result.windows.append(await driver.window(name))
            except TimeoutError:
                result.timed_out = True
                log(f"faults: deadline ({budget:.0f} s) passed")
            t_end = await driver.now()
            stats = (await http.get(f"{fake_root}/_stats")).json()
        result.ran_dry = driver.ran_dry
        records = await fetch_records(queue, driver.ids)
        events = await read_events(redis, queue.keys.events)
    finally:
        await redis.aclose()

    result.tasks_submitted = len(driver.ids)
    result.completed = sum(r.state == "COMPLETED" for r in records)
    result.dlq = sum(r.state == "DLQ" for r in records)
    result.left_unfinished = len(records) - result.completed - result.dlq
    result.retries = sum(r.retry_count for r in records)
    result.retry_log = sorted(
        f"{float(h.get('timestamp', 0)) - t0:.2f} s {h.get('error_type')}: {h.get('error')}"
        for r in records
        for h in r.error_history
        if str(h.get("state_transition", "")).endswith(("SCHEDULED", "DLQ"))
    )
    result.elapsed_s = round(t_end - t0, 2)
    result.upstream_requests = int(stats.get("chat_requests", 0))
    result.by_status = {str(k): int(v) for k, v in stats.get("by_status", {}).items()}
    result.answers = {str(k): int(v) for k, v in stats.get("answers", {}).items()}
    result.upstream_429_from_bucket = result.answers.get("429", 0)
    done = sorted(r.completed_at for r in records if r.state == "COMPLETED" and r.completed_at)
    for i, w in enumerate(result.windows):
        last = i + 1 == len(result.windows)
        segment_end = t_end if last else result.windows[i + 1].started_at
        analyse_window(w, segment_end, done, records, events, args)


def run_faults(args: argparse.Namespace, workdir: Path) -> FaultsResult:
    """The fault run: ``limited`` mode, short hold timings, one window per failure mode."""
    result = FaultsResult(
        tasks_submitted=0,
        procs=args.procs,
        concurrency=args.concurrency,
        rate=args.rate,
        latency_s=args.latency,
        window_s=args.window,
        hold_check_seconds=args.hold_check_seconds,
        hold_probe_seconds=args.hold_probe_seconds,
    )
    extra = {
        "TASKFLOW_RATE_LIMIT": args.rate,
        "TASKFLOW_HOLD_CHECK_SECONDS": f"{args.hold_check_seconds:g}",
        "TASKFLOW_HOLD_PROBE_SECONDS": f"{args.hold_probe_seconds:g}",
        "TASKFLOW_EVENTS_MAXLEN": str(EVENTS_MAXLEN),
        **args.worker_env_map,
    }
    with stack("faults", args, workdir, extra) as (redis_url, fake_root):
        asyncio.run(drive_faults(redis_url, fake_root, args, result))
    return result


# ----------------------------------------------------------------------------- report


def table(results: list[ModeResult]) -> str:
    """The results as a Markdown table."""

    def pct(value: float | None) -> str:
        return f"{value * 100:.1f} %" if value is not None else "-"

    def num(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "-"

    rows = [
        "| mode | completed | DLQ | goodput/s | goodput / limit | sustained / limit "
        "| upstream 429s | upstream requests | retries | p50 latency s | p95 latency s "
        "| max in flight |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.mode} | {r.completed} | {r.dlq} | {r.goodput_per_s:.2f} "
            f"| {pct(r.goodput_ratio)} | {pct(r.sustained_ratio)} | {r.upstream_429} "
            f"| {r.upstream_requests} | {r.retries} | {num(r.p50_latency_s)} "
            f"| {num(r.p95_latency_s)} | {r.upstream_max_in_flight} |"
        )
    return "\n".join(rows)


def fault_table(result: FaultsResult) -> str:
    """One row per fault window as a Markdown table, then what the retries and hand-backs
    were."""

    def opt(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "-"

    rows = [
        "| window | fake serves | ended by | calls in window | wasted calls | retries "
        "| handed back | DLQ | breaker open -> closed (s from start; opens) "
        "| our tokens taken in window (left at end) | rate in window / before "
        "| back to 90 % after the end | net work lost |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|",
    ]
    notes: list[str] = []
    for w in result.windows:
        ratio = w.window_rate_per_s / w.pre_rate_per_s if w.pre_rate_per_s else 0.0
        breaker = "-"
        if w.breaker_opened_at is not None:
            holds = f" {', '.join(w.holds)}" if w.holds else ""
            breaker = (
                f"{w.breaker_opened_at:.1f} -> {opt(w.breaker_closed_at)} "
                f"({w.breaker_opens}{holds})"
            )
        lost = "-" if w.recovered_after_s is None else f"{w.recovered_after_s:.1f} s"
        serves = w.serves.removeprefix("fixture:")
        trunc = f" ({w.truncated_results} truncated)" if w.truncated_results else ""
        rows.append(
            f"| {w.name} | `{serves}` | {w.ended_by} | {w.calls_in_window} "
            f"| {w.wasted_calls}{trunc} | {w.retries} | {w.handed_back} | {w.dlq} | {breaker} "
            f"| {w.tokens_taken_in_window} ({opt(w.tokens_left_at_end)}) "
            f"| {w.window_rate_per_s:.1f} / {w.pre_rate_per_s:.1f} per s ({ratio * 100:.0f} %) "
            f"| {lost} | {w.net_lost_s:.1f} s |"
        )
        parts = []
        if w.retry_classes:
            parts.append("retries " + ", ".join(f"{k} {v}" for k, v in w.retry_classes.items()))
        if w.handed_back_why:
            why = sorted(w.handed_back_why.items(), key=lambda kv: -kv[1])
            parts.append("handed back: " + "; ".join(f"{k} {v}" for k, v in why))
        if parts:
            notes.append(f"- {w.name}: " + "; ".join(parts))
    return "\n".join(rows + ([""] if notes else []) + notes)


def fault_summary(result: FaultsResult, args: argparse.Namespace) -> str:
    """The lines printed above the fault table."""
    lines = [
        f"Fault windows: {len(result.windows)} x {result.window_s:g} s in limited mode "
        f"({result.procs} worker processes x {result.concurrency} slots, limit {result.rate}, "
        f"{result.latency_s:g} s latency; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs).",
        f"Workers ran with TASKFLOW_HOLD_CHECK_SECONDS={result.hold_check_seconds:g} and "
        f"TASKFLOW_HOLD_PROBE_SECONDS={result.hold_probe_seconds:g} (defaults 30 and 300).",
        *(
            [
                "daily-cap: its hold (cool-down ~2 h) was ended as a user would, right at the "
                "window's end: reset_breaker() + RateLimiter.clear_cooldown(), what POST "
                "/api/v1/workers/reset-circuit-breaker does."
            ]
            if any(w.name in RESET_BY_USER for w in result.windows)
            else []
        ),
        *([f"Other worker settings: {', '.join(args.worker_env)}."] if args.worker_env else []),
        f"Gaps: recovery (live check, at most {args.max_recovery:g} s) then {args.settle:g} s; "
        f"pre-window rate over the {args.baseline:g} s before each window; recovery = first "
        f"completion after the window's end that starts {args.recovery_span:g} s at >= 90 % of it.",
        f"Run: {result.tasks_submitted} tasks submitted, {result.completed} completed, "
        f"{result.dlq} in the DLQ, {result.left_unfinished} left queued at the end; "
        f"{result.retries} retries; {result.upstream_requests} upstream requests, "
        f"{result.upstream_429_from_bucket} refused by the upstream's own bucket; "
        f"{result.elapsed_s:.0f} s.",
    ]
    lines += [f"  retry at {entry}" for entry in result.retry_log[:20]]
    if result.ran_dry:
        lines.append("WARNING: the queue ran dry: the rates are not valid (raise --max-tasks).")
    if result.timed_out:
        lines.append("WARNING: the run passed its deadline; later windows are missing.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=2000, help="summarize tasks per run")
    parser.add_argument("--procs", type=int, default=4, help="taskflow-worker processes")
    parser.add_argument("--concurrency", type=int, default=100, help="task slots per process")
    parser.add_argument("--rate", default="100/10s", help="the upstream's (and our) rate limit")
    parser.add_argument("--latency", type=float, default=0.3, help="upstream latency, seconds")
    parser.add_argument(
        "--modes",
        default=None,
        help="comma list of limited, unlimited (default both; none with --faults)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="per-run deadline, seconds")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--worker-log-level", default="WARNING")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    faults = parser.add_argument_group("fault windows (--faults)")
    faults.add_argument(
        "--faults",
        action="store_true",
        help="a limited run with one window of each of the fake's failure modes",
    )
    faults.add_argument(
        "--fault-modes", default=",".join(FAULT_MODES), help="comma list, run in this order"
    )
    faults.add_argument("--window", type=float, default=10.0, help="seconds each mode is on")
    faults.add_argument("--warmup", type=float, default=25.0, help="seconds before the first")
    faults.add_argument(
        "--baseline", type=float, default=10.0, help="seconds before a window for its pre-rate"
    )
    faults.add_argument(
        "--settle", type=float, default=15.0, help="seconds after recovery before the next"
    )
    faults.add_argument(
        "--max-recovery", type=float, default=90.0, help="longest wait for recovery, seconds"
    )
    faults.add_argument(
        "--recovery-span", type=float, default=2.0, help="seconds at >= 90 %% that count as back"
    )
    faults.add_argument("--backlog", type=int, default=1000, help="pending tasks kept queued")
    faults.add_argument("--max-tasks", type=int, default=8000, help="most tasks submitted")
    faults.add_argument("--hold-check-seconds", type=float, default=1.0)
    faults.add_argument("--hold-probe-seconds", type=float, default=5.0)
    faults.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another TASKFLOW_* setting for the fault run's workers (repeatable)",
    )
    args = parser.parse_args(argv)
    Rate.parse(args.rate)
    raw_modes = (
        args.modes if args.modes is not None else ("" if args.faults else "limited,unlimited")
    )
    modes = [m.strip() for m in raw_modes.split(",") if m.strip()]
    unknown = set(modes) - {"limited", "unlimited"}
    if unknown or (not modes and not args.faults):
        parser.error(f"--modes takes limited and/or unlimited, not {sorted(unknown)}")
    args.mode_list = modes
    args.fault_list = [m.strip() for m in args.fault_modes.split(",") if m.strip()]
    bad = set(args.fault_list) - set(FAULT_MODES)
    if args.faults and (bad or not args.fault_list):
        parser.error(f"--fault-modes takes {', '.join(FAULT_MODES)}, not {sorted(bad)}")
    if min(args.window, args.baseline, args.recovery_span, args.max_recovery) <= 0:
        parser.error("--window, --baseline, --recovery-span and --max-recovery must be > 0")
    args.worker_env_map = {}
    for item in args.worker_env:
        env_name, sep, value = item.partition("=")
        if not sep or not env_name.startswith("TASKFLOW_"):
            parser.error(f"--worker-env takes TASKFLOW_NAME=VALUE, not {item!r}")
        args.worker_env_map[env_name] = value
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the modes (and the fault windows) one after another and print the tables."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="taskflow-goodput-"))
    results: list[ModeResult] = []
    faults: FaultsResult | None = None
    try:
        for mode in args.mode_list:
            started = time.monotonic()
            results.append(run_mode(mode, args, workdir))
            log(f"{mode}: finished in {time.monotonic() - started:.0f} s")
        if args.faults:
            started = time.monotonic()
            faults = run_faults(args, workdir)
            log(f"faults: finished in {time.monotonic() - started:.0f} s")
    finally:
        failed = any(r.timed_out for r in results) or (faults is not None and faults.timed_out)
        if args.keep_logs or failed:
            log(f"process logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if results:
        print(
            f"\n{args.tasks} summarize tasks, {args.procs} worker processes x {args.concurrency} "
            f"slots, upstream limit {args.rate} with {args.latency:g} s latency "
            f"({platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} CPUs)\n"
        )
        print(table(results))
    if faults is not None:
        print(f"\n{fault_summary(faults, args)}\n")
        print(fault_table(faults))
    if args.json is not None:
        shown = {k: v for k, v in vars(args).items() if k != "json"}
        shown["redis_server"] = Path(args.redis_server).name  # no machine paths in results
        payload: dict[str, Any] = {
            "args": shown,
            "results": [asdict(r) for r in results],
        }
        if faults is not None:
            payload["faults"] = asdict(faults)
        args.json.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        log(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
