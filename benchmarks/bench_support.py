"""Helpers shared by the benchmark scripts in this folder.

The peer drivers under ``peers/`` have their own (``peers/bench_common.py``): they run inside
the peers' virtual environments, where this project is not installed.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
import redis as redis_sync

REPO = Path(__file__).resolve().parent.parent
"""The checkout the benchmarks run from."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], object], what: str, timeout: float, every: float = 0.05) -> None:
    """Poll ``check()`` every ``every`` s until it is truthy; raise ``RuntimeError`` naming
    ``what`` after ``timeout`` s. An exception from ``check`` counts as not yet (a process that
    is still starting refuses connections)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(every)
    raise RuntimeError(f"{what} did not happen within {timeout:g} s")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under the hash tag ``{prefix}``: a benchmark's own keys only."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def start_server(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    wait_for_worker: bool = False,
    timeout: float = 30.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """``taskflow-server *args`` in its own process on a free loopback port, without a token.

    ``env`` adds settings (``None`` removes one). Returns ``(process, base URL)`` once ``/ready``
    answers, and with ``wait_for_worker`` once ``/health`` also reports a healthy worker.
    """
    port = free_port()
    merged: dict[str, str | None] = {**os.environ, "TASKFLOW_LOG_LEVEL": "WARNING"}
    merged.update({"TASKFLOW_API_TOKEN": None, **(env or {})})
    clean = {k: v for k, v in merged.items() if v is not None}
    code = "from taskflow_server.cli import server_main; server_main()"
    cmd = [sys.executable, "-c", code, "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, env=clean, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"taskflow-server exited with {proc.returncode} during start-up")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                if not wait_for_worker:
                    return proc, url
                health = httpx.get(f"{url}/health", timeout=2).json()
                if health["components"].get("workers", {}).get("healthy"):
                    return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"taskflow-server did not become ready within {timeout:g} s")
