"""Does the control panel keep a notebook kernel responsive under an event burst, and how soon
does it paint?

**Cell latency.** A real ``taskflow-server`` (embedded store) runs as a subprocess; a real
IPython kernel (started with jupyter_client) creates ``ControlPanel(Client(url))`` (or over an
``AsyncClient`` with ``--mode async``) and displays it. This process then makes the server emit
``--events`` task events over ``--seconds`` seconds (``demo.noop`` tasks, three events each:
created, ACTIVE, COMPLETED, submitted in small batches at an even pace) while it runs a trivial
cell (``1 + 1``) in the kernel every ``--probe-every`` seconds and times execute_request ->
execute_reply. Pass: the slowest probe answers within ``--budget-ms`` (200 ms) and the panel saw
the events.

**First paint** (``--first-paint N``). Voila serves a notebook that shows the panel over a
server holding 300 finished tasks; headless Chromium (Debian's) loads it N times, and the time
from navigation to the panel's markup, and to all three charts drawn with data, is taken, with
the bytes the page received over its kernel websocket.

``--panel before`` runs either measurement with the panel as it was at ``--before-ref`` (its
``taskflow_sdk/widgets`` extracted from git into a temporary package), so before and after are
measured in one run on the same machine: compare their ratio, not absolute times.

Run::

    python benchmarks/bench_panel.py                     # sync Client, 10,000 events in 10 s
    python benchmarks/bench_panel.py --mode async        # AsyncClient on the kernel's loop
    python benchmarks/bench_panel.py --panel before      # the same, with the earlier panel
    python benchmarks/bench_panel.py --first-paint 5     # first paint, before and after

Results are printed and written to ``benchmarks/results/panel-<date>-<what>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import queue
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from bench_support import REPO, free_port, percentile, start_server
from jupyter_client.manager import start_new_kernel

RESULTS = Path(__file__).resolve().parent / "results"
BEFORE_REF = "85bedcf^"
"""The commit whose panel is "before": the last one with plotly FigureWidgets."""
BEFORE_PACKAGE = "taskflow_panel_before"


def prepare_before(ref: str, into: Path) -> Path:
    """Extract ``taskflow_sdk/widgets`` at ``ref`` into ``into/<BEFORE_PACKAGE>`` (its own
    imports renamed) and return ``into`` (to put on ``sys.path``)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "taskflow_sdk/widgets"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    staging = into / "staging"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(staging, filter="data")
    target = into / BEFORE_PACKAGE
    shutil.move(str(staging / "taskflow_sdk" / "widgets"), target)
    for path in target.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("taskflow_sdk.widgets", BEFORE_PACKAGE), encoding="utf-8")
    return into


def panel_import(panel: str, before_dir: Path | None) -> str:
    """The kernel code that imports ``ControlPanel`` for ``panel`` (``before`` or ``after``)."""
    if panel == "after":
        return "from taskflow_sdk.widgets import ControlPanel"
    assert before_dir is not None
    return (
        f"sys.path.insert(0, {str(before_dir)!r})\nfrom {BEFORE_PACKAGE}.panel import ControlPanel"
    )


SETUP = """
import sys
from IPython.display import display
from taskflow_sdk import {client_class}
{panel_import}
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


def measure_latency(args: argparse.Namespace, panel_code: str) -> dict[str, Any]:
    """Probe-cell latency while the panel consumes ``args.events`` events."""
    server, url = start_server(env={"TASKFLOW_REDIS_URL": None})
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        client_class = "Client" if args.mode == "sync" else "AsyncClient"
        run_cell(
            kc,
            SETUP.format(
                client_class=client_class, url=url, hz=args.refresh_hz, panel_import=panel_code
            ),
        )
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
        "what": "latency",
        "panel": args.panel,
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
    }
    result["pass"] = result["probe_max_ms"] <= args.budget_ms and report["events"] >= expected
    return result


BASELINE_NOTEBOOK = """
import ipywidgets
from taskflow_sdk import Client
Client({url!r}).health()
ipywidgets.HTML("<div class='taskflow-panel'>no panel: the page, kernel and SDK alone</div>")
"""
"""The same page without the panel: what Voila, the kernel and the SDK cost by themselves."""
PAINT_NOTEBOOK = """
import sys
from taskflow_sdk import Client
{panel_import}
panel = ControlPanel(Client({url!r}), refresh_hz=4)
panel
"""
CHARTS_DRAWN = """() => {
  const panel = document.querySelector('.taskflow-panel');
  if (!panel) return false;
  const plots = panel.querySelectorAll('.js-plotly-plot .main-svg');
  const bars = [...panel.querySelectorAll('.bars path')]
    .filter((p) => (p.getAttribute('d') || '').length > 10);
  return plots.length >= 3 && bars.length > 0;
}"""
"""True once the panel's three plotly charts are drawn and the counts chart has a bar."""


