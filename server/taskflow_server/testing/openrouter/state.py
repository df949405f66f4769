"""The fake OpenRouter's state: its config, the fault modes and rules, counters and the log.

:class:`FakeConfig` is what the fake does (every field can be changed at run time through
``POST /_control``, see :func:`apply_control`); :class:`FakeState` is what it has seen and what
is scheduled: the one random generator, the server-side token bucket, the fault queue and the
scripted :class:`FaultRule` list, the fault modes (:data:`MODES`) on the schedule, the
statistics and the request log. Nothing here builds an HTTP answer (see ``answers.py``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskflow_server.config import Rate
from taskflow_server.testing.openrouter.fixtures import (
    FIXTURE_PREFIX,
    FIXTURES_ENV,
    fixture_endpoint,
    fixture_names,
    fixture_path,
    fixtures_dir,
)

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


MODE_PREFIX = "mode:"
"""The request log and ``/_stats`` name a mode's answers ``mode:<name>``."""


KEY_LIMIT_FAULT = "key_limit"
"""The fault name of the answer to a spent ``key_limit`` (the 403 key-limit fixture)."""


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


def mode_fixture(spec: ModeSpec, directory: Path | None) -> str | None:
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
                if fixture_endpoint(directory / f"{stem}.json") != "/key":
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
        modes_delay: seconds after the start before the first of ``modes`` begins (``0``: at
            once; ``--outage-after``).
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
    modes_delay: float = 0.0
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
        if fixture_endpoint(path) == "/key":
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
    stem = mode_fixture(spec, config.fixtures)
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
        self.modes_from: float | None = None
        """``time.monotonic()`` at which the first mode of the schedule starts, while it waits
        for it (``None``: the schedule runs, or is empty)."""
        self.stats: dict[str, Any] = {}
        self.reset_stats()
        if config.modes:
            self.set_modes(config.modes, delay=config.modes_delay)

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

    def set_modes(self, modes: list[tuple[str, float | None]], *, delay: float = 0.0) -> None:
        """Replace the mode schedule: the first starts in ``delay`` seconds (now by default),
        each next one when the one before it ends (raises ``ValueError`` for a mode that cannot
        be served)."""
        for name, seconds in modes:
            mode_fault(self.config, name)
            if seconds is not None and seconds <= 0:
                raise ValueError(f"mode {name!r}: seconds must be positive or null")
        if delay < 0:
            raise ValueError("the delay before the modes must be >= 0")
        self.clear_modes()
        self.modes.extend(ActiveMode(name, seconds) for name, seconds in modes)
        if not self.modes:
            return
        if delay > 0:
            self.modes_from = time.monotonic() + delay
        else:
            self._start(self.modes[0], time.monotonic())

    def clear_modes(self) -> None:
        """End the current mode and drop the schedule."""
        if self.modes and self.modes_from is None:
            self._end(self.modes[0])
        self.modes.clear()
        self.modes_from = None

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
        if self.modes_from is not None:
            if now < self.modes_from:
                return None
            start, self.modes_from = self.modes_from, None
            if self.modes:
                self._start(self.modes[0], start)
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
        config.key_fixture = check_key_fixture(config, changes["key_fixture"])
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


def check_key_fixture(config: FakeConfig, value: Any) -> str | None:
    """A checked ``key_fixture`` value (a fixture answering ``/key``) or ``None``."""
    if not value:
        return None
    stem = str(value)
    if stem.startswith(FIXTURE_PREFIX):
        stem = stem[len(FIXTURE_PREFIX) :]
    if fixture_endpoint(fixture_path(config.fixtures, stem)) != "/key":
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


def control_view(state: FakeState) -> dict[str, Any]:
    """What ``GET /_control`` shows: the config, the queue, the rules and the modes."""
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
