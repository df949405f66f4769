"""The control panel in a real browser: Voila serves a small panel notebook, headless Chromium
(Debian's, never a downloaded one) drives it through Playwright.

The page (``panel_demo.ipynb``) runs a server over the fake OpenRouter with steady work, shows
the panel, imports pandas in the very next cell, and offers buttons the test clicks: display the
panel again, stop and start it, kill and restart the server. What the browser drew is read back
from plotly's graph divs and the panel's HTML. A screenshot is saved under ``test-output/``.
Skipped, saying why, when Chromium, Voila or Playwright is missing (CI installs Chromium).

Voila runs a reloaded page in a new kernel, so "reload" here checks that every chart draws at
once from a fresh panel; a view of a live panel opened later (what a JupyterLab reload does) is
the second display, checked against the first.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NOTEBOOK = HERE / "panel_demo.ipynb"
SCREENSHOT = REPO / "test-output" / "panel-browser.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _voila() -> str | None:
    beside = Path(sys.executable).with_name("voila")
    return str(beside) if beside.exists() else shutil.which("voila")


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return path


@pytest.fixture
def voila_url() -> Iterator[str]:
    exe = _voila()
    if exe is None:
        pytest.skip("voila is not installed (pip install voila)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="taskflow-voila-")
    shutil.copy(NOTEBOOK, Path(workdir) / NOTEBOOK.name)
    log = open(Path(workdir) / "voila.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, NOTEBOOK.name, "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited: {(Path(workdir) / 'voila.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                # A HEAD-like probe of a static route: GET / would run the notebook once more.
                if httpx.get(f"{url}api/kernelspecs", timeout=2).status_code < 500:
                    break
            if time.monotonic() > deadline:
                pytest.fail("voila did not answer within 30 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


CHARTS = """(index) => {
  const panel = [...document.querySelectorAll('.taskflow-panel')][index];
  if (!panel) return null;
  return [...panel.querySelectorAll('.tf-chart .js-plotly-plot')].map((gd) => ({
    title: ((gd.layout || {}).title || {}).text || "",
    traces: (gd.data || []).map((t) => ({ name: t.name || "", y: Array.from(t.y || []) })),
  }));
}"""
"""Each chart of the ``index``-th panel on the page as the browser drew it: its title and every
trace's y values (plotly keeps what it drew on the graph div)."""


def _charts(page: Any, index: int = 0) -> dict[str, list[dict[str, Any]]]:
    drawn = page.evaluate(CHARTS, index) or []
    return {c["title"].split(" (")[0]: c["traces"] for c in drawn}


LIVE_CHARTS = ("Queue depths", "Tasks per state", "Upstream calls, tokens and cost per day")
"""The charts of the panel's Live tab (the History tab's chart waits for the tab to open)."""


def _every_chart_has_data(page: Any, index: int = 0) -> bool:
    charts = _charts(page, index)
    if not set(LIVE_CHARTS) <= set(charts):
        return False
    return all(any(any(v for v in t["y"]) for t in charts[name]) for name in LIVE_CHARTS)


def _header(page: Any, index: int = 0) -> str:
    return str(page.locator(".taskflow-panel .tf-header").nth(index).inner_text())


def _events(header: str) -> int:
    match = re.search(r"live · ([\d,]+) events", header)
    return int(match.group(1).replace(",", "")) if match else -1


def _wait(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def test_the_panel_holds_in_a_real_browser(chromium: str, voila_url: str) -> None:
    """One page, in order: every chart draws data; the feed outlives ``import pandas`` in the
    next cell; a second display draws what the first does; the DLQ's bulk buttons say what
    they act on; the lamp follows its buttons; stop and start say what they did; the server
    killed and restarted under the panel is shown as such; a reload draws every chart at once.
    """
    from playwright.sync_api import sync_playwright

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="taskflow-chromium-")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(voila_url, timeout=60_000)
            page.wait_for_selector(".taskflow-panel", timeout=60_000)
            _wait(lambda: _every_chart_has_data(page), "data in every chart", 60)

            # The notebook imported pandas right after showing the panel: the feed goes on.
            seen = _wait(lambda: _events(_header(page)) > 0, "a live feed")
            _wait(lambda: _events(_header(page)) > seen, "events after the import of pandas")

            # A second display draws from the same models: the same figures, at once.
            page.click(".tf-test-show-again")
            page.wait_for_function(
                "() => document.querySelectorAll('.taskflow-panel').length === 2", timeout=15_000
            )
            _wait(lambda: _every_chart_has_data(page, 1), "data in the second display", 15)
            _wait(
                lambda: _charts(page, 0) == _charts(page, 1),
                "the second display to draw what the first does",
                15,
            )

            # The DLQ table: bulk buttons name what they act on.
            dlq = page.locator(".taskflow-panel").first.locator(".tf-table").nth(1)
            _wait(lambda: dlq.locator("tbody tr").count() > 0, "rows in the DLQ table")
            retry = dlq.locator(".tf-table-bulk button[data-action='retry']")
            assert re.fullmatch(r"Retry all \(\d+\)", retry.inner_text())
            dlq.locator("tbody input[type=checkbox]").first.check()
            assert retry.inner_text() == "Retry selected (1)"

            # The lamp follows its buttons (browser -> kernel -> SDK -> server and back).
            lamp = page.locator(".taskflow-panel").first
            lamp.locator(".tf-lamp-open").click()
            lamp.locator(".tf-lamp[data-state='open']").wait_for(timeout=15_000)
            assert "held open" in lamp.locator(".tf-lamp-detail").inner_text()
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            lamp.locator(".tf-lamp-reset").click()
            lamp.locator(".tf-lamp[data-state='closed']").wait_for(timeout=15_000)

            # The History tab: this server keeps no history, and the tab says how to turn it on.
            panel = page.locator(".taskflow-panel").first
            panel.get_by_text("History", exact=True).first.click()
            _wait(lambda: "History is off" in panel.inner_text(), "the History tab's message", 20)
            panel.get_by_text("Live", exact=True).first.click()

            # Stop and start say what they did, and nothing else.
            page.click(".tf-test-stop")
            _wait(lambda: "Feed stopped" in _header(page), "the header to say stopped", 15)
            assert "reconnecting" not in _header(page)
            page.click(".tf-test-start")
            _wait(lambda: _events(_header(page)) > 0, "the feed to be live again", 20)
            assert "stopped" not in page.locator(".taskflow-panel").first.inner_text()

            # The server killed under the panel: nothing is claimed about Redis or workers.
            page.click(".tf-test-kill")
            _wait(lambda: "Server unreachable" in _header(page), "the server to show as down", 40)
            header = _header(page)
            assert "Redis unknown" in header and "Workers online unknown" in header
            page.click(".tf-test-restart")
            _wait(lambda: "Server healthy" in _header(page), "the server to show as back", 40)
            _wait(lambda: _events(_header(page)) > 0, "the feed to be live after the restart", 40)

            # A reload draws every chart at once (Voila runs the page in a new kernel).
            page.reload(timeout=60_000)
            page.wait_for_selector(".taskflow-panel", timeout=60_000)
            _wait(lambda: _every_chart_has_data(page), "data in every chart after a reload", 60)
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert not [e for e in errors if "font-awesome" not in e.lower()], errors
