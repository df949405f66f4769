"""Compare AsyncTaskFlow's Redis queue with arq, SAQ, RQ, Celery, Dramatiq and Taskiq.

Every peer runs against the same private ``redis-server`` in one run, with one worker process.
The workloads (see ``benchmarks/README.md`` for the exact definitions):

1. ``enqueue``     -- enqueue rate of N no-op tasks from one producer process;
2. ``drain``       -- one worker drains those N no-ops (worker start to last completion);
3. ``sleep_drain`` -- 500 tasks that each sleep 0.2 s, at default and tuned concurrency,
   reported as wall time and as a ratio to ``ceil(500 / C) * 0.2 s``;
4. ``latency``     -- p50/p99 pick-up latency on an idle worker (200 samples);
5. ``memory``      -- Redis ``used_memory`` per queued task with a 1 KB payload, over the payload.

Peers pin conflicting redis-py versions, so each gets its own virtual environment under
``benchmarks/.venvs/`` (created on first use, reused after).  Every peer module runs as a
subprocess: ``python <peer>.py <workload> '<json args>'`` and prints one JSON line.  Our own
system (``peers/taskflow_peer.py``) runs with the interpreter that runs this harness.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_support import free_port, wait_until

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
DEFAULT_VENV_DIR = HERE / ".venvs"
RESULTS_DIR = HERE / "results"

SLEEP_TASKS = 500
SLEEP_SECONDS = 0.2
LATENCY_SAMPLES = 200
MEMORY_TASKS = 5_000
MEMORY_PAYLOAD = 1024


@dataclass(frozen=True)
class PeerSpec:
    """One system under test: its driver module and the packages its venv needs."""

    name: str
    module: str
    pins: tuple[str, ...] = ()
    own_venv: bool = True
    """False for our system, which runs in the harness's own interpreter."""


PEERS: dict[str, PeerSpec] = {
    spec.name: spec
    for spec in (
        PeerSpec("taskflow", "taskflow_peer.py", own_venv=False),
        PeerSpec("arq", "arq_peer.py", ("arq==0.28.0",)),
        PeerSpec("saq", "saq_peer.py", ("saq[redis]==0.26.4", "typing-extensions>=4.12")),
        PeerSpec("rq", "rq_peer.py", ("rq==2.12.0",)),
        PeerSpec("celery", "celery_peer.py", ("celery[redis]==5.7.0",)),
        PeerSpec("dramatiq", "dramatiq_peer.py", ("dramatiq[redis]==2.2.1",)),
        PeerSpec("taskiq", "taskiq_peer.py", ("taskiq==0.13.0", "taskiq-redis==1.2.4")),
    )
}
DEFAULT_PEERS = ("arq", "saq", "rq", "celery", "dramatiq", "taskiq", "taskflow")


@dataclass
class Sizes:
    """Workload sizes and per-workload timeouts (seconds) for one run."""

    n: int
    sleep_tasks: int = SLEEP_TASKS
    latency_samples: int = LATENCY_SAMPLES
    memory_tasks: int = MEMORY_TASKS
    timeouts: dict[str, float] = field(default_factory=dict)

    def timeout(self, workload: str) -> float:
        """Hard wall-clock limit for one workload subprocess."""
        return self.timeouts.get(workload, 120.0)


def log(message: str) -> None:
    """Progress goes to stderr so stdout carries only the table and the JSON path."""
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- venvs


def venv_python(venv_dir: Path) -> Path:
    """The interpreter inside a venv (POSIX layout)."""
    return venv_dir / "bin" / "python"


def ensure_venv(spec: PeerSpec, cache: Path, skip_install: bool) -> Path:
    """Create (or reuse) the peer's venv and return its interpreter.

    A venv is reused when its stamp file lists exactly the pinned requirements; otherwise it is
    rebuilt from scratch.  With ``skip_install`` an existing venv is used as it is.
    """
    if not spec.own_venv:
        return Path(sys.executable)
    target = cache / spec.name
    python = venv_python(target)
    stamp = target / ".bench-pins"
    wanted = "\n".join(spec.pins)
    if python.exists() and (skip_install or (stamp.exists() and stamp.read_text() == wanted)):
        return python
    if skip_install:
        raise RuntimeError(f"no venv for {spec.name} at {target} and --skip-install was given")
    log(f"creating venv for {spec.name}: {' '.join(spec.pins)}")
    if target.exists():
        shutil.rmtree(target)
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *spec.pins],
        check=True,
        timeout=900,
    )
    stamp.write_text(wanted)
    return python


