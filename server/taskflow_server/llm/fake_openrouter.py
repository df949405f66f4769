"""A fake OpenRouter: a real HTTP server that speaks the API's contract, for tests and demos.

Run it::

    taskflow fake-openrouter --port 8765 --rate-limit 100/10s --latency 0.3 --fail-rate 0.1 \\
        --seed 1 --key sk-test --fault outage:30 --fault key-limit

(or ``python -m taskflow_server.llm.fake_openrouter`` with the same flags) and point
``OPENROUTER_BASE_URL`` at ``http://127.0.0.1:8765/api/v1``. In Python use :func:`build_app` (an
ASGI app), :func:`run_fake_openrouter` (blocking) or :class:`FakeOpenRouterThread` (a context
manager serving on a free port in a thread).

Endpoints (under ``/api/v1``): ``POST /chat/completions`` (plain and ``json_schema`` answers,
``file`` parts whose page count is echoed, ``stream: true``), ``GET /key`` and ``/auth/key``
(``rate_limit`` is ``{"requests": -1, "interval": "10s"}`` as OpenRouter answers now that the
field is deprecated, unless ``report_rate_limit``), ``GET /credits`` (403 unless a management
key). Unknown or missing bearer keys get 401.

A ``json_schema`` answer fills the schema from the prompt's words, except for a newspaper page
schema (``articles[]`` with ``title`` and ``body``, as pdfxtract asks): that gets one to three
articles that read like news, taken from the request's text layer ("Text layer of this page":
headline-like lines start articles, ``By ...`` lines are bylines, ``Continued on/from page N``
notes fill the page links) or, for a scanned page, made up from small word lists, seeded by the
page so the same page always gets the same stories.

**Fixtures.** ``tests/fixtures/openrouter/*.json`` (see its README) hold OpenRouter's documented
answers; :func:`fixtures_dir` finds them (``$TASKFLOW_FAKE_FIXTURES``, else the checkout this
module runs from) and :func:`load_fixture` reads one, filling its ``{now_ms+N}`` / ``{now_s+N}``
time templates. A fault named ``fixture:<stem>`` serves that file as written: status, headers and
``body`` (JSON), ``text`` (raw) or ``stream`` (SSE lines, status 200), after its ``prefix``. A
fixture with ``"endpoint": "/key"`` answers ``/key`` instead (``key_fixture``).

**Modes** (:data:`MODES`, ``--fault NAME[:SECONDS]`` or the control field ``mode``) answer every
chat request the same way while on, and end by themselves after their seconds: ``key-limit``
(403), ``credits`` (402), ``daily-cap`` (429 free-models-per-day), ``provider-429`` (a 200 whose
body is a provider's 429), ``length`` (``finish_reason: length``) and ``outage`` (503), each
served from its fixture; any fault name (``502``, ``fixture:<stem>``) can run as a mode too.
Several run one after the other.

Faults, in the order they are checked for a chat request:

1. **scripted**: a request whose last user message contains a rule's ``match`` text takes the
   rule's fault (``fault_rules``, each for ``times`` requests or for good); otherwise the next
   requests take faults from a queue (``enqueue``): a name in :data:`FAULTS` or
   ``fixture:<stem>``;
2. **mode**: the current mode's answer;
3. **outage**: 503 ``provider_overloaded`` with ``Retry-After`` until the outage ends;
4. **server-side token bucket** (``rate_limit``): a real 429 with ``Retry-After`` and
   ``X-RateLimit-Limit/Remaining/Reset`` (reset in epoch ms) when the bucket is empty;
5. **key limit**: once the key's spend reaches ``key_limit``, the 403 key-limit fixture (fault
   ``key_limit``; the built-in 402 ``402_key_limit`` without a fixtures directory);
6. **random failures** (``fail_rate``, spread over ``fail_statuses`` by weight; fixture faults
   allowed).

Latency follows ``latency`` seconds with a ``fixed``, ``uniform`` (0.5x-1.5x) or ``exponential``
distribution (after a keep-alive prefix, when there is one). Everything random comes from one
``random.Random(seed)``.

Control at run time: ``POST /_control`` with any of ``latency``, ``latency_dist``, ``fail_rate``,
``fail_statuses``, ``outage_seconds``, ``rate_limit`` (``"N/Ts"`` or null), ``key_limit``,
``cost_per_1k_tokens``, ``seed``, ``enqueue`` (a list of faults), ``clear_queue``,
``fault_rules`` (a list of ``{"match": text, "fault": name, "times": n | null}``, added to the
rules), ``clear_rules``, ``mode`` (``{"name": NAME, "seconds": S | null}``, a name, or a list of
them run in turn; replaces the schedule), ``clear_mode``, ``key_fixture`` (a ``/key`` fixture
or null), ``report_rate_limit``, ``fixtures`` (a directory), ``reset_stats``; a fault, mode or
fixture it cannot serve is a 400 that says why. ``GET /_control`` shows the config, the mode and
what each mode serves; ``GET /_stats`` counts requests, answers per status, 429s, tokens,
content parts by type, the most requests ever in flight at once, the answers per fault
(``answers``: ``fixture:<stem>``, ``mode:<name>``, ``key_limit``, ...) and per mode the answers
it sent and the chat requests that came while it was on (``modes``, with ``mode`` the current
one); ``GET /_requests`` lists the last :data:`REQUEST_LOG_SIZE` chat requests (content part
types, plugins, schema, fault, status, answer; never the file or image data); ``POST /_reset``
clears stats, the log, the queue, the rules and the modes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from taskflow_server.config import Rate

log = logging.getLogger(__name__)

FAULTS: tuple[str, ...] = (
    "400",
    "401",
    "402_credits",
    "402_key_limit",
    "402_in_flight",
    "403_moderation",
    "408",
    "429",
    "429_metadata_headers",
    "500",
    "502",
    "503",
    "503_retry_after",
    "504",
    "200_error",
    "content_filter",
    "bad_json",
    "empty",
    "stream_error",
    "slow",
)
"""Faults that ``enqueue`` accepts (``slow`` waits ``slow_seconds`` before answering normally)."""

REQUEST_LOG_SIZE = 500
"""How many chat requests ``GET /_requests`` remembers (the oldest are dropped)."""

_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_WORDS = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


# ----------------------------------------------------------------------------- fixtures

FIXTURES_ENV = "TASKFLOW_FAKE_FIXTURES"
"""Environment variable naming the fixtures directory (overrides the checkout's)."""

FIXTURE_PREFIX = "fixture:"
"""A fault named ``fixture:<stem>`` serves ``<fixtures dir>/<stem>.json``."""

MODE_PREFIX = "mode:"
"""The request log and ``/_stats`` name a mode's answers ``mode:<name>``."""

KEY_LIMIT_FAULT = "key_limit"
"""The fault name of the answer to a spent ``key_limit`` (the 403 key-limit fixture)."""

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


def _fixture_endpoint(path: Path) -> str:
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


def _fixture_paces_itself(fixture: Mapping[str, Any]) -> bool:
    return bool(fixture.get("prefix")) or "stream" in fixture


# ----------------------------------------------------------------------------- fault modes


@dataclass(frozen=True)
class ModeSpec:
    """A named fault mode backed by a fixture.

    Attributes:
        name: the mode's name (``--fault NAME``).
        stems: fixture stems tried in order.
        pattern: a glob over the fixtures directory tried when no stem exists.
        fallback: the built-in fault used when no fixture is found (``None`` = the mode needs
            its fixture).
        description: one line for ``--help`` and ``GET /_control``.
    """

    name: str
    stems: tuple[str, ...]
    pattern: str | None
    fallback: str | None
    description: str


MODES: dict[str, ModeSpec] = {
    spec.name: spec
    for spec in (
        ModeSpec(
            "key-limit",
            ("403-key-limit",),
            "403-*key*limit*",
            None,
            "403: the key's limit is spent",
        ),
        ModeSpec(
            "credits",
            ("402-credits", "402-insufficient-credits", "402-no-credits"),
            "402-*credit*",
            "402_credits",
            "402: the account is out of credits",
        ),
        ModeSpec(
            "daily-cap",
            ("429-daily-cap", "429-free-models-per-day"),
            "429-*day*",
            None,
            "429: the free models' daily request cap",
        ),
        ModeSpec(
            "provider-429",
            ("200-provider-error-429", "200-error-429"),
            "200-*429*",
            None,
            "200 whose body is the provider's 429",
        ),
        ModeSpec(
            "length",
            ("finish-length", "200-finish-reason-length"),
            "200-*length*",
            None,
            "200 with finish_reason length (truncated)",
        ),
        ModeSpec(
            "outage",
            ("503-unavailable", "503-outage", "503-no-provider"),
            "503-*",
            "503",
            "503: no provider available",
        ),
    )
}
"""The fault modes (``--fault NAME[:SECONDS]``, control field ``mode``)."""


def _mode_fixture(spec: ModeSpec, directory: Path | None) -> str | None:
    """The fixture stem that backs ``spec`` in ``directory`` (``None`` when there is none)."""
    names = fixture_names(directory)
    for stem in spec.stems:
        if stem in names:
            return stem
    if spec.pattern is not None and directory is not None:
        matches = sorted(
            path.stem for path in directory.glob(f"{spec.pattern}.json") if path.is_file()
        )
        for stem in matches:
            with contextlib.suppress(OSError, ValueError):
                if _fixture_endpoint(directory / f"{stem}.json") != "/key":
                    return stem
    return None


@dataclass
class FakeConfig:
    """Behaviour of the fake server (every field can be changed through ``POST /_control``).

    Attributes:
        keys: accepted bearer keys; empty = any non-empty key.
        management_keys: keys that may read ``/credits``.
        rate_limit: the server-side token bucket (``None`` = unlimited).
        latency: mean answer latency in seconds.
        latency_dist: ``fixed``, ``uniform`` or ``exponential``.
        fail_rate: probability that a chat request fails at random.
        fail_statuses: fault name -> weight for random failures.
        seed: seed of the one random generator.
        key_limit: the key's credit limit (``None`` = unlimited); spend counts ``cost``.
        total_credits: what ``/credits`` reports as bought.
        cost_per_1k_tokens: the ``usage.cost`` charged per 1,000 tokens.
        retry_after: the ``Retry-After`` seconds on faults that carry one (429, 402 in-flight,
            503 with Retry-After).
        slow_seconds: how long the ``slow`` fault waits.
        fixtures: the fixtures directory (``fixture:<stem>`` faults, the modes, the key-limit
            answer); default :func:`fixtures_dir`.
        modes: fault modes to run one after the other from the start, ``(name, seconds)``
            (``seconds`` ``None`` = until cleared); see :data:`MODES`.
        key_fixture: a fixture with ``"endpoint": "/key"`` that answers ``/key`` instead.
        report_rate_limit: ``/key`` reports the server-side bucket as ``rate_limit`` (the old
            behaviour) instead of OpenRouter's deprecated ``{"requests": -1, "interval": "10s"}``.
    """

    keys: frozenset[str] = frozenset()
    management_keys: frozenset[str] = frozenset()
    rate_limit: Rate | None = None
    latency: float = 0.0
    latency_dist: str = "fixed"
    fail_rate: float = 0.0
    fail_statuses: dict[str, float] = field(default_factory=lambda: {"502": 1.0, "503": 1.0})
    seed: int = 0
    key_limit: float | None = None
    total_credits: float = 100.0
    cost_per_1k_tokens: float = 0.0
    retry_after: float = 1.0
    slow_seconds: float = 30.0
    fixtures: Path | None = field(default_factory=fixtures_dir)
    modes: list[tuple[str, float | None]] = field(default_factory=list)
    key_fixture: str | None = None
    report_rate_limit: bool = False

    def public(self) -> dict[str, Any]:
        """The config as JSON-friendly data (keys hidden)."""
        return {
            "rate_limit": str(self.rate_limit) if self.rate_limit else None,
            "latency": self.latency,
            "latency_dist": self.latency_dist,
            "fail_rate": self.fail_rate,
            "fail_statuses": dict(self.fail_statuses),
            "seed": self.seed,
            "key_limit": self.key_limit,
            "total_credits": self.total_credits,
            "cost_per_1k_tokens": self.cost_per_1k_tokens,
            "retry_after": self.retry_after,
            "slow_seconds": self.slow_seconds,
            "fixtures": str(self.fixtures) if self.fixtures else None,
            "key_fixture": self.key_fixture,
            "report_rate_limit": self.report_rate_limit,
        }


def check_fault(config: FakeConfig, fault: str) -> None:
    """Raise ``ValueError`` unless ``fault`` is a built-in fault or a chat fixture."""
    if fault in FAULTS:
        return
    if fault.startswith(FIXTURE_PREFIX):
        stem = fault[len(FIXTURE_PREFIX) :]
        path = fixture_path(config.fixtures, stem)
        if _fixture_endpoint(path) == "/key":
            raise ValueError(f"fixture {stem!r} answers /key: use key_fixture / --key-fixture")
        return
    raise ValueError(f"unknown faults: [{fault!r}]")


def mode_fault(config: FakeConfig, name: str) -> str:
    """The fault a mode serves: ``fixture:<stem>`` for a :data:`MODES` name backed by a
    fixture, its built-in fallback, or ``name`` itself when it is a fault (any fault can run as
    a mode). Raises ``ValueError`` when there is nothing to serve."""
    spec = MODES.get(name)
    if spec is None:
        if name.startswith(FIXTURE_PREFIX) or name in FAULTS:
            check_fault(config, name)
            return name
        known = ", ".join(MODES)
        raise ValueError(f"unknown mode {name!r}: one of {known}, a fault or fixture:NAME")
    stem = _mode_fixture(spec, config.fixtures)
    if stem is not None:
        return FIXTURE_PREFIX + stem
    if spec.fallback is not None:
        return spec.fallback
    raise ValueError(
        f"mode {name!r} needs the fixture {spec.stems[0]}.json, not found in "
        f"{config.fixtures or 'any fixtures directory'} (set {FIXTURES_ENV} or --fixtures)"
    )


def parse_mode_flag(value: str) -> tuple[str, float | None]:
    """``NAME`` or ``NAME:SECONDS`` (``--fault``) as ``(name, seconds)``."""
    name, sep, tail = value.rpartition(":")
    if sep:
        try:
            seconds = float(tail)
        except ValueError:
            return value, None
        if not name:
            raise ValueError(f"bad --fault {value!r}: NAME[:SECONDS]")
        if seconds <= 0:
            raise ValueError(f"bad --fault {value!r}: SECONDS must be positive")
        return name, seconds
    return value, None


@dataclass
class ActiveMode:
    """A fault mode on the schedule.

    Attributes:
        name: the mode's name.
        seconds: how long it lasts (``None`` = until cleared).
        until: ``time.monotonic()`` at which it ends (set when it starts).
        started_at: epoch seconds at which it started (``None`` = not started yet).
    """

    name: str
    seconds: float | None
    until: float | None = None
    started_at: float | None = None

    def public(self) -> dict[str, Any]:
        """The mode as JSON-friendly data."""
        remaining = None
        if self.until is not None:
            remaining = round(max(0.0, self.until - time.monotonic()), 3)
        return {
            "name": self.name,
            "seconds": self.seconds,
            "remaining": remaining,
            "started_at": self.started_at,
        }


@dataclass
class FaultRule:
    """A scripted fault for the requests whose last user message contains ``match``.

    Attributes:
        match: text to look for (``""`` matches every request).
        fault: one of :data:`FAULTS` or ``fixture:<stem>``.
        remaining: how many more requests it applies to (``None`` = every matching request).
    """

    match: str
    fault: str
    remaining: int | None = None

    @classmethod
    def parse(cls, raw: Any, config: FakeConfig | None = None) -> FaultRule:
        """A rule from ``{"match", "fault", "times"}`` (raises ``ValueError`` when malformed;
        with ``config``, ``fixture:<stem>`` faults are checked against its fixtures too)."""
        if not isinstance(raw, Mapping):
            raise ValueError("a fault rule is an object with match, fault and times")
        fault = str(raw.get("fault"))
        if config is None:
            if fault not in FAULTS:
                raise ValueError(f"unknown faults: [{fault!r}]")
        else:
            check_fault(config, fault)
        times = raw.get("times")
        if times is not None and (isinstance(times, bool) or int(times) < 1):
            raise ValueError("times must be a positive integer or null")
        return cls(str(raw.get("match") or ""), fault, None if times is None else int(times))

    def public(self) -> dict[str, Any]:
        """The rule as JSON-friendly data."""
        return {"match": self.match, "fault": self.fault, "remaining": self.remaining}


class FakeState:
    """The server's mutable state: config, random generator, bucket, fault queue and rules,
    statistics and the request log."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.queue: collections.deque[str] = collections.deque()
        self.rules: list[FaultRule] = []
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.logged = 0
        self.outage_until = 0.0
        self.tokens = float(config.rate_limit.requests) if config.rate_limit else 0.0
        self.bucket_ts = time.monotonic()
        self.spend = 0.0
        self.generation = 0
        self.in_flight = 0
        self.modes: collections.deque[ActiveMode] = collections.deque()
        self.stats: dict[str, Any] = {}
        self.reset_stats()
        if config.modes:
            self.set_modes(config.modes)

    def reset_stats(self) -> None:
        """Zero every counter and empty the request log."""
        self.log.clear()
        self.logged = 0
        self.stats = {
            "requests": 0,
            "chat_requests": 0,
            "ok": 0,
            "rate_limited": 0,
            "by_status": collections.Counter[str](),
            "faults": collections.Counter[str](),
            "content_parts": collections.Counter[str](),
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "max_in_flight": 0,
            "answers": collections.Counter[str](),
            "modes": {},
            "started_at": time.time(),
        }

    def mode_stats(self, name: str) -> dict[str, Any]:
        """The counters of mode ``name`` (created on first use)."""
        modes: dict[str, dict[str, Any]] = self.stats["modes"]
        return modes.setdefault(
            name, {"answers": 0, "chat_requests": 0, "started": 0, "ended": 0, "on": False}
        )

    def set_modes(self, modes: list[tuple[str, float | None]]) -> None:
        """Replace the mode schedule: the first starts now, each next one when the one before
        it ends (raises ``ValueError`` for a mode that cannot be served)."""
        for name, seconds in modes:
            mode_fault(self.config, name)
            if seconds is not None and seconds <= 0:
                raise ValueError(f"mode {name!r}: seconds must be positive or null")
        self.clear_modes()
        self.modes.extend(ActiveMode(name, seconds) for name, seconds in modes)
        if self.modes:
            self._start(self.modes[0], time.monotonic())

    def clear_modes(self) -> None:
        """End the current mode and drop the schedule."""
        if self.modes:
            self._end(self.modes[0])
        self.modes.clear()

    def _start(self, mode: ActiveMode, at: float) -> None:
        mode.until = None if mode.seconds is None else at + mode.seconds
        mode.started_at = time.time() - (time.monotonic() - at)
        stats = self.mode_stats(mode.name)
        stats["started"] += 1
        stats["on"] = True
        log.info("fake OpenRouter: mode %s on (%s s)", mode.name, mode.seconds)

    def _end(self, mode: ActiveMode) -> None:
        stats = self.mode_stats(mode.name)
        stats["ended"] += 1
        stats["on"] = False
        log.info("fake OpenRouter: mode %s off", mode.name)

    def current_mode(self) -> ActiveMode | None:
        """The mode on now; modes whose time is up end here and the next one starts at the
        moment the one before it ended."""
        now = time.monotonic()
        while self.modes:
            head = self.modes[0]
            if head.until is None or now < head.until:
                return head
            self.modes.popleft()
            self._end(head)
            if self.modes:
                self._start(self.modes[0], head.until)
        return None

    def snapshot(self) -> dict[str, Any]:
        """Statistics as JSON-friendly data."""
        out = dict(self.stats)
        out["by_status"] = dict(self.stats["by_status"])
        out["faults"] = dict(self.stats["faults"])
        out["content_parts"] = dict(self.stats["content_parts"])
        out["answers"] = dict(self.stats["answers"])
        mode = self.current_mode()
        out["modes"] = {
            name: {**value, "on": mode is not None and mode.name == name}
            for name, value in self.stats["modes"].items()
        }
        out["mode"] = mode.public() if mode else None
        out["in_flight"] = self.in_flight
        out["queued_faults"] = len(self.queue)
        out["elapsed"] = round(time.time() - self.stats["started_at"], 3)
        return out

    def set_rate(self, rate: Rate | None) -> None:
        """Replace the server-side bucket (starts full)."""
        self.config.rate_limit = rate
        self.tokens = float(rate.requests) if rate else 0.0
        self.bucket_ts = time.monotonic()

    def take_token(self) -> tuple[bool, float, int]:
        """Take a bucket token: (allowed, seconds until one is available, tokens left)."""
        rate = self.config.rate_limit
        if rate is None:
            return True, 0.0, 0
        now = time.monotonic()
        self.tokens = min(
            float(rate.requests), self.tokens + (now - self.bucket_ts) * rate.per_second
        )
        self.bucket_ts = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0.0, int(self.tokens)
        return False, (1.0 - self.tokens) / rate.per_second, 0

    def latency(self) -> float:
        """One latency sample."""
        mean = max(0.0, self.config.latency)
        if mean == 0:
            return 0.0
        if self.config.latency_dist == "uniform":
            return self.rng.uniform(0.5 * mean, 1.5 * mean)
        if self.config.latency_dist == "exponential":
            return self.rng.expovariate(1.0 / mean)
        return mean

    def next_request_number(self) -> int:
        """The 1-based number of the next request-log entry (counts since the last reset)."""
        self.logged += 1
        return self.logged

    def rule_fault(self, text: str) -> str | None:
        """The fault of the first live rule whose ``match`` is in ``text`` (uses one of its
        ``times``; an exhausted rule is dropped)."""
        for rule in self.rules:
            if rule.match in text:
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                return rule.fault
        return None

    def random_fault(self) -> str | None:
        """A random failure, drawn with ``fail_rate`` over ``fail_statuses``."""
        if self.config.fail_rate <= 0 or self.rng.random() >= self.config.fail_rate:
            return None
        names = [n for n, w in self.config.fail_statuses.items() if w > 0]
        if not names:
            return None
        weights = [self.config.fail_statuses[n] for n in names]
        return self.rng.choices(names, weights)[0]


# ----------------------------------------------------------------------------- answers


def _error(
    status: int,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": status, "message": message}}
    if metadata:
        body["error"]["metadata"] = dict(metadata)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _rate_headers(state: FakeState, wait: float) -> dict[str, str]:
    rate = state.config.rate_limit
    reset_ms = int((time.time() + max(wait, 0.0)) * 1000)
    return {
        "Retry-After": str(max(1, math.ceil(wait))),
        "X-RateLimit-Limit": str(rate.requests if rate else 0),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset_ms),
    }


def _fault_response(state: FakeState, fault: str) -> Response | None:
    """The error response of a fault, or ``None`` for faults that shape a 200 answer."""
    retry = state.config.retry_after
    meta: dict[str, Any]
    if fault == "400":
        return _error(400, "Invalid request", {"error_type": "invalid_request"})
    if fault == "401":
        return _error(401, "User not found.", {"error_type": "authentication"})
    if fault == "402_credits":
        meta = {"reason": "insufficient_credits", "limit_source": "openrouter_credits"}
        return _error(402, "Insufficient credits", {**meta, "error_type": "payment_required"})
    if fault == "402_key_limit":
        meta = {"reason": "key_limit_exceeded", "limit_source": "openrouter_key_limit"}
        return _error(402, "Key limit exceeded", {**meta, "error_type": "payment_required"})
    if fault == "402_in_flight":
        meta = {
            "reason": "in_flight_budget_exhausted",
            "limit_source": "openrouter_in_flight_budget",
            "remedy_hint": "retry after in-flight requests finish",
            "error_type": "payment_required",
        }
        return _error(402, "In-flight budget exhausted", meta, {"Retry-After": f"{retry:g}"})
    if fault == "403_moderation":
        meta = {
            "reasons": ["violence"],
            "flagged_input": "a flagged part of the input",
            "provider_name": "Fake",
            "model_slug": "fake/model",
        }
        return _error(403, "Input was flagged by moderation", meta)
    if fault == "408":
        return _error(408, "Request timed out", {"error_type": "timeout"})
    if fault == "429":
        headers = _rate_headers(state, retry)
        meta = {"error_type": "rate_limit_exceeded"}
        return _error(429, "Rate limit exceeded", meta, headers)
    if fault == "429_metadata_headers":
        reset_ms = int((time.time() + retry) * 1000)
        meta = {
            "error_type": "rate_limit_exceeded",
            "headers": {"X-RateLimit-Limit": "10", "X-RateLimit-Reset": str(reset_ms)},
        }
        return _error(429, "Rate limit exceeded", meta)
    if fault == "500":
        return _error(500, "Internal Server Error", {"error_type": "server"})
    if fault == "502":
        return _error(502, "Provider returned error", {"error_type": "provider_unavailable"})
    if fault == "503":
        return _error(503, "No provider available", {"error_type": "provider_overloaded"})
    if fault == "503_retry_after":
        meta = {"error_type": "provider_overloaded"}
        return _error(503, "No provider available", meta, {"Retry-After": f"{retry:g}"})
    if fault == "504":
        return _error(504, "Gateway timeout", {"error_type": "timeout"})
    return None


def _text_of(messages: list[Any]) -> tuple[str, list[str]]:
    """The text of the last user message and notes about its file parts (page counts)."""
    text = ""
    notes: list[str] = []
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") != "user":
            continue
        content = message.get("content")
        parts: list[Any] = (
            content if isinstance(content, list) else [{"type": "text", "text": content}]
        )
        texts: list[str] = []
        notes = []
        for part in parts:
            if not isinstance(part, Mapping):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "file" and isinstance(part.get("file"), Mapping):
                info = part["file"]
                notes.append(f"[file {info.get('filename', 'file')}: {_pages(info)} pages]")
            elif part.get("type") == "image_url":
                notes.append("[image]")
        text = "\n".join(texts)
    return text, notes


def _pages(info: Mapping[str, Any]) -> int:
    data = str(info.get("file_data") or "")
    if "," not in data:
        return 0
    try:
        raw = base64.b64decode(data.split(",", 1)[1], validate=False)
    except (binascii.Error, ValueError):
        return 0
    return len(_PAGE.findall(raw))


def _plain_answer(text: str, notes: list[str]) -> str:
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    summary = " ".join(sentences[:2]) if sentences else "OK."
    words = summary.split()
    if len(words) > 60:
        summary = " ".join(words[:60]) + "."
    return " ".join([*notes, summary]).strip()


class _SchemaFaker:
    """Builds a deterministic instance of a JSON schema, filling strings from the input words."""

    def __init__(self, root: Mapping[str, Any], words: list[str]) -> None:
        self.root = root
        self.words = words or ["text"]
        self.cursor = 0

    def _phrase(self, count: int) -> str:
        out = [self.words[(self.cursor + i) % len(self.words)] for i in range(count)]
        self.cursor = (self.cursor + count) % len(self.words)
        return " ".join(out)

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """``schema`` with its local ``$ref`` chain followed."""
        ref = schema.get("$ref")
        seen = 0
        while isinstance(ref, str) and ref.startswith("#/") and seen < 32:
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            schema = target if isinstance(target, Mapping) else {}
            ref = schema.get("$ref")
            seen += 1
        return schema

    def make(self, schema: Any, name: str = "value", depth: int = 0) -> Any:
        """An instance of ``schema`` (``name`` is the property it fills)."""
        if not isinstance(schema, Mapping) or depth > 12:
            return None
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = next(
                    (o for o in options if self.resolve(o).get("type") != "null"), options[0]
                )
                return self.make(chosen, name, depth + 1)
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            return self.make(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        return self._make_typed(str(kind), schema, name, depth)

    def _make_typed(self, kind: str, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        if kind == "object":
            props = schema.get("properties") or {}
            return {key: self.make(sub, key, depth + 1) for key, sub in props.items()}
        if kind == "array":
            count = max(1, int(schema.get("minItems", 1)))
            count = min(count, int(schema.get("maxItems", count)))
            return [self.make(schema.get("items", {}), name, depth + 1) for _ in range(count)]
        if kind == "integer":
            low = int(schema.get("minimum", 1))
            return min(low, int(schema.get("maximum", low)))
        if kind == "number":
            least = float(schema.get("minimum", 1.0))
            return min(least, float(schema.get("maximum", least)))
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema, name)

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            return "2024-01-01"
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        value = self._phrase(12 if name in ("body", "summary", "text", "content") else 4)
        min_length = int(schema.get("minLength", 0))
        while len(value) < min_length:
            value += " " + self._phrase(4)
        if "maxLength" in schema:
            value = value[: int(schema["maxLength"])]
        return value


def _schema_answer(response_format: Mapping[str, Any], text: str, notes: list[str]) -> str:
    spec = response_format.get("json_schema")
    schema = spec.get("schema", {}) if isinstance(spec, Mapping) else {}
    words = _WORDS.findall(" ".join([*notes, text]))
    faker = _SchemaFaker(schema, words)
    items = _article_items(faker, schema)
    if items is not None:
        return json.dumps(_news_answer(faker, schema, items, text, notes), ensure_ascii=False)
    return json.dumps(faker.make(schema), ensure_ascii=False)


# ----------------------------------------------------------------------------- page articles
# Answers for the pdfxtract page schema (``articles[]`` of title, subtitle, author, body, ...)
# that read like a newspaper page: from the request's text layer when it has one, otherwise
# built from the small word lists below, seeded by the page, so a page always gets the same
# stories.

_FIRST_NAMES = (
    "Ada", "Bruno", "Carmen", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kaija", "Luca", "Maren", "Nadia", "Oskar", "Priya", "Rafael", "Sofia", "Tomas", "Yara",
)  # fmt: skip
_LAST_NAMES = (
    "Albers", "Brandt", "Castillo", "Dahl", "Eriksen", "Fontaine", "Gallo", "Haas", "Ivanova",
    "Jansen", "Kowalski", "Lindgren", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rinaldi",
)  # fmt: skip
_HEAD_SUBJECTS = (
    "Council", "Harbour Board", "School Board", "Farmers", "Hospital", "Rail Operator",
    "Library", "Fishermen", "University", "Shopkeepers", "Water Authority", "Museum",
)  # fmt: skip
_VERBS = (
    ("Approves", "approved"), ("Delays", "postponed"), ("Debates", "debated"),
    ("Unveils", "unveiled"), ("Rejects", "rejected"), ("Backs", "backed"),
    ("Questions", "questioned"),
)  # fmt: skip
_HEAD_OBJECTS = (
    "Bridge Repairs", "New Budget", "Night Market", "River Survey", "Longer Hours",
    "Bus Timetable", "Solar Roofs", "Harvest Fair", "Flood Defences", "Cycle Lanes",
)  # fmt: skip
_SUBJECTS = (
    "The town council", "The harbour board", "The school board", "Local farmers",
    "The regional hospital", "The rail operator", "The public library", "Inshore fishermen",
    "The university", "Shopkeepers on the high street", "The water authority", "The museum",
)  # fmt: skip
_PROJECTS = (
    "repairs to the old stone bridge", "a budget for the coming year", "a weekly night market",
    "a survey of the river's water", "longer opening hours", "a new bus timetable",
    "solar panels on public roofs", "an autumn harvest fair", "stronger flood defences",
    "a network of cycle lanes",
)  # fmt: skip
_WHEN = (
    "on Monday", "late on Tuesday", "this week", "after a long evening meeting",
    "before the holiday weekend", "on Thursday afternoon",
)  # fmt: skip
_SPEAKERS = (
    "a spokeswoman", "a spokesman", "the chair of the committee", "a local resident",
    "one of the organisers", "an engineer who worked on the plans",
)  # fmt: skip
_SENTENCES = (
    "{subject} {verb} {project} {when}, ending months of discussion.",
    "The decision was welcomed by {speaker}, who said it had been a long time coming.",
    "Not everyone agreed: {speaker} warned that the costs could rise before the work is done.",
    "According to {speaker}, the first results should be visible by the end of the season.",
    "About {number} people attended the meeting, more than at any other this year.",
    "The plan will be reviewed again in {month}, when the first figures are available.",
    "Neighbours said they hoped the change would bring more visitors to the area.",
    "Funding comes partly from the regional government and partly from local donations.",
    "A public exhibition of the plans opens next week in the town hall.",
    "Critics asked why other options had not been studied in more detail.",
)  # fmt: skip
_MONTHS = ("March", "May", "June", "September", "October", "November")
_TOPICS = ("local government", "transport", "education", "environment", "economy", "culture")
_DECKS = (
    "Supporters say the change is overdue; critics worry about the cost.",
    "The vote followed months of debate and a packed public meeting.",
    "Residents will be asked for their views before work begins.",
    "",
)  # fmt: skip
_STOP = frozenset(
    ("the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "at", "by", "from",
     "as", "is", "are", "was", "were", "be", "its", "it", "this", "that", "after", "before",
     "over", "under", "into", "out", "new", "more", "most", "than", "then")
)  # fmt: skip
_TEXT_LAYER = re.compile(r"Text layer of this page[^\n]*\n", re.IGNORECASE)
_PAGE_OF = re.compile(r"\bPage (\d+) of (\d+)\b")
_BYLINE = re.compile(r"^By\s+([A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*){0,3})\s*$")
_CONTINUED_ON = re.compile(r"\bcontinued on page (\d+)\b\.?", re.IGNORECASE)
_CONTINUED_FROM = re.compile(r"\bcontinued from page (\d+)\b\.?", re.IGNORECASE)
_NEWS_FIELDS = ("title", "body")


def _article_items(faker: _SchemaFaker, schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The item schema of an ``articles`` array with ``title`` and ``body`` in ``schema``."""
    root = faker.resolve(schema)
    props = root.get("properties")
    if not isinstance(props, Mapping) or "articles" not in props:
        return None
    array = faker.resolve(props["articles"])
    items = faker.resolve(array.get("items") or {})
    item_props = items.get("properties")
    if isinstance(item_props, Mapping) and all(name in item_props for name in _NEWS_FIELDS):
        return items
    return None


def _page_rng(page: int, text: str) -> random.Random:
    digest = hashlib.sha256(f"{page}\n{text}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _made_up_body(rng: random.Random, subject: str, verb: str, project: str, sentences: int) -> str:
    fills = {
        "subject": subject,
        "verb": verb,
        "project": project,
        "when": rng.choice(_WHEN),
        "number": rng.randrange(40, 400, 10),
        "month": rng.choice(_MONTHS),
    }
    chosen = [_SENTENCES[0], *rng.sample(_SENTENCES[1:], min(sentences - 1, len(_SENTENCES) - 1))]
    paragraphs: list[str] = []
    for start in range(0, len(chosen), 3):
        group = chosen[start : start + 3]
        paragraphs.append(
            " ".join(line.format(speaker=rng.choice(_SPEAKERS), **fills) for line in group)
        )
    return "\n\n".join(paragraphs)


def _made_up_article(rng: random.Random) -> dict[str, Any]:
    index = rng.randrange(len(_SUBJECTS))
    project = rng.randrange(len(_PROJECTS))
    head_verb, verb = rng.choice(_VERBS)
    title = f"{_HEAD_SUBJECTS[index]} {head_verb} {_HEAD_OBJECTS[project]}"
    body = _made_up_body(rng, _SUBJECTS[index], verb, _PROJECTS[project], rng.randint(4, 7))
    return {
        "title": title,
        "subtitle": rng.choice(_DECKS),
        "author": f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        "body": body,
        "topics": rng.sample(_TOPICS, 2),
    }


def _is_headline(line: str) -> bool:
    """A short line that reads like a headline (not a masthead, byline, note or sentence)."""
    words = line.split()
    if not 2 <= len(words) <= 14 or len(line) > 100:
        return False
    if line[-1] in ".,;:!?" or not line[0].isalpha() or not line[0].isupper():
        return False
    if line.isupper() or _BYLINE.match(line) or line.lower().startswith("continued"):
        return False
    return sum(any(ch.isdigit() for ch in word) for word in words) * 3 < len(words)


def _text_layer_articles(layer: str, rng: random.Random) -> list[dict[str, Any]]:
    """Articles read off a page's text layer: each headline-like line starts one, a ``By``
    line is its author, a one-sentence line between headline and byline its subtitle, and the
    lines that follow (paragraphs kept) its body, up to the next headline."""
    articles: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    paragraph: list[str] = []

    def flush() -> None:
        if current is not None and paragraph:
            current["paragraphs"].append(" ".join(paragraph))
        paragraph.clear()

    for raw in layer.splitlines():
        line = " ".join(raw.split())
        if not line:
            flush()
            continue
        if _is_headline(line):
            flush()
            current = {"title": line, "author": "", "subtitle": "", "paragraphs": []}
            articles.append(current)
            continue
        if current is None:
            continue  # the masthead and dateline above the first headline
        byline = _BYLINE.match(line)
        if byline and not current["author"]:
            flush()
            if len(current["paragraphs"]) == 1 and not current["subtitle"]:
                current["subtitle"] = current["paragraphs"].pop()
            current["author"] = byline.group(1)
            continue
        paragraph.append(line)
    flush()
    if not articles:
        lines = [" ".join(raw.split()) for raw in layer.splitlines() if raw.strip()]
        if not lines:
            return []
        title = " ".join(lines[0].split()[:10]).rstrip(".,;:")
        articles = [{"title": title, "author": "", "subtitle": "", "paragraphs": lines[1:]}]
    out: list[dict[str, Any]] = []
    for article in articles:
        if len(out) == 3:
            break
        body = "\n\n".join(article.pop("paragraphs"))
        on_page = _CONTINUED_ON.search(body)
        from_page = _CONTINUED_FROM.search(body)
        body = _CONTINUED_FROM.sub("", _CONTINUED_ON.sub("", body))
        body = "\n\n".join(p.strip() for p in body.split("\n\n") if p.strip())
        if not body:
            if out:
                continue  # a lone headline (a caption, a running head) is not an article
            body = _made_up_body(rng, "The town council", "debated", rng.choice(_PROJECTS), 4)
        article["body"] = body
        article["continued_on_page"] = int(on_page.group(1)) if on_page else None
        article["continued_from_page"] = int(from_page.group(1)) if from_page else None
        out.append(article)
    return out


def _topics(title: str, rng: random.Random) -> list[str]:
    words: list[str] = []
    for word in _WORDS.findall(title.lower()):
        if len(word) > 3 and word not in _STOP and word not in words and not word.isdigit():
            words.append(word)
    words.sort(key=len, reverse=True)
    return words[:3] or rng.sample(_TOPICS, 2)


def page_articles(text: str) -> list[dict[str, Any]]:
    """One to three news articles for the page described by a pdfxtract request's text
    (``Page N of M`` and, when given, the text layer), the same for the same text."""
    found = _PAGE_OF.search(text)
    page = int(found.group(1)) if found else 1
    split = _TEXT_LAYER.search(text)
    layer = text[split.end() :] if split else ""
    rng = _page_rng(page, layer or text)
    articles = _text_layer_articles(layer, rng) if layer.strip() else []
    if not articles:
        articles = [_made_up_article(rng) for _ in range(rng.randint(1, 3))]
    for article in articles:
        article.setdefault("continued_from_page", None)
        article.setdefault("continued_on_page", None)
        if not article.get("topics"):
            article["topics"] = _topics(article["title"], rng)
        sentences = [s for s in _SENTENCE.split(article["body"].replace("\n\n", " ")) if s]
        article["summary"] = " ".join(sentences[:2])[:400]
    return articles


def _news_answer(
    faker: _SchemaFaker,
    schema: Mapping[str, Any],
    items: Mapping[str, Any],
    text: str,
    notes: list[str],
) -> dict[str, Any]:
    """An instance of the page schema with :func:`page_articles` as its ``articles``; fields
    the articles do not have are filled by ``faker``. The notes on the request's file parts
    (``[file page-4.pdf: 1 pages]``) become the first article's subtitle, so the answer shows
    what reached the fake."""
    root = faker.resolve(schema)
    item_props: Mapping[str, Any] = items.get("properties") or {}
    found = page_articles(text)
    files = [note for note in notes if note.startswith("[file ")]
    if files and found:
        found[0]["subtitle"] = " ".join(files)
    articles = [
        {
            name: article[name] if name in article else faker.make(sub, name)
            for name, sub in item_props.items()
        }
        for article in found
    ]
    return {
        name: articles if name == "articles" else faker.make(sub, name)
        for name, sub in (root.get("properties") or {}).items()
    }


def _usage(state: FakeState, prompt_chars: int, content: str) -> dict[str, Any]:
    prompt = max(1, math.ceil(prompt_chars / 4))
    completion = max(1, math.ceil(len(content) / 4))
    cost = round((prompt + completion) / 1000.0 * state.config.cost_per_1k_tokens, 10)
    state.spend += cost
    state.stats["prompt_tokens"] += prompt
    state.stats["completion_tokens"] += completion
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": cost,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


# ----------------------------------------------------------------------------- the app


def _authorised(request: Request, config: FakeConfig) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    key = header[7:].strip()
    if not key or (config.keys and key not in config.keys | config.management_keys):
        return None
    return key


def _count(state: FakeState, response: Response) -> Response:
    state.stats["by_status"][str(response.status_code)] += 1
    if response.status_code == 429:
        state.stats["rate_limited"] += 1
    return response


def _unauthorised() -> JSONResponse:
    return _error(401, "No auth credentials found")


async def _chat(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.stats["requests"] += 1
    state.stats["chat_requests"] += 1
    mode = state.current_mode()
    if mode is not None:
        state.mode_stats(mode.name)["chat_requests"] += 1
    if _authorised(request, state.config) is None:
        return _count(state, _unauthorised())
    try:
        body = await request.json()
    except ValueError:
        return _count(state, _error(400, "Invalid JSON", {"error_type": "invalid_request"}))
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _count(state, _error(400, "messages is required", {"error_type": "invalid_request"}))
    state.in_flight += 1
    state.stats["max_in_flight"] = max(state.stats["max_in_flight"], state.in_flight)
    entry = _describe(state, body)
    try:
        response = _count(state, await _answer(state, body, entry))
        entry["status"] = response.status_code
        fault = entry["fault"]
        if fault is not None:
            state.stats["answers"][fault] += 1
            if fault.startswith(MODE_PREFIX):
                state.mode_stats(fault[len(MODE_PREFIX) :])["answers"] += 1
        return response
    finally:
        state.in_flight -= 1
        state.log.append(entry)


def _describe(state: FakeState, body: Mapping[str, Any]) -> dict[str, Any]:
    """The request-log entry of a chat request (no file or image data), counting its parts."""
    parts: list[str] = []
    file_pages: list[int] = []
    for message in body["messages"]:
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, Mapping):
                continue
            kind = str(part.get("type"))
            parts.append(kind)
            state.stats["content_parts"][kind] += 1
            if kind == "file" and isinstance(part.get("file"), Mapping):
                file_pages.append(_pages(part["file"]))
    text, _ = _text_of(body["messages"])
    response_format = body.get("response_format")
    spec = response_format.get("json_schema") if isinstance(response_format, Mapping) else None
    return {
        "n": state.next_request_number(),
        "at": time.time(),
        "model": body.get("model"),
        "stream": bool(body.get("stream")),
        "text": text[:300],
        "parts": parts,
        "file_pages": file_pages,
        "plugins": body.get("plugins"),
        "response_format": (
            response_format.get("type") if isinstance(response_format, Mapping) else None
        ),
        "json_schema": dict(spec) if isinstance(spec, Mapping) else None,
        "fault": None,
        "status": None,
        "content": None,
    }


def _choose_fault(state: FakeState, text: str) -> tuple[str | None, Response | None]:
    """The fault to apply to a chat request, and its answer when it is made right here
    (outage, bucket); named faults are answered by :func:`_named_fault`."""
    ruled = state.rule_fault(text)
    if ruled is not None:
        state.stats["faults"][ruled] += 1
        return ruled, None
    if state.queue:
        fault = state.queue.popleft()
        state.stats["faults"][fault] += 1
        return fault, None
    mode = state.current_mode()
    if mode is not None:
        return MODE_PREFIX + mode.name, None
    now = time.monotonic()
    if now < state.outage_until:
        wait = state.outage_until - now
        meta = {"error_type": "provider_overloaded"}
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        return "outage", _error(503, "Provider outage", meta, headers)
    allowed, wait, _ = state.take_token()
    if not allowed:
        meta = {"error_type": "rate_limit_exceeded"}
        return "429", _error(429, "Rate limit exceeded", meta, _rate_headers(state, wait))
    limit = state.config.key_limit
    if limit is not None and state.spend >= limit:
        # OpenRouter answers a spent key limit with 403 (see the key-limit fixture); the old
        # built-in 402 stays for a fake without its fixtures directory.
        if _mode_fixture(MODES["key-limit"], state.config.fixtures) is not None:
            return KEY_LIMIT_FAULT, None
        return "402_key_limit", None
    drawn = state.random_fault()
    if drawn is not None:
        state.stats["faults"][drawn] += 1
        return drawn, None
    return None, None


def _named_fault(state: FakeState, fault: str, delay: float) -> tuple[Response | None, float]:
    """The answer of a named fault (built-in, ``fixture:<stem>``, ``mode:<name>`` or the key
    limit), ``None`` for faults that shape a normal 200 answer; and the delay still to wait
    before answering (0 when the answer paces itself, e.g. after a keep-alive prefix)."""
    if fault.startswith(MODE_PREFIX):
        name = fault[len(MODE_PREFIX) :]
        return _named_fault(state, mode_fault(state.config, name), delay)
    if fault == KEY_LIMIT_FAULT:
        stem = _mode_fixture(MODES["key-limit"], state.config.fixtures)
        fault = FIXTURE_PREFIX + stem if stem else "402_key_limit"
    if fault.startswith(FIXTURE_PREFIX):
        path = fixture_path(state.config.fixtures, fault[len(FIXTURE_PREFIX) :])
        fixture = load_fixture(path)
        if _fixture_paces_itself(fixture):
            return fixture_response(fixture, delay), 0.0
        return fixture_response(fixture), delay
    return _fault_response(state, fault), delay


async def _answer(state: FakeState, body: dict[str, Any], entry: dict[str, Any]) -> Response:
    messages = body["messages"]
    text, notes = _text_of(messages)
    fault, early = _choose_fault(state, text)
    entry["fault"] = fault
    delay = state.latency() + (state.config.slow_seconds if fault == "slow" else 0.0)
    if early is None and fault is not None:
        try:
            early, delay = _named_fault(state, fault, delay)
        except (OSError, ValueError) as exc:
            early = _error(500, f"the fake OpenRouter cannot serve {fault}: {exc}")
    streaming = bool(body.get("stream"))
    if delay > 0:
        await asyncio.sleep(delay)
    if early is not None:
        return early
    response_format = body.get("response_format")
    if fault == "bad_json":
        content = '{"this is": not valid JSON'
    elif fault == "empty":
        content = ""
    elif isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        content = _schema_answer(response_format, text, notes)
    elif isinstance(response_format, Mapping) and response_format.get("type") == "json_object":
        content = json.dumps({"summary": _plain_answer(text, notes)}, ensure_ascii=False)
    else:
        content = _plain_answer(text, notes)
    entry["content"] = content
    state.generation += 1
    gen_id = f"gen-{state.generation}"
    usage = _usage(state, len(json.dumps(messages)), content)
    model = str(body.get("model") or "fake/model")
    headers = {"X-Generation-Id": gen_id}
    if streaming:
        if fault != "stream_error":
            state.stats["ok"] += 1
        stream = _stream(gen_id, model, content, usage, fail=fault == "stream_error")
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": "stop",
        "native_finish_reason": "stop",
        "message": {"role": "assistant", "content": content},
    }
    if fault in ("200_error", "stream_error"):
        choice["finish_reason"] = choice["native_finish_reason"] = "error"
        choice["message"]["content"] = entry["content"] = ""
        choice["error"] = {"code": 502, "message": "Upstream error after generation started"}
    elif fault == "content_filter":
        choice["finish_reason"] = choice["native_finish_reason"] = "content_filter"
    state.stats["ok"] += 1
    answer = {
        "id": gen_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "provider": "Fake",
        "choices": [choice],
        "usage": usage,
    }
    return JSONResponse(answer, headers=headers)


async def _stream(
    gen_id: str, model: str, content: str, usage: dict[str, Any], *, fail: bool
) -> AsyncIterator[str]:
    def chunk(choice: dict[str, Any], **extra: Any) -> str:
        data = {
            "id": gen_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "provider": "Fake",
            "choices": [choice],
            **extra,
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield ": OPENROUTER PROCESSING\n\n"
    third = max(1, len(content) // 3)
    pieces = [content[i : i + third] for i in range(0, len(content), third)] or [""]
    if fail:
        yield chunk({"index": 0, "delta": {"content": pieces[0]}, "finish_reason": None})
        error = {
            "code": 502,
            "message": "Provider disconnected",
            "metadata": {"error_type": "provider_unavailable"},
        }
        yield chunk({"index": 0, "delta": {"content": ""}, "finish_reason": "error"}, error=error)
        return
    for piece in pieces:
        yield chunk({"index": 0, "delta": {"role": "assistant", "content": piece}})
        await asyncio.sleep(0)
    yield chunk({"index": 0, "delta": {}, "finish_reason": "stop"})
    yield chunk({"index": 0, "delta": {}, "finish_reason": "stop"}, usage=usage)
    yield "data: [DONE]\n\n"


async def _key(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.stats["requests"] += 1
    if _authorised(request, state.config) is None:
        return _count(state, _unauthorised())
    config = state.config
    if config.key_fixture:
        try:
            fixture = load_fixture(fixture_path(config.fixtures, config.key_fixture))
        except (OSError, ValueError) as exc:
            return _count(state, _error(500, f"the fake OpenRouter cannot serve /key: {exc}"))
        return _count(state, fixture_response(fixture))
    data: dict[str, Any] = {
        "label": "fake-key",
        "limit": config.key_limit,
        "limit_reset": None,
        "limit_remaining": (
            round(config.key_limit - state.spend, 10) if config.key_limit is not None else None
        ),
        "include_byok_in_limit": False,
        "usage": state.spend,
        "usage_daily": state.spend,
        "usage_weekly": state.spend,
        "usage_monthly": state.spend,
        "byok_usage": 0,
        "is_free_tier": False,
        # Deprecated in OpenRouter's docs; the live API answers -1 whatever the key's limits.
        "rate_limit": {"requests": -1, "interval": "10s"},
    }
    if config.report_rate_limit and config.rate_limit is not None:
        rate = config.rate_limit
        data["rate_limit"] = {"requests": rate.requests, "interval": f"{rate.interval_s:g}s"}
    return _count(state, JSONResponse({"data": data}))


async def _credits(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.stats["requests"] += 1
    key = _authorised(request, state.config)
    if key is None:
        return _count(state, _unauthorised())
    if key not in state.config.management_keys:
        meta = {"error_type": "permission_denied"}
        return _count(state, _error(403, "Only management keys can read credits", meta))
    data = {"total_credits": state.config.total_credits, "total_usage": state.spend}
    return _count(state, JSONResponse({"data": data}))


def apply_control(state: FakeState, changes: Mapping[str, Any]) -> None:
    """Apply a ``/_control`` body to the state (raises ``ValueError`` on a bad value)."""
    config = state.config
    for name in ("latency", "fail_rate", "retry_after", "slow_seconds", "total_credits"):
        if name in changes:
            setattr(config, name, float(changes[name]))
    if "cost_per_1k_tokens" in changes:
        config.cost_per_1k_tokens = float(changes["cost_per_1k_tokens"])
    if "latency_dist" in changes:
        if changes["latency_dist"] not in ("fixed", "uniform", "exponential"):
            raise ValueError("latency_dist must be fixed, uniform or exponential")
        config.latency_dist = str(changes["latency_dist"])
    if "fixtures" in changes:
        value = changes["fixtures"]
        config.fixtures = Path(str(value)) if value else None
    if "fail_statuses" in changes:
        statuses = {str(k): float(v) for k, v in dict(changes["fail_statuses"]).items()}
        _check_faults(config, list(statuses))
        config.fail_statuses = statuses
    if "key_limit" in changes:
        limit = changes["key_limit"]
        config.key_limit = None if limit is None else float(limit)
    if "seed" in changes:
        config.seed = int(changes["seed"])
        state.rng = random.Random(config.seed)
    if "rate_limit" in changes:
        value = changes["rate_limit"]
        state.set_rate(Rate.parse(str(value)) if value else None)
    if "outage_seconds" in changes:
        state.outage_until = time.monotonic() + float(changes["outage_seconds"])
    if changes.get("clear_queue"):
        state.queue.clear()
    if "enqueue" in changes:
        faults = [str(f) for f in changes["enqueue"]]
        _check_faults(config, faults)
        state.queue.extend(faults)
    if changes.get("clear_rules"):
        state.rules.clear()
    if "fault_rules" in changes:
        rules = changes["fault_rules"]
        if not isinstance(rules, list):
            raise ValueError("fault_rules must be a list")
        state.rules.extend([FaultRule.parse(rule, config) for rule in rules])
    if "key_fixture" in changes:
        config.key_fixture = _key_fixture(config, changes["key_fixture"])
    if "report_rate_limit" in changes:
        config.report_rate_limit = bool(changes["report_rate_limit"])
    if changes.get("reset_stats"):
        state.reset_stats()
    if changes.get("clear_mode"):
        state.clear_modes()
    if changes.get("mode") is not None:
        state.set_modes(_parse_modes(changes["mode"]))


def _check_faults(config: FakeConfig, faults: list[str]) -> None:
    unknown: list[str] = []
    for fault in faults:
        try:
            check_fault(config, fault)
        except ValueError as exc:
            if not fault.startswith(FIXTURE_PREFIX):
                unknown.append(fault)
                continue
            raise ValueError(str(exc)) from None
    if unknown:
        raise ValueError(f"unknown faults: {sorted(unknown)}")


def _key_fixture(config: FakeConfig, value: Any) -> str | None:
    """A checked ``key_fixture`` value (a fixture answering ``/key``) or ``None``."""
    if not value:
        return None
    stem = str(value)
    if stem.startswith(FIXTURE_PREFIX):
        stem = stem[len(FIXTURE_PREFIX) :]
    if _fixture_endpoint(fixture_path(config.fixtures, stem)) != "/key":
        raise ValueError(f'fixture {stem!r} does not answer /key (no "endpoint": "/key")')
    return stem


def _parse_modes(raw: Any) -> list[tuple[str, float | None]]:
    """The ``mode`` control field: ``{"name", "seconds"}``, a name, or a list of them."""
    items = raw if isinstance(raw, list) else [raw]
    modes: list[tuple[str, float | None]] = []
    for item in items:
        if isinstance(item, str):
            modes.append(parse_mode_flag(item))
            continue
        if not isinstance(item, Mapping) or not item.get("name"):
            raise ValueError('mode is {"name": NAME, "seconds": S | null} (or a list of them)')
        seconds = item.get("seconds")
        if isinstance(seconds, bool):
            raise ValueError("mode seconds must be a number or null")
        modes.append((str(item["name"]), None if seconds is None else float(seconds)))
    return modes


def _control_view(state: FakeState) -> dict[str, Any]:
    outage = max(0.0, state.outage_until - time.monotonic())
    mode = state.current_mode()
    return {
        **state.config.public(),
        "outage_remaining": round(outage, 3),
        "queued_faults": list(state.queue),
        "fault_rules": [rule.public() for rule in state.rules],
        "faults": list(FAULTS),
        "fixture_faults": [FIXTURE_PREFIX + name for name in fixture_names(state.config.fixtures)],
        "mode": mode.public() if mode else None,
        "mode_schedule": [m.public() for m in state.modes],
        "modes": {name: _mode_view(state.config, spec) for name, spec in MODES.items()},
    }


def _mode_view(config: FakeConfig, spec: ModeSpec) -> dict[str, Any]:
    try:
        serves: str | None = mode_fault(config, spec.name)
    except ValueError:
        serves = None
    return {"description": spec.description, "serves": serves}


async def _control(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    if request.method == "POST":
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            apply_control(state, changes)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
    return JSONResponse(_control_view(state))


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.fake.snapshot())


async def _requests(request: Request) -> Response:
    return JSONResponse(list(request.app.state.fake.log))


async def _reset(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.reset_stats()
    state.queue.clear()
    state.rules.clear()
    state.clear_modes()
    state.outage_until = 0.0
    state.set_rate(state.config.rate_limit)
    return JSONResponse(state.snapshot())


def build_app(config: FakeConfig | None = None) -> Starlette:
    """The fake OpenRouter as an ASGI app; ``app.state.fake`` is its :class:`FakeState`."""
    app = Starlette(
        routes=[
            Route("/api/v1/chat/completions", _chat, methods=["POST"]),
            Route("/api/v1/key", _key, methods=["GET"]),
            Route("/api/v1/auth/key", _key, methods=["GET"]),
            Route("/api/v1/credits", _credits, methods=["GET"]),
            Route("/_control", _control, methods=["GET", "POST"]),
            Route("/_stats", _stats, methods=["GET"]),
            Route("/_requests", _requests, methods=["GET"]),
            Route("/_reset", _reset, methods=["POST"]),
        ]
    )
    app.state.fake = FakeState(config or FakeConfig())
    return app


def run_fake_openrouter(
    config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Serve the fake until interrupted (blocking)."""
    log.info("fake OpenRouter on http://%s:%d/api/v1", host, port)
    uvicorn.run(build_app(config), host=host, port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeOpenRouterThread:
    """Serve the fake in a background thread on a free loopback port (a context manager).

    Attributes:
        port: the port it listens on.
        base_url: ``http://127.0.0.1:<port>/api/v1`` (for ``OPENROUTER_BASE_URL``).
        state: the live :class:`FakeState` (change ``state.config`` or call
            :func:`apply_control` directly).
    """

    def __init__(self, config: FakeConfig | None = None, *, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.app = build_app(config)
        self.state: FakeState = self.app.state.fake
        self.base_url = f"http://127.0.0.1:{self.port}/api/v1"
        self.root_url = f"http://127.0.0.1:{self.port}"
        uv_config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(
            target=self._server.run, name="fake-openrouter", daemon=True
        )

    def start(self, timeout: float = 10.0) -> FakeOpenRouterThread:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the fake OpenRouter did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def reset(self, config: FakeConfig | None = None) -> FakeOpenRouterThread:
        """Start over with a fresh state (``config``, no requests seen, full budgets): one
        running server can serve many tests without one's faults leaking into the next."""
        self.state = FakeState(config or FakeConfig())
        self.app.state.fake = self.state
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> FakeOpenRouterThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    modes = "; ".join(f"{name}: {spec.description}" for name, spec in MODES.items())
    parser = argparse.ArgumentParser(
        prog="fake-openrouter", description="A local server that speaks OpenRouter's API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate-limit", default=None, help="server-side bucket, e.g. 100/10s")
    parser.add_argument("--latency", type=float, default=0.0, help="mean latency in seconds")
    parser.add_argument(
        "--latency-dist", default="fixed", choices=["fixed", "uniform", "exponential"]
    )
    parser.add_argument("--fail-rate", type=float, default=0.0, help="random failure share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", action="append", default=[], help="accepted key (repeatable)")
    parser.add_argument("--management-key", action="append", default=[])
    parser.add_argument("--key-limit", type=float, default=None)
    parser.add_argument("--cost-per-1k", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[:SECONDS]",
        help=f"a fault mode answering every chat request, for SECONDS or until cleared "
        f"(repeatable: they run one after the other). Modes: {modes}; or any fault, "
        "e.g. 502 or fixture:NAME",
    )
    parser.add_argument(
        "--key-fixture", default=None, metavar="NAME", help="a /key fixture that answers /key"
    )
    parser.add_argument(
        "--fixtures",
        default=None,
        metavar="DIR",
        help=f"the fixtures directory (default ${FIXTURES_ENV}, else the checkout's "
        "tests/fixtures/openrouter)",
    )
    parser.add_argument(
        "--report-rate-limit",
        action="store_true",
        help="/key reports the --rate-limit bucket instead of the deprecated -1",
    )
    args = parser.parse_args(argv)
    try:
        args.modes = [parse_mode_flag(value) for value in args.fault]
    except ValueError as exc:
        parser.error(str(exc))
    return args


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    """A :class:`FakeConfig` from parsed command-line flags (raises ``ValueError`` for a
    ``--fault`` or ``--key-fixture`` that cannot be served)."""
    fixtures = Path(args.fixtures) if args.fixtures else fixtures_dir()
    config = FakeConfig(
        keys=frozenset(args.key),
        management_keys=frozenset(args.management_key),
        rate_limit=Rate.parse(args.rate_limit) if args.rate_limit else None,
        latency=args.latency,
        latency_dist=args.latency_dist,
        fail_rate=args.fail_rate,
        seed=args.seed,
        key_limit=args.key_limit,
        cost_per_1k_tokens=args.cost_per_1k,
        retry_after=args.retry_after,
        fixtures=fixtures,
        report_rate_limit=args.report_rate_limit,
    )
    for name, _ in args.modes:
        mode_fault(config, name)  # raises ValueError for a mode that cannot be served
    config.modes = list(args.modes)
    config.key_fixture = _key_fixture(config, args.key_fixture)
    return config


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m taskflow_server.llm.fake_openrouter``)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"fake-openrouter: {exc}") from None
    with contextlib.suppress(KeyboardInterrupt):
        run_fake_openrouter(config, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
