"""The README's Quick start, run as written: its main job through the installed entry point,
and its test command being the one CI runs (the fake-openrouter line is run by
``test_fake_cli.py``, from the README too)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.timeout(180)


def _quick_start() -> list[str]:
    """The Quick start's commands (the lines of its first bash block that are not comments)."""
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S)
    assert block, "the README has no Quick start bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_quick_start_is_two_commands_install_then_run() -> None:
    commands = _quick_start()
    assert len(commands) == 2, commands
    for command in commands:
        install, run = command.split(" && ")
        assert install.startswith("pip install -e '.["), install
        assert run, command


def test_the_main_job_runs_as_the_readme_writes_it(tmp_path: Path) -> None:
    """``taskflow demo`` with no Redis and no key: the installed command, in a fresh folder."""
    run = _quick_start()[0].split(" && ")[1]
    argv = shlex.split(run)
    assert argv[0] == "taskflow"
    argv[0] = str(Path(sys.executable).with_name("taskflow"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"TASKFLOW_REDIS_URL", "OPENROUTER_API_KEY"} and not k.startswith("PYTEST")
    }
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^Done: \d+ file\(s\), \d+ page\(s\), \d+ article\(s\)", done.stdout, re.M)
    assert "Traceback" not in done.stderr


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    run = _quick_start()[1].split(" && ")[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().splitlines()[-1] == run
