"""The control panel in a real browser: Voila serves a small panel notebook, headless Chromium
(Debian's, never a downloaded one) drives it through Playwright.

Checks that the queue timeline draws data, that the breaker lamp turns red when its Open button
is clicked (browser -> kernel -> SDK -> server -> kernel -> browser) and back when Reset is
clicked, and saves a screenshot under ``test-output/``. Skipped, saying why, when Chromium,
Voila or Playwright is missing (CI installs Chromium with apt).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

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


TIMELINE_HAS_DATA = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const title = (p) => (p.querySelector('.gtitle') || {}).textContent;
  const timeline = plots.find((p) => title(p).startsWith("Queue depths"));
  if (!timeline) return false;
  const lines = [...timeline.querySelectorAll('.scatterlayer .trace path.js-line')];
  return lines.some(l => (l.getAttribute('d') || '').length > 10);
}"""


def test_panel_renders_and_the_lamp_follows_the_buttons(chromium: str, voila_url: str) -> None:
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
            page.wait_for_selector(".tf-lamp[data-state='closed']", timeout=30_000)
            page.wait_for_function(TIMELINE_HAS_DATA, timeout=30_000)
            page.wait_for_selector(".tf-header >> text=live", timeout=30_000)

            page.click(".tf-lamp-open")
            page.wait_for_selector(".tf-lamp[data-state='open']", timeout=15_000)
            assert "held open" in page.inner_text(".tf-lamp-detail")
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            page.click(".tf-lamp-reset")
            page.wait_for_selector(".tf-lamp[data-state='closed']", timeout=15_000)
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert not errors, errors
