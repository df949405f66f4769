"""``taskflow fake-openrouter`` as a user runs it: the installed entry point in a subprocess,
with the fake's own flags given directly (the README's line), on a loopback port."""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from support import free_port, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_flags() -> list[str]:
    """The flags of the README's ``taskflow fake-openrouter`` line, read from the README."""
    match = re.search(r"`taskflow fake-openrouter ([^`]+)`", README.read_text(encoding="utf-8"))
    assert match, "the README shows no `taskflow fake-openrouter ...` line"
    return shlex.split(match.group(1))


README_FLAGS = _readme_flags()
"""The flags of the README's ``taskflow fake-openrouter`` line."""
CHAT = {"model": "test/model", "messages": [{"role": "user", "content": "Say hi."}]}
KEY = {"Authorization": "Bearer sk-test"}


def _taskflow() -> str:
    """The ``taskflow`` console script installed next to this interpreter."""
    script = Path(sys.executable).with_name("taskflow")
    assert script.exists(), f"the taskflow entry point is not installed: {script}"
    return str(script)


def _stats(root: str) -> dict[str, Any] | None:
    """``GET /_stats``, or ``None`` while the fake does not answer yet."""
    try:
        response = httpx.get(root + "/_stats", timeout=1.0)
    except httpx.TransportError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


@contextlib.contextmanager
def _fake(*flags: str) -> Iterator[str]:
    """Run ``taskflow fake-openrouter FLAGS --port P --host 127.0.0.1``; yields its root URL
    once it answers, and terminates it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [_taskflow(), "fake-openrouter", *flags, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or _stats(root) is not None,
            "the fake to answer /_stats",
            timeout=20,
        )
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"taskflow fake-openrouter exited {proc.returncode}: {output}")
        yield root
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()


def test_readme_line_runs_with_its_flags() -> None:
    with _fake(*README_FLAGS) as root:
        config = httpx.get(root + "/_control", timeout=5).json()
        assert config["rate_limit"] is not None and config["rate_limit"].startswith("230")
        assert config["latency"] == 0.5 and config["fail_rate"] == 0.1
        started = time.monotonic()
        answer = httpx.post(root + "/api/v1/chat/completions", json=CHAT, headers=KEY, timeout=10)
        assert answer.status_code in (200, 502, 503)  # a 10 % random failure may hit
        assert time.monotonic() - started >= 0.1  # the latency is applied (0.5 s mean)
        stats = _stats(root)
        assert stats is not None and stats["chat_requests"] == 1


def test_help_lists_the_fakes_flags() -> None:
    shown = subprocess.run(
        [_taskflow(), "fake-openrouter", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for flag in (
        "--rate-limit",
        "--latency",
        "--fail-rate",
        "--fault",
        "--outage",
        "--outage-after",
    ):
        assert flag in shown


def test_outage_answers_503_from_the_start() -> None:
    with _fake("--outage", "5") as root:
        answer = httpx.post(root + "/api/v1/chat/completions", json=CHAT, headers=KEY, timeout=10)
        assert answer.status_code == 503
        stats = _stats(root)
        assert stats is not None and stats["mode"]["name"] == "outage"
        assert 0 < stats["mode"]["remaining"] <= 5


def test_outage_after_a_delay() -> None:
    with _fake("--outage", "30", "--outage-after", "1.5") as root:
        first = httpx.post(root + "/api/v1/chat/completions", json=CHAT, headers=KEY, timeout=10)
        stats = _stats(root)
        assert stats is not None and stats["mode"] is None  # not yet
        assert first.status_code == 200
        wait_until(
            lambda: (_stats(root) or {}).get("mode"), "the outage to start", timeout=10, every=0.1
        )
        later = httpx.post(root + "/api/v1/chat/completions", json=CHAT, headers=KEY, timeout=10)
        assert later.status_code == 503


def test_outage_after_needs_an_outage() -> None:
    done = subprocess.run(
        [_taskflow(), "fake-openrouter", "--outage-after", "3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and "--outage-after needs --outage" in done.stderr
