"""The import map: every package imports only from layers below it.

Each top-level module or sub-package of ``taskflow_server`` and ``taskflow_sdk`` has a rank; an
import (at module level or inside a function) may only point to a lower rank. The ranks are the
architecture in one table: a new module gets a rank here, and an arrow that goes up fails this
test instead of growing into an import circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SERVER_RANKS: dict[str, int] = {
    # foundations: no imports from the package
    "taskflow_server": 0,  # the package root: __version__
    "taskflow_server.errors": 0,
    "taskflow_server.states": 0,
    "taskflow_server._net": 0,
    "taskflow_server.logs": 0,
    "taskflow_server.config": 0,
    "taskflow_server.cancellation": 0,
    "taskflow_server.pdf.geometry": 0,  # page boxes and the user-to-display map, under reader
    # state and pure work
    "taskflow_server.store": 1,  # where a task's state changes (Lua + queue.py)
    "taskflow_server.observability.tracing": 1,  # opt-in OpenTelemetry (sets a hook in logs)
    "taskflow_server.cpu": 1,  # the process pool for CPU-bound work
    "taskflow_server.pdf": 1,  # PDF reading and layout, no I/O beyond the bytes given
    "taskflow_server.testing": 1,  # the fake OpenRouter (a test double, shipped as a command)
    "taskflow_server.testing.broadsheet": 1,  # 2nd newspaper generator (fpdf2), imports nothing
    "taskflow_server.resilience": 2,  # retry policy, breaker, rate limiter
    "taskflow_server.observability.metrics": 2,  # Prometheus field layout and rendering
    "taskflow_server.history": 2,  # the PostgreSQL record: pool, migrations, recorder, reads
    "taskflow_server.embedded": 2,  # the in-process Redis
    "taskflow_server.llm": 3,  # providers, OpenRouter client, monitor
    "taskflow_server.observability.scrape": 3,  # reads a metrics snapshot (breaker, limiter)
    "taskflow_server.services": 4,  # what a process builds once: provider, CPU pool
    "taskflow_server.tasks": 5,  # the task types
    "taskflow_server.worker": 6,  # claims, runs, retries
    "taskflow_server.api": 7,  # FastAPI app and routers
    "taskflow_server.runtime": 7,  # one process's store, services and workers
    "taskflow_server.serve": 8,  # taskflow-server
    "taskflow_server.cli": 9,  # taskflow-worker and the server's commands
}

SDK_RANKS: dict[str, int] = {
    "taskflow_sdk.models": 0,
    "taskflow_sdk._sse": 0,
    "taskflow_sdk._config": 0,
    "taskflow_sdk.errors": 1,
    "taskflow_sdk._params": 1,
    "taskflow_sdk.progress": 1,
    "taskflow_sdk._files": 2,
    "taskflow_sdk._parsers": 2,
    "taskflow_sdk._flows": 3,
    "taskflow_sdk._requests": 4,
    "taskflow_sdk._drivers": 5,
    "taskflow_sdk._wait": 5,
    "taskflow_sdk.events": 6,
    "taskflow_sdk.batch": 6,
    "taskflow_sdk.client": 7,
    "taskflow_sdk.async_client": 7,
    "taskflow_sdk.cli": 8,
    "taskflow_sdk.widgets": 8,
    "taskflow_sdk": 9,  # the public names
}

# Deliberate upward imports, each inside a function and each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("taskflow_sdk._config", "taskflow_sdk"): "the User-Agent reads __version__ at call time",
    ("taskflow_sdk.progress", "taskflow_sdk.widgets"): (
        "under a Jupyter kernel a progress bar shows as the notebook widget, like tqdm.auto"
    ),
}


def _unit(module: str, ranks: dict[str, int]) -> str:
    """The ranked unit a dotted module name belongs to (its longest ranked prefix)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in ranks:
            return name
    raise AssertionError(f"{module} has no rank in tests/unit/test_layers.py: give it one")


def _edges(package_dir: Path, package: str, ranks: dict[str, int]) -> set[tuple[str, str]]:
    edges: set[tuple[str, str]] = set()
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        module = ".".join(parts).removesuffix(".__init__")
        source = _unit(module, ranks)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name == package or name.startswith(package + "."):
                    target = _unit(name, ranks)
                    if target != source:
                        edges.add((source, target))
    return edges


@pytest.mark.parametrize(
    ("package_dir", "package", "ranks"),
    [
        (ROOT / "server" / "taskflow_server", "taskflow_server", SERVER_RANKS),
        (ROOT / "taskflow_sdk", "taskflow_sdk", SDK_RANKS),
    ],
    ids=["server", "sdk"],
)
def test_imports_point_down(package_dir: Path, package: str, ranks: dict[str, int]) -> None:
    edges = _edges(package_dir, package, ranks)
    assert edges, "no imports found: the walk is broken"
    upward = sorted(
        f"{a} (rank {ranks[a]}) imports {b} (rank {ranks[b]})"
        for a, b in edges
        if ranks[b] >= ranks[a] and (a, b) not in ALLOWED
    )
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_allowed_exceptions_are_still_needed() -> None:
    edges = _edges(ROOT / "taskflow_sdk", "taskflow_sdk", SDK_RANKS)
    stale = [pair for pair in ALLOWED if pair not in edges]
    assert not stale, f"remove these from ALLOWED, nothing imports that way any more: {stale}"


def test_sdk_never_imports_the_server() -> None:
    edges = _edges(ROOT / "taskflow_sdk", "taskflow_server", {"taskflow_server": 0} | SDK_RANKS)
    direct = [pair for pair in edges if pair[1] == "taskflow_server"]
    assert not direct, (
        f"the SDK imports the server: {direct}; the SDK speaks HTTP only, and its CLI loads "
        "the server's commands by name when the server extra is installed"
    )
