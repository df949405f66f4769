"""OpenRouter's documented answers as files: finding, loading and serving them.

``tests/fixtures/openrouter/*.json`` (see its README) hold OpenRouter's documented answers;
:func:`fixtures_dir` finds them (``$TASKFLOW_FAKE_FIXTURES``, else the checkout this module runs
from) and :func:`load_fixture` reads one, filling its ``{now_ms+N}`` / ``{now_s+N}`` time
templates. :func:`fixture_response` turns a loaded fixture into the HTTP answer: status, headers
and ``body`` (JSON), ``text`` (raw) or ``stream`` (SSE lines, status 200), after its ``prefix``.
A fixture with ``"endpoint": "/key"`` answers ``/key`` instead of a chat request.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.responses import Response, StreamingResponse

FIXTURES_ENV = "TASKFLOW_FAKE_FIXTURES"
"""Environment variable naming the fixtures directory (overrides the checkout's)."""


FIXTURE_PREFIX = "fixture:"
"""A fault named ``fixture:<stem>`` serves ``<fixtures dir>/<stem>.json``."""


_FIXTURES_IN_CHECKOUT = Path("tests") / "fixtures" / "openrouter"


_TEMPLATE = re.compile(r"\{now_(ms|s)(?:([+-])(-?\d+))?\}")


_FIXTURE_KINDS = ("body", "text", "stream")


def fixtures_dir() -> Path | None:
    """The default fixtures directory: ``$TASKFLOW_FAKE_FIXTURES`` when set, else
    ``tests/fixtures/openrouter`` of the checkout this module is installed from (editable), else
    ``None``."""
    configured = os.environ.get(FIXTURES_ENV)
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / _FIXTURES_IN_CHECKOUT
        if candidate.is_dir():
            return candidate
    return None


def _substitute(value: Any, now: float) -> Any:
    """``value`` with every ``{now_ms+N}`` / ``{now_s+N}`` in its strings replaced."""

    def replace(match: re.Match[str]) -> str:
        unit, sign, number = match.groups()
        offset = int(number or 0) * (-1 if sign == "-" else 1)
        base = int(now * 1000) if unit == "ms" else int(now)
        return str(base + offset)

    if isinstance(value, str):
        return _TEMPLATE.sub(replace, value)
    if isinstance(value, list):
        return [_substitute(item, now) for item in value]
    if isinstance(value, Mapping):
        return {key: _substitute(item, now) for key, item in value.items()}
    return value


_RAW_FIXTURES: dict[tuple[str, int], dict[str, Any]] = {}


def _read_fixture(path: Path) -> dict[str, Any]:
    """The parsed file (cached by path and modification time) checked against the format."""
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_mtime_ns)
    cached = _RAW_FIXTURES.get(cache_key)
    if cached is not None:
        return cached
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"fixture {path.name}: not a JSON object")
    kinds = [kind for kind in _FIXTURE_KINDS if kind in data]
    if len(kinds) != 1:
        raise ValueError(f"fixture {path.name}: needs exactly one of body, text or stream")
    if "stream" in data and not isinstance(data["stream"], list):
        raise ValueError(f"fixture {path.name}: stream must be a list of lines")
    if "text" in data and not isinstance(data["text"], str):
        raise ValueError(f"fixture {path.name}: text must be a string")
    if not isinstance(data.get("headers", {}), Mapping):
        raise ValueError(f"fixture {path.name}: headers must be an object")
    _RAW_FIXTURES[cache_key] = data
    return data


def load_fixture(path: Path, now: float | None = None) -> dict[str, Any]:
    """One fixture file with its ``{now_ms+N}`` / ``{now_s+N}`` templates (in ``headers``,
    ``body``, ``text``, ``stream`` and ``prefix``) filled for ``now`` (epoch seconds; default
    the current time). Raises ``ValueError`` when the file does not follow the format."""
    moment = time.time() if now is None else now
    data = copy.deepcopy(_read_fixture(Path(path)))
    for key in ("headers", *_FIXTURE_KINDS, "prefix"):
        if key in data:
            data[key] = _substitute(data[key], moment)
    return data


def fixture_names(directory: Path | None) -> list[str]:
    """The stems of the fixtures in ``directory`` (sorted; empty without a directory)."""
    if directory is None or not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.json"))


def fixture_path(directory: Path | None, stem: str) -> Path:
    """The file of fixture ``stem`` (raises ``ValueError`` with the reason when there is none)."""
    if directory is None:
        raise ValueError(
            f"no fixtures directory for fixture {stem!r}: set {FIXTURES_ENV} or --fixtures"
        )
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise ValueError(f"bad fixture name {stem!r}")
    path = directory / f"{stem}.json"
    if not path.is_file():
        raise ValueError(f"unknown fixture {stem!r}: no {stem}.json in {directory}")
    return path


def fixture_endpoint(path: Path) -> str:
    return str(_read_fixture(path).get("endpoint") or "/chat/completions")


def _sse_lines(lines: list[Any]) -> list[str]:
    """The stream's lines as sent: a blank line after each ``data:`` event, the rest (SSE
    comments such as ``: OPENROUTER PROCESSING``) as they are, one line each."""
    out: list[str] = []
    for raw in lines:
        line = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
        if line.endswith("\n"):
            out.append(line)
        elif line.startswith("data:"):
            out.append(line + "\n\n")
        else:
            out.append(line + "\n")
    return out


def fixture_response(fixture: Mapping[str, Any], delay: float = 0.0) -> Response:
    """The HTTP answer of a loaded fixture: its status and headers with ``body`` as JSON,
    ``text`` raw or ``stream`` as ``text/event-stream`` (status 200), after ``prefix``.

    ``delay`` is slept after the first chunk (the prefix, or the stream's first line) so a
    keep-alive prefix reaches the client before the wait; without either, the caller waits."""
    headers = {str(k): str(v) for k, v in dict(fixture.get("headers") or {}).items()}
    has_type = any(k.lower() == "content-type" for k in headers)
    prefix = str(fixture.get("prefix") or "")
    if "stream" in fixture:
        chunks = [prefix] if prefix else []
        chunks += _sse_lines(list(fixture["stream"]))
        if not has_type:
            headers["Content-Type"] = "text/event-stream"
        return StreamingResponse(_paced(chunks, delay), status_code=200, headers=headers)
    status = int(fixture.get("status") or 200)
    if "text" in fixture:
        payload = str(fixture["text"])
        default_type = "text/plain; charset=utf-8"
    else:
        payload = json.dumps(fixture["body"], ensure_ascii=False)
        default_type = "application/json"
    if not has_type:
        headers["Content-Type"] = default_type
    if prefix:
        return StreamingResponse(_paced([prefix, payload], delay), status, headers)
    return Response(payload.encode("utf-8"), status_code=status, headers=headers)


async def _paced(chunks: list[str], delay: float) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        yield chunk.encode("utf-8")
        if i == 0 and delay > 0:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)


def fixture_paces_itself(fixture: Mapping[str, Any]) -> bool:
    return bool(fixture.get("prefix")) or "stream" in fixture
