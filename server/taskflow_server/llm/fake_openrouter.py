"""A fake OpenRouter: a real HTTP server that speaks the API's contract, for tests and demos.

Run it::

    python -m taskflow_server.llm.fake_openrouter --port 8765 --rate-limit 100/10s \\
        --latency 0.3 --fail-rate 0.1 --seed 1 --key sk-test

and point ``OPENROUTER_BASE_URL`` at ``http://127.0.0.1:8765/api/v1``. In Python use
:func:`build_app` (an ASGI app), :func:`run_fake_openrouter` (blocking) or
:class:`FakeOpenRouterThread` (a context manager serving on a free port in a thread).

Endpoints (under ``/api/v1``): ``POST /chat/completions`` (plain and ``json_schema`` answers,
``file`` parts whose page count is echoed, ``stream: true``), ``GET /key`` and ``/auth/key``,
``GET /credits`` (403 unless a management key). Unknown or missing bearer keys get 401.

Faults, in the order they are checked for a chat request:

1. **scripted**: a request whose last user message contains a rule's ``match`` text takes the
   rule's fault (``fault_rules``, each for ``times`` requests or for good); otherwise the next
   requests take faults from a queue (``enqueue``, see :data:`FAULTS`);
2. **outage**: 503 ``provider_overloaded`` with ``Retry-After`` until the outage ends;
3. **server-side token bucket** (``rate_limit``): a real 429 with ``Retry-After`` and
   ``X-RateLimit-Limit/Remaining/Reset`` (reset in epoch ms) when the bucket is empty;
4. **key limit**: 402 ``openrouter_key_limit`` once the key's spend reaches ``key_limit``;
5. **random failures** (``fail_rate``, spread over ``fail_statuses`` by weight).

Latency follows ``latency`` seconds with a ``fixed``, ``uniform`` (0.5x-1.5x) or ``exponential``
distribution. Everything random comes from one ``random.Random(seed)``.

Control at run time: ``POST /_control`` with any of ``latency``, ``latency_dist``, ``fail_rate``,
``fail_statuses``, ``outage_seconds``, ``rate_limit`` (``"N/Ts"`` or null), ``key_limit``,
``cost_per_1k_tokens``, ``seed``, ``enqueue`` (a list of faults), ``clear_queue``,
``fault_rules`` (a list of ``{"match": text, "fault": name, "times": n | null}``, added to the
rules), ``clear_rules``, ``reset_stats``; ``GET /_control`` shows the config; ``GET /_stats``
counts requests, answers per status, 429s, tokens, content parts by type and the most requests
ever in flight at once; ``GET /_requests`` lists the last :data:`REQUEST_LOG_SIZE` chat requests
(content part types, plugins, schema, fault, status, answer; never the file or image data);
``POST /_reset`` clears stats, the log, the queue and the rules.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import contextlib
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
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
        }


@dataclass
class FaultRule:
    """A scripted fault for the requests whose last user message contains ``match``.

    Attributes:
        match: text to look for (``""`` matches every request).
        fault: one of :data:`FAULTS`.
        remaining: how many more requests it applies to (``None`` = every matching request).
    """

    match: str
    fault: str
    remaining: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> FaultRule:
        """A rule from ``{"match", "fault", "times"}`` (raises ``ValueError`` when malformed)."""
        if not isinstance(raw, Mapping):
            raise ValueError("a fault rule is an object with match, fault and times")
        fault = str(raw.get("fault"))
        if fault not in FAULTS:
            raise ValueError(f"unknown faults: [{fault!r}]")
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
        self.stats: dict[str, Any] = {}
        self.reset_stats()

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
            "started_at": time.time(),
        }

    def snapshot(self) -> dict[str, Any]:
        """Statistics as JSON-friendly data."""
        out = dict(self.stats)
        out["by_status"] = dict(self.stats["by_status"])
        out["faults"] = dict(self.stats["faults"])
        out["content_parts"] = dict(self.stats["content_parts"])
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

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
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
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = next(
                    (o for o in options if self._resolve(o).get("type") != "null"), options[0]
                )
                return self.make(chosen, name, depth + 1)
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part))
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
    return json.dumps(_SchemaFaker(schema, words).make(schema), ensure_ascii=False)


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


def _pre_answer_fault(state: FakeState, text: str) -> tuple[str | None, Response | None]:
    """The fault to apply, and an error response when it ends the request before the model."""
    ruled = state.rule_fault(text)
    if ruled is not None:
        state.stats["faults"][ruled] += 1
        return ruled, _fault_response(state, ruled)
    if state.queue:
        fault = state.queue.popleft()
        state.stats["faults"][fault] += 1
        return fault, _fault_response(state, fault)
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
        return "402_key_limit", _fault_response(state, "402_key_limit")
    drawn = state.random_fault()
    if drawn is not None:
        state.stats["faults"][drawn] += 1
        return drawn, _fault_response(state, drawn)
    return None, None


async def _answer(state: FakeState, body: dict[str, Any], entry: dict[str, Any]) -> Response:
    messages = body["messages"]
    text, notes = _text_of(messages)
    fault, early = _pre_answer_fault(state, text)
    entry["fault"] = fault
    delay = state.latency() + (state.config.slow_seconds if fault == "slow" else 0.0)
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
    if body.get("stream"):
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
    }
    if config.rate_limit is not None:
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
    if "fail_statuses" in changes:
        statuses = {str(k): float(v) for k, v in dict(changes["fail_statuses"]).items()}
        unknown = set(statuses) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
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
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        state.queue.extend(faults)
    if changes.get("clear_rules"):
        state.rules.clear()
    if "fault_rules" in changes:
        rules = changes["fault_rules"]
        if not isinstance(rules, list):
            raise ValueError("fault_rules must be a list")
        state.rules.extend([FaultRule.parse(rule) for rule in rules])
    if changes.get("reset_stats"):
        state.reset_stats()


def _control_view(state: FakeState) -> dict[str, Any]:
    outage = max(0.0, state.outage_until - time.monotonic())
    return {
        **state.config.public(),
        "outage_remaining": round(outage, 3),
        "queued_faults": list(state.queue),
        "fault_rules": [rule.public() for rule in state.rules],
        "faults": list(FAULTS),
    }


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
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    """A :class:`FakeConfig` from parsed command-line flags."""
    return FakeConfig(
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
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m taskflow_server.llm.fake_openrouter``)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        run_fake_openrouter(config_from_args(args), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
