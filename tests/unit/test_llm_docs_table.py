"""docs/llm.md's error table is the one generated from tests/fixtures/openrouter/*.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "openrouter"
DOC = REPO / "docs" / "llm.md"
START, END = "<!-- fixtures-table:start -->\n", "<!-- fixtures-table:end -->"
FORMAT_KEYS = {
    "case",
    "source",
    "endpoint",
    "status",
    "headers",
    "prefix",
    "body",
    "text",
    "stream",
    "request",
    "expect",
}


def _table_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openrouter_fixture_table", FIXTURES / "table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documented_table() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert START in text and END in text, "docs/llm.md lost its fixtures-table markers"
    return text.split(START, 1)[1].split(END, 1)[0]


def test_docs_table_matches_the_fixtures() -> None:
    expected = _table_module().markdown_table(FIXTURES)
    assert _documented_table() == expected, (
        "docs/llm.md is out of date: paste the output of "
        "`python tests/fixtures/openrouter/table.py` between the fixtures-table markers"
    )


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_follows_the_format(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) <= FORMAT_KEYS, f"unknown keys {set(data) - FORMAT_KEYS}"
    assert sum(kind in data for kind in ("body", "text", "stream")) == 1
    assert str(data["source"]).startswith("https://")
    expect = data["expect"]
    for key in ("class", "action", "hold", "breaker", "cooldown_s", "retry_after_s"):
        assert key in expect, f"expect.{key} is missing"
    assert expect["action"] in {"complete", "retry", "dlq", "requeue", "hold"}
    assert expect["breaker"] in {"counts", "neutral"}
    assert (expect["action"] == "hold") == (expect["hold"] is not None)
