"""Real processes for the end-to-end suites: taskflow-worker / taskflow-server on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

LOG_DIR = Path(__file__).resolve().parents[2] / "test-output" / "e2e-logs"


def console_script(name: str) -> list[str]:
    """The command for an entry point of this install (next to the running interpreter)."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return [found]


class Spawn(Protocol):
    def __call__(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]: ...


@pytest.fixture
def spawn(request: pytest.FixtureRequest) -> Iterator[Spawn]:
    """Start an entry point as a process (logs under test-output/); kills leftovers after."""
    procs: list[subprocess.Popen[bytes]] = []
    LOG_DIR.mkdir(parents=True, exist_ok=True)

    def start(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_path = LOG_DIR / f"{request.node.name}-{name}-{len(procs)}.log"
        full_env = {**os.environ, **(env or {})}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*console_script(name), *args], env=full_env, stdout=log, stderr=subprocess.STDOUT
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