def installed_versions(python: Path) -> dict[str, str]:
    """Versions of the queue libraries and redis-py inside one interpreter."""
    code = (
        "import importlib.metadata as m, json\n"
        "names = ['arq','saq','rq','celery','kombu','dramatiq','taskiq','taskiq-redis','redis',"
        "'hiredis','asynctaskflow']\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {}


# --------------------------------------------------------------------------- redis


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, no persistence."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL peers connect to (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: self.command("PING") == "PONG", "redis-server answering PING", 10)

    def command(self, *args: str) -> Any:
        """Send one command over RESP2 and return the decoded reply (tiny client, no deps)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
            sock.sendall(request.encode())
            reader = sock.makefile("rb")
            return _read_reply(reader)

    def used_memory(self) -> int:
        """``INFO memory`` ``used_memory`` in bytes."""
        info = str(self.command("INFO", "memory"))
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("INFO memory has no used_memory")

    def flush(self) -> None:
        """Drop every key (synchronously, so memory readings start clean)."""
        self.command("FLUSHALL", "SYNC")

    def stop(self) -> None:
        """Stop the server and remove its scratch directory."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _read_reply(reader: Any) -> Any:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


# --------------------------------------------------------------------------- running peers


class WorkloadError(RuntimeError):
    """A peer subprocess failed, timed out or printed no JSON."""


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_workload(
    python: Path, spec: PeerSpec, workload: str, args: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Run one workload of one peer in a subprocess and return its JSON result.

    The subprocess gets its own process group (and the worker processes it starts inherit it),
    so on timeout, or after it exits, the whole group is killed: nothing outlives the workload.
    """
    args = {**args, "timeout": timeout - 10}
    cmd = [str(python), str(PEERS_DIR / spec.module), workload, json.dumps(args)]
    env = {
        **os.environ,
        "BENCH_REDIS_URL": str(args["redis_url"]),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            cmd, cwd=PEERS_DIR, stdout=out, stderr=err, env=env, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            raise WorkloadError(f"{workload} timed out after {timeout:.0f} s") from None
        finally:
            _kill_group(proc.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["(no stderr)"])[-12:]
        raise WorkloadError(f"{workload} exited {code}: " + " | ".join(tail))
    result = dict(json.loads(lines[-1]))
    if "error" in result:
        raise WorkloadError(f"{workload}: {result['error']}")
    return result


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def bench_peer(spec: PeerSpec, python: Path, redis: RedisServer, sizes: Sizes) -> dict[str, Any]:
    """Run the five workloads for one peer; a failing workload is recorded, not fatal."""
    result: dict[str, Any] = {"peer": spec.name, "versions": installed_versions(python)}
    errors: dict[str, str] = {}
    base = {"redis_url": redis.url}

    def attempt(key: str, workload: str, args: dict[str, Any]) -> dict[str, Any] | None:
        log(f"{spec.name}: {key}")
        try:
            return run_workload(python, spec, workload, {**base, **args}, sizes.timeout(workload))
        except WorkloadError as exc:
            errors[key] = str(exc)
            log(f"{spec.name}: {key} FAILED: {exc}")
            return None

    # 1 + 2: enqueue N no-ops, then drain exactly those with one worker.
    redis.flush()
    enq = attempt("enqueue", "enqueue", {"n": sizes.n, "payload_bytes": 0})
    if enq is not None:
        enq["rate"] = sizes.n / enq["seconds"]
        result["enqueue"] = enq
        drain = attempt("drain", "drain", {"n": sizes.n})
        if drain is not None:
            drain["rate"] = sizes.n / drain["seconds"]
            result["drain"] = drain

    # 3: 500 x 0.2 s sleeps, default and tuned settings.
    for mode in ("default", "tuned"):
        redis.flush()
        run = attempt(
            f"sleep_{mode}",
            "sleep_drain",
            {"n": sizes.sleep_tasks, "sleep_s": SLEEP_SECONDS, "mode": mode},
        )
        if run is None:
            continue
        if run.get("skipped"):
            result[f"sleep_{mode}"] = run
            continue
        slots = int(run["concurrency"])
        ideal = math.ceil(sizes.sleep_tasks / slots) * SLEEP_SECONDS
        run["ideal_seconds"] = ideal
        run["ratio"] = run["seconds"] / ideal
        run["ratio_plus_enqueue"] = run["seconds"] / (ideal + run["enqueue_s"])
        result[f"sleep_{mode}"] = run

    # 4: pick-up latency on an idle worker.
    redis.flush()
    lat = attempt("latency", "latency", {"samples": sizes.latency_samples})
    if lat is not None:
        samples = [float(s) for s in lat.pop("samples")]
        lat["count"] = len(samples)
        lat["p50_ms"] = percentile(samples, 50) * 1000
        lat["p99_ms"] = percentile(samples, 99) * 1000
        lat["mean_ms"] = statistics.fmean(samples) * 1000
        lat["max_ms"] = max(samples) * 1000
        result["latency"] = lat

    # 5: memory per queued 1 KB task, no worker running.
    redis.flush()
    time.sleep(0.2)
    before = redis.used_memory()
    mem = attempt("memory", "memory", {"n": sizes.memory_tasks, "payload_bytes": MEMORY_PAYLOAD})
    if mem is not None:
        time.sleep(0.2)
        delta = redis.used_memory() - before
        mem["used_memory_delta"] = delta
        mem["bytes_per_task"] = delta / sizes.memory_tasks
        mem["bytes_over_payload"] = delta / sizes.memory_tasks - MEMORY_PAYLOAD
        mem["keys"] = redis.command("DBSIZE")
        result["memory"] = mem
    redis.flush()

    if errors:
        result["errors"] = errors
    return result


# --------------------------------------------------------------------------- reporting


def _get(result: dict[str, Any], *path: str) -> Any:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _sleep_cell(result: dict[str, Any], mode: str) -> str:
    run = result.get(f"sleep_{mode}")
    if run is None:
        return "FAILED"
    if run.get("skipped"):
        return "n/a"
    return f"{run['seconds']:.2f}s C={run['concurrency']} x{run['ratio']:.2f}"


def render_table(results: list[dict[str, Any]]) -> str:
    """The human-readable summary: one row per peer, then ratios and settings."""
    header = (
        "peer", "enqueue/s", "drain/s", "sleep default (C, xideal)",
        "sleep tuned (C, xideal)", "p50 ms", "p99 ms", "B/task over 1KB",
    )  # fmt: skip
    rows = [
        (
            r["peer"],
            _fmt(_get(r, "enqueue", "rate"), ",.0f"),
            _fmt(_get(r, "drain", "rate"), ",.0f"),
            _sleep_cell(r, "default"),
            _sleep_cell(r, "tuned"),
            _fmt(_get(r, "latency", "p50_ms"), ".2f"),
            _fmt(_get(r, "latency", "p99_ms"), ".2f"),
            _fmt(_get(r, "memory", "bytes_over_payload"), ",.0f"),
        )
        for r in results
    ]
    lines = [_columns([header, *rows])]

    ratio_rows: list[tuple[str, ...]] = []
    metrics = (
        ("enqueue/s", ("enqueue", "rate"), True),
        ("drain/s", ("drain", "rate"), True),
        ("p50 ms", ("latency", "p50_ms"), False),
        ("B/task", ("memory", "bytes_over_payload"), False),
    )
    ours = next((r for r in results if r["peer"] == "taskflow"), None)
    for label, path, higher_better in metrics:
        values = {r["peer"]: _get(r, *path) for r in results}
        known = {k: v for k, v in values.items() if isinstance(v, int | float) and v > 0}
        if not known:
            continue
        best = max(known.values()) if higher_better else min(known.values())
        our_value = _get(ours, *path) if ours else None
        for peer, value in known.items():
            vs_best = value / best if higher_better else best / value
            vs_ours = "-"
            if isinstance(our_value, int | float) and our_value > 0:
                vs_ours = f"{value / our_value:.2f}"
            ratio_rows.append((label, peer, f"{vs_best:.2f}", vs_ours))
    if ratio_rows:
        lines.append("")
        lines.append(
            "Ratios (vs best: 1.00 = the best peer, lower = worse; "
            "vs ours: this peer's value / taskflow's value)"
        )
        lines.append(_columns([("metric", "peer", "vs best", "vs ours"), *ratio_rows]))

    lines.append("")
    lines.append("Settings")
    for r in results:
        parts = [
            f"enqueue={_get(r, 'enqueue', 'method')}",
            f"drain={_get(r, 'drain', 'setting')}",
            f"sleep default={_get(r, 'sleep_default', 'setting')}",
            f"sleep tuned={_get(r, 'sleep_tuned', 'setting')}",
            f"latency={_get(r, 'latency', 'setting')}",
        ]
        lines.append(f"  {r['peer']}: " + "; ".join(parts))
        for key, message in (r.get("errors") or {}).items():
            lines.append(f"  {r['peer']}: {key} FAILED: {message[:300]}")
    return "\n".join(lines)


def _columns(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for index, row in enumerate(rows):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--peers",
        default=",".join(DEFAULT_PEERS),
        help=f"comma-separated subset of: {', '.join(PEERS)} (default: all)",
    )
    parser.add_argument("--n", type=int, default=20_000, help="no-op tasks to enqueue and drain")
    parser.add_argument(
        "--skip-install", action="store_true", help="use existing peer venvs as they are"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes everywhere")
    parser.add_argument(
        "--venv-dir", type=Path, default=DEFAULT_VENV_DIR, help="where peer venvs are cached"
    )
    parser.add_argument(
        "--redis-server",
        default=shutil.which("redis-server") or "redis-server",
        help="redis-server executable",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON results path")
    return parser.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> Sizes:
    """Workload sizes; ``--quick`` shrinks all of them."""
    if args.quick:
        sizes = Sizes(n=min(args.n, 500), sleep_tasks=50, latency_samples=20, memory_tasks=500)
    else:
        sizes = Sizes(n=args.n)
    per_task = max(1.0, sizes.n / 20_000)
    sizes.timeouts = {
        "enqueue": 30 + 60 * per_task,
        "drain": 30 + 150 * per_task,
        # the slowest honest case is one slot: 500 x 0.2 s = 100 s, plus fork/startup overhead
        "sleep_drain": 60 + sizes.sleep_tasks * SLEEP_SECONDS * 1.5,
        "latency": 60 + sizes.latency_samples * 1.0,
        "memory": 60.0,
    }
    return sizes


@contextlib.contextmanager
def redis_server(executable: str) -> Iterator[RedisServer]:
    """Run a private redis-server for the duration of the block."""
    server = RedisServer(executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Install what is missing, run every selected peer, print the table, write JSON."""
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the private redis-server is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        sys.stderr.write(f"unknown peers: {', '.join(unknown)}\n")
        return 2
    sizes = sizes_for(args)

    pythons: dict[str, Path] = {}
    install_errors: dict[str, str] = {}
    for name in names:
        try:
            pythons[name] = ensure_venv(PEERS[name], args.venv_dir, args.skip_install)
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            install_errors[name] = str(exc)
            log(f"{name}: venv FAILED: {exc}")

    started = time.time()
    results: list[dict[str, Any]] = []
    with redis_server(args.redis_server) as redis:
        redis_version = str(redis.command("INFO", "server")).split("redis_version:")[1].split()[0]
        for name in names:
            if name in install_errors:
                results.append({"peer": name, "errors": {"install": install_errors[name]}})
                continue
            peer_started = time.time()
            result = bench_peer(PEERS[name], pythons[name], redis, sizes)
            result["elapsed_s"] = round(time.time() - peer_started, 1)
            results.append(result)

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "redis_server": redis_version,
        },
        "sizes": {
            "n": sizes.n,
            "sleep_tasks": sizes.sleep_tasks,
            "sleep_s": SLEEP_SECONDS,
            "latency_samples": sizes.latency_samples,
            "memory_tasks": sizes.memory_tasks,
            "memory_payload": MEMORY_PAYLOAD,
            "quick": args.quick,
        },
        "results": results,
    }
    output = args.output
    if output is None:
        suffix = "-quick" if args.quick else ""
        output = RESULTS_DIR / f"queue-{dt.date.today().isoformat()}{suffix}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")

    sys.stdout.write(render_table(results) + "\n\n")
    sys.stdout.write(f"JSON results: {output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
