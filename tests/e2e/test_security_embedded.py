"""Security of the server process itself: the embedded store, its children, its token.

All against real ``taskflow-server``/``taskflow-worker`` processes on loopback:

* the embedded store (no ``TASKFLOW_REDIS_URL``) refuses clients without the password the
  server prints, and its Lua has no way out to Python or the OS, while ordinary scripts and a
  ``taskflow-worker`` joining with the printed URL work;
* after SIGTERM, SIGINT or even SIGKILL no process the server started (forkserver, resource
  tracker, PDF readers) is left running;
* with its Redis gone, a SIGTERMed server still exits within ``grace + 5 s`` (plus slack);
* a blank ``TASKFLOW_API_TOKEN`` is no token, a short one stops the server at start, and a
  blank ``?token=`` never opens an event stream.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import time
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis as redis_sync
from e2e_support import RedisServer, ServerProc, Spawner, StartServer, log_text, worker_env
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TOKEN = "security-e2e-token-0123456789"
_JOIN_URL = re.compile(r"--redis-url (redis://\S+?)\)?(?:\s|$)")


def _store_url(server: ServerProc, timeout: float = 20.0) -> str:
    """The URL the server printed for joining workers (password included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _JOIN_URL.search(log_text(server.proc))
        if match:
            return match.group(1)
        time.sleep(0.1)
    pytest.fail(f"no embedded store URL in the log:\n{log_text(server.proc)[-2000:]}")


def _wait_state(server: ServerProc, task_id: str, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        resp = httpx.get(f"{server.url}/api/v1/tasks/{task_id}", headers=server.headers())
        state = resp.json().get("state", "") if resp.status_code == 200 else ""
        if state in states:
            return state
        time.sleep(0.1)
    pytest.fail(f"task {task_id} is {state or 'unknown'}, not {states}, after {timeout:g} s")


def _submit(server: ServerProc, task_type: str, payload: dict[str, object]) -> str:
    resp = httpx.post(
        f"{server.url}/api/v1/tasks",
        json={"task_type": task_type, "payload": payload},
        headers=server.headers(),
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["task_id"])


def _pdf() -> bytes:
    buf = io.BytesIO()
    page = canvas.Canvas(buf, pagesize=A4)
    page.setFont("Helvetica", 12)
    for i in range(20):
        page.drawString(60, 780 - 14 * i, f"Line {i} of a small test document.")
    page.showPage()
    page.save()
    return buf.getvalue()


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> float:
    """Send ``sig`` and wait for the process to exit; returns the seconds it took."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the process did not exit within {timeout:g} s of {sig.name}")
    return time.monotonic() - started


# ---------------------------------------------------------------------- the embedded store


def test_embedded_store_needs_the_printed_password(
    start_server: StartServer, spawn: Spawner
) -> None:
    # No in-process workers: the task below can only run on the worker that joins by URL.
    server = start_server({"TASKFLOW_WORKERS": "0"})
    url = _store_url(server)
    parts = urlsplit(url)
    password = parts.password
    assert password and len(password) >= 16, "the printed URL carries no password"
    port = parts.port
    assert port is not None
    log = log_text(server.proc)
    assert log.count(password) == 1, "the password is logged outside the one join URL"
    assert "secret" in log

    anonymous = redis_sync.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    with pytest.raises(redis_sync.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis_sync.AuthenticationError):
        anonymous.eval("return python.eval('1+1')", 0)
    wrong = redis_sync.Redis(host="127.0.0.1", port=port, password="not-it", socket_timeout=5)
    with pytest.raises(redis_sync.AuthenticationError):
        wrong.ping()

    client = redis_sync.Redis.from_url(url, socket_timeout=5)
    assert client.ping()
    assert client.eval("return redis.call('PING')", 0) == b"PONG"
    escapes = {
        "python.eval": "return python.eval('1+1')",
        "os.getenv": "return os.getenv('HOME')",
        "io.open": "return io.open('/etc/hostname'):read('*a')",
        "require": "return require('os').getenv('HOME')",
        "loadstring": "return loadstring('return 1')()",
        "load": "return load('return 1')()",
        "debug": "return tostring(debug.getregistry())",
        "module": "module('os'); return getenv('HOME')",
        "python attributes": "return tostring(redis.call.__globals__)",
    }
    for name, script in escapes.items():
        with pytest.raises(redis_sync.ResponseError):
            client.eval(script, 0)
            pytest.fail(f"{name} ran in the embedded store's Lua")
    assert client.eval("return redis.call('PING')", 0) == b"PONG"  # the connection survived

    worker = spawn("taskflow-worker", "--redis-url", url)
    task_id = _submit(server, "demo.sleep", {"seconds": 0.1})
    _wait_state(server, task_id, {"COMPLETED"}, timeout=30)
    assert worker.poll() is None, log_text(worker)[-2000:]
    assert password not in log_text(worker), "the worker logged the store's password"


# ------------------------------------------------------------------- no orphan processes


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_no_pdf_reader_outlives_the_server(start_server: StartServer, sig: signal.Signals) -> None:
    server = start_server({"TASKFLOW_PDF_POOL_SIZE": "2"})
    resp = httpx.post(
        f"{server.url}/api/v1/tasks/pdfxtract",
        files={"file": ("doc.pdf", _pdf(), "application/pdf")},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    _wait_state(server, resp.json()["task_id"], {"COMPLETED"}, timeout=60)
    children = psutil.Process(server.proc.pid).children(recursive=True)
    assert children, "the PDF task started no process (no pool to check)"

    _stop(server.proc, sig, timeout=40)
    _, alive = psutil.wait_procs(children, timeout=10)
    left = [f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in alive if _running(p)]
    assert not left, f"still running after the server exited: {left}"


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_stop_is_bounded_when_redis_is_gone(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    # The default lease (30 s) is what a hand-back used to wait for Redis, per task.
    env = worker_env(redis_server.url, "bounded", TASKFLOW_LEASE_SECONDS="30")
    server = start_server(env)
    task_id = _submit(server, "demo.sleep", {"seconds": 60})
    _wait_state(server, task_id, {"ACTIVE"}, timeout=20)
    redis_server.kill()
    took = _stop(server.proc, signal.SIGTERM, timeout=60)
    grace = float(env["TASKFLOW_GRACE_SECONDS"])
    assert took < grace + 5 + 5, f"stopping took {took:.1f} s with Redis gone"


# ------------------------------------------------------------------------------ the token


def test_blank_token_is_no_token(start_server: StartServer, spawn: Spawner) -> None:
    server = start_server({"TASKFLOW_API_TOKEN": "   "})
    assert httpx.get(f"{server.url}/api/v1/tasks").status_code == 200
    # ... so it does not make listening beyond loopback acceptable either.
    exposed = spawn(
        "taskflow-server", env={"TASKFLOW_API_TOKEN": "   ", "TASKFLOW_HOST": "0.0.0.0"}
    )
    assert exposed.wait(timeout=30) != 0
    assert "refusing to listen" in log_text(exposed)


def test_short_token_stops_the_server_at_start(spawn: Spawner) -> None:
    proc = spawn("taskflow-server", env={"TASKFLOW_API_TOKEN": "abcde", "TASKFLOW_PORT": "0"})
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("taskflow-server started with a 5-character token")
    out = log_text(proc)
    assert code != 0
    assert "TASKFLOW_API_TOKEN" in out and "16" in out, out[-1000:]


def test_blank_query_token_does_not_open_a_stream(start_server: StartServer) -> None:
    server = start_server({"TASKFLOW_API_TOKEN": f"  {TOKEN}  "})
    with httpx.Client(base_url=server.url, timeout=5) as client:
        with client.stream("GET", "/api/v1/events?token=%20%20%20") as resp:
            assert resp.status_code == 401
        with client.stream("GET", "/api/v1/events?token=") as resp:
            assert resp.status_code == 401
        # The configured token was stripped: the token itself opens the stream.
        with client.stream("GET", f"/api/v1/events?token={TOKEN}") as resp:
            assert resp.status_code == 200
