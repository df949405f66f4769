"""Goodput under an upstream rate limit: how close the shared limiter gets to the limit, unrefused.

Setup (everything on 127.0.0.1, nothing outlives the run):

- a private ``redis-server`` on a free port;
- the fake OpenRouter (``python -m taskflow_server.llm.fake_openrouter``) with a server-side
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

Prints a table on stdout and, with ``--json PATH``, writes the figures as JSON::

    python benchmarks/bench_goodput.py                       # 2,000 tasks, both modes (~6 min)
    python benchmarks/bench_goodput.py --tasks 300 --modes limited   # a quick check (~30 s)
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench_support import free_port, percentile
from redis.asyncio import Redis

from taskflow_server.config import Rate, Settings
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


def wait_until(check: Any, what: str, timeout: float) -> None:
    """Poll ``check()`` every 50 ms until it is truthy; raise ``RuntimeError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout:g} s")


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
    logs = workdir / mode
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
        fake_module = "taskflow_server.llm.fake_openrouter"
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
        if mode == "limited":
            env["TASKFLOW_RATE_LIMIT"] = args.rate
        for i in range(args.procs):
            started.append(
                spawn(
                    [*worker_command(), "--concurrency", str(args.concurrency)],
                    logs / f"worker-{i}.log",
                    env=env,
                    cwd=logs,  # no stray .env file is read
                )
            )
        log(f"{mode}: redis :{redis_port}, fake :{fake_port}, {args.procs} worker processes")
        asyncio.run(drive(redis_url, fake_root, args, result))
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=2000, help="summarize tasks per run")
    parser.add_argument("--procs", type=int, default=4, help="taskflow-worker processes")
    parser.add_argument("--concurrency", type=int, default=100, help="task slots per process")
    parser.add_argument("--rate", default="100/10s", help="the upstream's (and our) rate limit")
    parser.add_argument("--latency", type=float, default=0.3, help="upstream latency, seconds")
    parser.add_argument(
        "--modes", default="limited,unlimited", help="comma list of limited, unlimited"
    )
    parser.add_argument("--timeout", type=float, default=None, help="per-run deadline, seconds")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--worker-log-level", default="WARNING")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    args = parser.parse_args(argv)
    Rate.parse(args.rate)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"limited", "unlimited"}
    if unknown or not modes:
        parser.error(f"--modes takes limited and/or unlimited, not {sorted(unknown)}")
    args.mode_list = modes
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the modes one after another and print the table."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="taskflow-goodput-"))
    results: list[ModeResult] = []
    try:
        for mode in args.mode_list:
            started = time.monotonic()
            results.append(run_mode(mode, args, workdir))
            log(f"{mode}: finished in {time.monotonic() - started:.0f} s")
    finally:
        if args.keep_logs or any(r.timed_out for r in results):
            log(f"process logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\n{args.tasks} summarize tasks, {args.procs} worker processes x {args.concurrency} "
        f"slots, upstream limit {args.rate} with {args.latency:g} s latency "
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs)\n"
    )
    print(table(results))
    if args.json is not None:
        payload: dict[str, Any] = {
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        log(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
