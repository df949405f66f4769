"""Does the control panel keep a notebook kernel responsive under an event burst?

A real ``taskflow-server`` (embedded store) runs as a subprocess; a real IPython kernel (started
with jupyter_client) creates ``ControlPanel(Client(url))`` (or over an ``AsyncClient`` with
``--mode async``) and displays it. This process then makes the server emit ``--events`` task
events over ``--seconds`` seconds (``demo.noop`` tasks, three events each: created, ACTIVE,
COMPLETED, submitted in small batches at an even pace) while it runs a trivial cell (``1 + 1``)
in the kernel every ``--probe-every`` seconds and times execute_request -> execute_reply.

Pass: the slowest probe answers within ``--budget-ms`` (200 ms) and the panel saw the events.

Run::

    python benchmarks/bench_panel.py                 # sync Client, 10,000 events in 10 s
    python benchmarks/bench_panel.py --mode async    # AsyncClient on the kernel's loop

Results are printed and written to
``benchmarks/results/panel-<date>-<mode>-<events>ev-<seconds>s.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from bench_support import percentile, start_server
from jupyter_client.manager import start_new_kernel

RESULTS = Path(__file__).resolve().parent / "results"

SETUP = """
from IPython.display import display
from taskflow_sdk import {client_class}
from taskflow_sdk.widgets import ControlPanel
client = {client_class}({url!r})
panel = ControlPanel(client, refresh_hz={hz})
display(panel)
"""
REPORT = """
import json
print(json.dumps({"events": panel.state.feed.events, "renders": panel.renders,
                  "completed": panel.state.counts["COMPLETED"],
                  "connected": panel.state.feed.connected}))
"""


def run_cell(kc: Any, code: str, timeout: float = 30.0, collect: bool = False) -> tuple[float, str]:
    """Execute ``code``; returns (seconds to execute_reply, its stdout when ``collect``)."""
    started = time.perf_counter()
    msg_id = kc.execute(code, store_history=False)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    elapsed = time.perf_counter() - started
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content']}")
    out: list[str] = []
    while collect:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            break
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
    return elapsed, "".join(out)


def produce(url: str, events: int, seconds: float, done: threading.Event) -> None:
    """Submit demo.noop tasks (3 events each) evenly over ``seconds``."""
    tasks = math.ceil(events / 3)
    ticks = int(seconds * 10)
    per_tick = math.ceil(tasks / ticks)
    sent = 0
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as http:
        for tick in range(ticks):
            n = min(per_tick, tasks - sent)
            if n <= 0:
                break
            body = {"tasks": [{"task_type": "demo.noop", "payload": {}} for _ in range(n)]}
            http.post("/api/v1/tasks/batch", json=body).raise_for_status()
            sent += n
            pause = start + (tick + 1) / 10 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    done.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("sync", "async"), default="sync")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--probe-every", type=float, default=0.1)
    parser.add_argument("--refresh-hz", type=float, default=4.0)
    parser.add_argument("--budget-ms", type=float, default=200.0)
    args = parser.parse_args()

    server, url = start_server(env={"TASKFLOW_REDIS_URL": None})
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        client_class = "Client" if args.mode == "sync" else "AsyncClient"
        run_cell(kc, SETUP.format(client_class=client_class, url=url, hz=args.refresh_hz))
        time.sleep(2.0)  # the feed connects and reads its first snapshots
        idle = [run_cell(kc, "1 + 1")[0] for _ in range(10)]

        done = threading.Event()
        producer = threading.Thread(
            target=produce, args=(url, args.events, args.seconds, done), daemon=True
        )
        latencies: list[float] = []
        started = time.monotonic()
        producer.start()
        while not done.is_set() or time.monotonic() - started < args.seconds + 2.0:
            latencies.append(run_cell(kc, "1 + 1")[0])
            time.sleep(args.probe_every)
        producer.join()
        wall = time.monotonic() - started
        deadline = time.monotonic() + 30
        expected = 3 * math.ceil(args.events / 3)
        while True:
            _, text = run_cell(kc, REPORT, collect=True)
            report = json.loads(text)
            if report["events"] >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        with contextlib.suppress(Exception):
            run_cell(kc, "panel.stop()", timeout=10)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        server.terminate()
        server.wait(timeout=30)

    ms = [1000 * x for x in latencies]
    result = {
        "mode": args.mode,
        "events_sent": expected,
        "events_seen": report["events"],
        "completed_seen": report["completed"],
        "seconds": args.seconds,
        "wall_s": round(wall, 2),
        "refresh_hz": args.refresh_hz,
        "renders": report["renders"],
        "probes": len(ms),
        "probe_p50_ms": round(statistics.median(ms), 1),
        "probe_p95_ms": round(percentile(ms, 0.95), 1),
        "probe_p99_ms": round(percentile(ms, 0.99), 1),
        "probe_max_ms": round(max(ms), 1),
        "idle_p50_ms": round(1000 * statistics.median(idle), 1),
        "budget_ms": args.budget_ms,
        "python": sys.version.split()[0],
        "date": dt.date.today().isoformat(),
    }
    result["pass"] = result["probe_max_ms"] <= args.budget_ms and report["events"] >= expected
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"panel-{result['date']}-{args.mode}-{args.events}ev-{args.seconds:g}s.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