def _write_notebook(path: Path, code: str) -> None:
    cell: dict[str, Any] = {"cell_type": "code", "id": "panel", "metadata": {}, "source": code}
    cell |= {"execution_count": None, "outputs": []}
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


def _paint_once(chromium: str, url: str, charts: bool = True) -> dict[str, float]:
    """Load ``url`` once in a fresh browser profile; seconds to the panel and to its charts,
    and the kilobytes received over websockets."""
    from playwright.sync_api import sync_playwright

    received = [0]

    def on_socket(ws: Any) -> None:
        ws.on("framereceived", lambda frame: received.__setitem__(0, received[0] + len(frame)))

    profile = tempfile.mkdtemp(prefix="taskflow-bench-chromium-")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"],
            )
            try:
                page = browser.new_page()
                page.on("websocket", on_socket)
                started = time.perf_counter()
                page.goto(url, timeout=120_000)
                page.wait_for_selector(".taskflow-panel", timeout=120_000)
                panel = time.perf_counter() - started
                if charts:
                    page.wait_for_function(CHARTS_DRAWN, timeout=120_000)
                drawn = time.perf_counter() - started
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return {"panel_s": panel, "charts_s": drawn, "received_kb": received[0] / 1024}


VARIANTS = ("baseline", "before", "after")
"""The pages of the first-paint measurement, loaded in turn."""


def measure_first_paint(args: argparse.Namespace, before_dir: Path) -> dict[str, Any]:
    """First paint of the panel before and after, ``args.first_paint`` loads each, alternating."""
    chromium = shutil.which("chromium")
    voila = Path(sys.executable).with_name("voila")
    if chromium is None or not voila.exists():
        raise SystemExit("--first-paint needs Debian's chromium and voila (the dev extra)")
    server, url = start_server(env={"TASKFLOW_REDIS_URL": None})
    work = Path(tempfile.mkdtemp(prefix="taskflow-bench-paint-"))
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            body = {"tasks": [{"task_type": "demo.noop", "payload": {}} for _ in range(300)]}
            http.post("/api/v1/tasks/batch", json=body).raise_for_status()
        for panel in VARIANTS:
            folder = work / panel
            folder.mkdir()
            code = BASELINE_NOTEBOOK.format(url=url)
            if panel != "baseline":
                code = PAINT_NOTEBOOK.format(url=url, panel_import=panel_import(panel, before_dir))
            _write_notebook(folder / "panel.ipynb", code)
            port = free_port()
            proc = subprocess.Popen(
                [
                    str(voila),
                    "panel.ipynb",
                    "--no-browser",
                    f"--port={port}",
                    "--Voila.ip=127.0.0.1",
                ],
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs[panel] = (proc, f"http://127.0.0.1:{port}/")
        for _, page_url in procs.values():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{page_url}api/kernelspecs", timeout=2).status_code < 500:
                        break
                time.sleep(0.2)
        runs: dict[str, list[dict[str, float]]] = {panel: [] for panel in VARIANTS}
        for _ in range(args.first_paint):
            for panel in VARIANTS:
                runs[panel].append(
                    _paint_once(chromium, procs[panel][1], charts=panel != "baseline")
                )
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    def med(panel: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[panel]), 2)

    result: dict[str, Any] = {"what": "first-paint", "loads_each": args.first_paint}
    for panel in VARIANTS:
        result[panel] = {key: med(panel, key) for key in ("panel_s", "charts_s", "received_kb")}
    base = result["baseline"]["charts_s"]
    for panel in ("before", "after"):
        # What the panel adds to a page that shows nothing but a widget: its own first paint.
        result[panel]["over_baseline_s"] = round(result[panel]["charts_s"] - base, 2)
    result["charts_ratio_before_over_after"] = round(
        result["before"]["over_baseline_s"] / max(0.01, result["after"]["over_baseline_s"]), 2
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("sync", "async"), default="sync")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--probe-every", type=float, default=0.1)
    parser.add_argument("--refresh-hz", type=float, default=4.0)
    parser.add_argument("--budget-ms", type=float, default=200.0)
    parser.add_argument("--panel", choices=("after", "before"), default="after")
    parser.add_argument("--before-ref", default=BEFORE_REF)
    parser.add_argument("--first-paint", type=int, default=0, metavar="N")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="taskflow-panel-before-") as tmp:
        before_dir = prepare_before(args.before_ref, Path(tmp))
        if args.first_paint:
            result = measure_first_paint(args, before_dir)
            name = f"first-paint-{args.first_paint}x"
            passed = True
        else:
            result = measure_latency(args, panel_import(args.panel, before_dir))
            name = f"{args.panel}-{args.mode}-{args.events}ev-{args.seconds:g}s"
            passed = bool(result["pass"])
    result["python"] = sys.version.split()[0]
    result["date"] = dt.date.today().isoformat()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"panel-{result['date']}-{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
