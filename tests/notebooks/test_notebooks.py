"""The three notebooks: how they are committed, and what they do when executed.

The notebooks are written for people, so they hold no ``assert``. The checks live here: each
notebook runs top to bottom in a real kernel (nbclient), against real processes (its own
servers on the embedded store and, where it needs one, the fake OpenRouter as a subprocess).
Before the notebook's last cell (``stop-everything``, which stops all of that) the test runs a
check cell of its own in the same kernel: it asserts on the notebook's variables and asks the
still-running servers. Then the last cell runs, whatever happened before, so no process is left
behind. The check cell exists only in the in-memory copy; the executed copy is never written
back (a failing run saves it under ``test-output/notebooks/`` for reading).
"""

from __future__ import annotations

import ast
import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.notebooks, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
OUTPUT = REPO / "test-output" / "notebooks"
NAMES = ["01_quickstart", "02_batch_pdf_archive", "03_control_panel"]
CELL_TIMEOUT = 90
BUDGET_SECONDS = 90.0
"""Wall-clock budget per notebook, kernel start and checks included (each aims at well under a
minute)."""
STOP_CELL_ID = "stop-everything"
"""The id of every notebook's last cell, which stops what the notebook started."""

CHECKS: dict[str, str] = {
    "01_quickstart": """
assert client.health().healthy, client.health()
assert done.ok and done.summary, (done.state, done.last_error)
assert [str(step.state) for step in done.state_history] == ["PENDING", "ACTIVE", "COMPLETED"], \\
    done.state_history
assert len(finished) == len(texts) == 6, finished
assert all(t.ok and t.summary for t in finished), [(t.state, t.last_error) for t in finished]
status = client.queues()
assert status.count("COMPLETED") == len(texts) + 1, status
depths = status.queues
assert depths.primary + depths.retry + depths.scheduled + depths.active + depths.dlq == 0, depths
assert len(client.workers().to_pandas()) == 1
""",
    "02_batch_pdf_archive": """
pdf_names = sorted(p.name for p in archive.glob("*.pdf"))
assert run.counts() == {"COMPLETED": len(pdf_names)}, run.counts()
assert run.new_tasks == len(pdf_names) and again.new_tasks == 0, (run.new_tasks, again.new_tasks)
assert [t.task_id for t in again.tasks][: len(pdf_names)] == \\
    [t.task_id for t in run.tasks][: len(pdf_names)]
assert len(df) > 0 and sorted(df["file"].unique()) == pdf_names, df["file"].unique()
assert df["title"].str.len().gt(0).all() and df["summary"].fillna("").str.len().gt(0).all()
assert (quality[["title precision", "title recall"]] >= 0.8).all().all(), quality
assert (pages["status"] == "processed").all(), pages
assert len(scanned) >= 1 and (scanned["confidence"] > 0.5).all(), scanned
assert (pages.loc[pages["read by"] == "OCR", "articles"] > 0).all(), pages
assert set(zip(scanned_articles["file"], scanned_articles["page"])) == \\
    set(zip(scanned["file"], scanned["page"])), scanned_articles
assert run.failures().empty, run.failures()
assert len(back) == len(df) and list(back.columns) == list(df.columns), (back.shape, df.shape)
assert back["title"].tolist() == df["title"].tolist()
""",
    "03_control_panel": """
assert "open" in breaker_states and breaker_states[-1] == "closed", breaker_states
assert client.breaker.status().state == "closed", client.breaker.status()
assert any(state == "open" for _, state in panel.state.breaker_changes), \\
    panel.state.breaker_changes
assert "harbor reports" in panel.state.batches, list(panel.state.batches)
assert panel.running

assert len(failures) == 2, failures
assert sorted(failures["item"]) == ["23", "7"], failures
assert (failures["error_class"] == "content_filtered").all(), failures
assert (failures["retry_count"] == 0).all(), failures
assert len(retried) == 2, retried

assert run.counts() == {"COMPLETED": len(texts)}, run.counts()
assert len(client.dlq()) == 0 and client.queues().queues.dlq == 0
final = run.results()
assert final["state"].eq("COMPLETED").all() and final["summary"].notna().all(), final
assert final["cost"].gt(0).all(), final["cost"]
assert abs(run.cost() - final["cost"].sum()) < 1e-9, (run.cost(), final["cost"].sum())
assert run.cost() > 0
assert len(usage) == len(texts) - 2 and usage["prompt_tokens"].gt(0).all(), usage
day = client.openrouter.metrics(days=1).to_pandas().iloc[-1]
assert day["successful_calls"] >= len(texts), day
assert day["failures_by_class"].get("unavailable", 0) >= 3, day
assert day["failures_by_class"].get("content_filtered") == 2, day
assert day["prompt_tokens"] > 0 and day["cost"] > 0, day
""",
}
"""Per notebook, the check cell run in its kernel before its last cell: what the notebook used
to assert, and more."""


def _read(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _execute_then_stop(client: Any, nb: Any) -> None:
    """Run every cell but the last, then the last one (it stops what the notebook started)
    even when an earlier cell failed; the first failure is the one raised."""
    failure: Exception | None = None
    try:
        for index, cell in enumerate(nb.cells[:-1]):
            client.execute_cell(cell, index)
    except Exception as exc:
        failure = exc
    try:
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    except Exception:
        if failure is None:
            raise
    if failure is not None:
        raise failure


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_for_readers(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5)
    cells = nb.cells
    ids = [cell.get("id") for cell in cells]
    assert all(ids) and len(set(ids)) == len(ids), f"{name}: every cell needs its own id"
    code = [cell for cell in cells if cell.cell_type == "code"]
    assert not any(cell.get("outputs") for cell in code), f"{name} is committed with outputs"
    assert all(cell.get("execution_count") is None for cell in code)
    # It opens with an intro that says what it needs and how long it takes.
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert "How long" in cells[0].source and "What it needs" in cells[0].source
    # Every code cell is introduced by prose, and none of them is a test.
    for before, cell in itertools.pairwise(cells):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", f"{name}: no prose before cell {cell.id}"
            assert before.source.strip(), f"{name}: empty prose before cell {cell.id}"
    for cell in code:
        tree = ast.parse(cell.source)
        asserts = [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]
        assert not asserts, f"{name}: cell {cell.id} asserts; checks belong in this test"
    assert cells[-1].cell_type == "code" and cells[-1].id == STOP_CELL_ID


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_does_what_it_says(name: str) -> None:
    nb = _read(name)
    stop_index = len(nb.cells) - 1
    assert nb.cells[stop_index].id == STOP_CELL_ID
    check = nbformat.v4.new_code_cell(CHECKS[name].strip())
    check["id"] = "test-checks"
    nb.cells.insert(stop_index, check)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.monotonic()
    try:
        with client.setup_kernel():
            _execute_then_stop(client, nb)
    except Exception:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, OUTPUT / f"{name}.executed.ipynb")
        raise
    elapsed = time.monotonic() - started
    errors = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    # The servers the notebook runs keep their logs out of the reader's cells.
    logged = [
        out["text"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
        and out.get("name") == "stderr"
        and ("taskflow_server" in out["text"] or "uvicorn" in out["text"])
    ]
    assert not logged, logged
    print(f"{name}: {elapsed:.1f} s")
    if not os.environ.get("TASKFLOW_SLOW_MACHINE"):
        assert elapsed < BUDGET_SECONDS, f"{name} took {elapsed:.1f} s"
