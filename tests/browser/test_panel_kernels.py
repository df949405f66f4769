"""The panel's feed outlives the user's first ``import pandas``, in twenty fresh kernels.

The bug this guards against: the panel's pump thread drew plotly figures, plotly checked
whether pandas was importable, and when the user's next cell was importing pandas at that
moment the thread met a half-imported module (``partially initialized module 'pandas' has no
attribute 'Series'``) and died, in 5 of 8 fresh kernels. Each kernel here shows a panel over a
real server on loopback, imports pandas in the very next cell, then runs work and checks from
inside the kernel that the feed lived through it: its threads are alive, no thread raised,
events kept arriving and the panel kept redrawing.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from support import make_settings
from taskflow_server.serve import BackgroundServer

pytest.importorskip("ipywidgets")
jupyter_client = pytest.importorskip("jupyter_client.manager")

pytestmark = pytest.mark.timeout(420)

KERNELS = 20
"""Fresh kernels, each with its own panel and its own ``import pandas``."""
AT_ONCE = 4
"""Kernels started at the same time (each is its own process)."""

SHOW = """
import sys, threading
from IPython.display import display
from taskflow_sdk import Client
from taskflow_sdk.widgets import ControlPanel
thread_errors = []
threading.excepthook = lambda args: thread_errors.append(repr(args.exc_value))
client = Client({url!r}, max_retries=0)
panel = ControlPanel(client, refresh_hz=10)
display(panel)
"""
IMPORT = """
import pandas
renders_at_import, events_at_import = panel.renders, panel.state.feed.events
pandas.Series([1, 2, 3]).sum()
"""
CHECK = """
import json, time
client.submit_many([{{"task_type": "demo.noop", "payload": {{}}}} for _ in range({tasks})])
deadline = time.monotonic() + 30
while time.monotonic() < deadline and (
    panel.state.feed.events < events_at_import + {events}
    or panel.renders < renders_at_import + 3
):
    time.sleep(0.05)
alive = sorted(t.name for t in threading.enumerate() if t.name.startswith("taskflow-panel"))
print(json.dumps({{
    "running": panel.running,
    "threads": alive,
    "thread_errors": thread_errors,
    "new_events": panel.state.feed.events - events_at_import,
    "new_renders": panel.renders - renders_at_import,
    "fault": panel.state.feed.fault,
    "pandas": "Series" in dir(sys.modules["pandas"]),
}}))
panel.stop()
"""


def _run(kc: Any, code: str, timeout: float = 60.0) -> str:
    """Execute ``code`` in the kernel; return its stdout (fail on an error reply)."""
    msg_id = kc.execute(code, store_history=False)
    out: list[str] = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


def _one_kernel(url: str) -> dict[str, Any]:
    km, kc = jupyter_client.start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        _run(kc, SHOW.format(url=url))
        _run(kc, IMPORT)  # the very next cell, while the feed's first reads are under way
        tasks = 20
        report = _run(kc, CHECK.format(tasks=tasks, events=3 * tasks))
        return dict(json.loads(report.strip().splitlines()[-1]))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_feed_outlives_import_pandas_in_twenty_fresh_kernels() -> None:
    server = BackgroundServer(make_settings(port=0)).start()
    try:
        with ThreadPoolExecutor(AT_ONCE) as pool:
            reports = list(pool.map(lambda _: _one_kernel(server.url), range(KERNELS)))
    finally:
        server.stop()
    assert len(reports) == KERNELS
    deaths = [r for r in reports if not r["running"] or r["thread_errors"]]
    assert deaths == [], deaths
    for r in reports:
        assert r["threads"] == ["taskflow-panel-events", "taskflow-panel-pump"], r
        assert r["new_events"] >= 60 and r["new_renders"] >= 3, r
        assert r["fault"] is None and r["pandas"], r
