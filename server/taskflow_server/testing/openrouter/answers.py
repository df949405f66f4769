"""What the fake OpenRouter answers to a chat request.

:func:`chat_answer` picks the request's fault (scripted rule or queue, mode, outage, token
bucket, spent key limit, random failure; in that order) and answers with its error, its fixture
or a 200: plain text from the prompt, a ``json_schema`` instance filled from the prompt's words
(a newspaper page schema gets :func:`~taskflow_server.testing.openrouter.news.page_articles`),
or an SSE stream, with ``usage`` charged to the key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from taskflow_server.testing.openrouter.fixtures import (
    FIXTURE_PREFIX,
    fixture_paces_itself,
    fixture_path,
    fixture_response,
    load_fixture,
)
from taskflow_server.testing.openrouter.news import SENTENCE_BREAK, WORDS, page_articles
from taskflow_server.testing.openrouter.state import (
    KEY_LIMIT_FAULT,
    MODE_PREFIX,
    MODES,
    FakeState,
    mode_fault,
    mode_fixture,
)

_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def error_response(
    status: int,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An OpenRouter error answer: ``{"error": {"code", "message", "metadata"}}``."""
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
        return error_response(400, "Invalid request", {"error_type": "invalid_request"})
    if fault == "401":
        return error_response(401, "User not found.", {"error_type": "authentication"})
    if fault == "402_credits":
        meta = {"reason": "insufficient_credits", "limit_source": "openrouter_credits"}
        return error_response(
            402, "Insufficient credits", {**meta, "error_type": "payment_required"}
        )
    if fault == "402_key_limit":
        meta = {"reason": "key_limit_exceeded", "limit_source": "openrouter_key_limit"}
        return error_response(402, "Key limit exceeded", {**meta, "error_type": "payment_required"})
    if fault == "402_in_flight":
        meta = {
            "reason": "in_flight_budget_exhausted",
            "limit_source": "openrouter_in_flight_budget",
            "remedy_hint": "retry after in-flight requests finish",
            "error_type": "payment_required",
        }
        return error_response(
            402, "In-flight budget exhausted", meta, {"Retry-After": f"{retry:g}"}
        )
    if fault == "403_moderation":
        meta = {
            "reasons": ["violence"],
            "flagged_input": "a flagged part of the input",
            "provider_name": "Fake",
            "model_slug": "fake/model",
        }
        return error_response(403, "Input was flagged by moderation", meta)
    if fault == "408":
        return error_response(408, "Request timed out", {"error_type": "timeout"})
    if fault == "429":
        headers = _rate_headers(state, retry)
        meta = {"error_type": "rate_limit_exceeded"}
        return error_response(429, "Rate limit exceeded", meta, headers)
    if fault == "429_metadata_headers":
        reset_ms = int((time.time() + retry) * 1000)
        meta = {
            "error_type": "rate_limit_exceeded",
            "headers": {"X-RateLimit-Limit": "10", "X-RateLimit-Reset": str(reset_ms)},
        }
        return error_response(429, "Rate limit exceeded", meta)
    if fault == "500":
        return error_response(500, "Internal Server Error", {"error_type": "server"})
    if fault == "502":
        return error_response(
            502, "Provider returned error", {"error_type": "provider_unavailable"}
        )
    if fault == "503":
        return error_response(503, "No provider available", {"error_type": "provider_overloaded"})
    if fault == "503_retry_after":
        meta = {"error_type": "provider_overloaded"}
        return error_response(503, "No provider available", meta, {"Retry-After": f"{retry:g}"})
    if fault == "504":
        return error_response(504, "Gateway timeout", {"error_type": "timeout"})
    return None


def text_of(messages: list[Any]) -> tuple[str, list[str]]:
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
                notes.append(
                    f"[file {info.get('filename', 'file')}: {file_page_count(info)} pages]"
                )
            elif part.get("type") == "image_url":
                notes.append("[image]")
        text = "\n".join(texts)
    return text, notes


def file_page_count(info: Mapping[str, Any]) -> int:
    """The pages of a ``file`` content part's PDF (its ``/Type /Page`` objects; 0 if unreadable)."""
    data = str(info.get("file_data") or "")
    if "," not in data:
        return 0
    try:
        raw = base64.b64decode(data.split(",", 1)[1], validate=False)
    except (binascii.Error, ValueError):
        return 0
    return len(_PAGE.findall(raw))


def _plain_answer(text: str, notes: list[str]) -> str:
    sentences = [s for s in SENTENCE_BREAK.split(text.strip()) if s]
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
    words = WORDS.findall(" ".join([*notes, text]))
    faker = _SchemaFaker(schema, words)
    items = _article_items(faker, schema)
    if items is not None:
        return json.dumps(_news_answer(faker, schema, items, text, notes), ensure_ascii=False)
    return json.dumps(faker.make(schema), ensure_ascii=False)


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
        return "outage", error_response(503, "Provider outage", meta, headers)
    allowed, wait, _ = state.take_token()
    if not allowed:
        meta = {"error_type": "rate_limit_exceeded"}
        return "429", error_response(429, "Rate limit exceeded", meta, _rate_headers(state, wait))
    limit = state.config.key_limit
    if limit is not None and state.spend >= limit:
        # OpenRouter answers a spent key limit with 403 (see the key-limit fixture); the old
        # built-in 402 stays for a fake without its fixtures directory.
        if mode_fixture(MODES["key-limit"], state.config.fixtures) is not None:
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
        stem = mode_fixture(MODES["key-limit"], state.config.fixtures)
        fault = FIXTURE_PREFIX + stem if stem else "402_key_limit"
    if fault.startswith(FIXTURE_PREFIX):
        path = fixture_path(state.config.fixtures, fault[len(FIXTURE_PREFIX) :])
        fixture = load_fixture(path)
        if fixture_paces_itself(fixture):
            return fixture_response(fixture, delay), 0.0
        return fixture_response(fixture), delay
    return _fault_response(state, fault), delay


async def chat_answer(state: FakeState, body: dict[str, Any], entry: dict[str, Any]) -> Response:
    """The answer to a chat request ``body``; notes its fault and content in the log ``entry``."""
    messages = body["messages"]
    text, notes = text_of(messages)
    fault, early = _choose_fault(state, text)
    entry["fault"] = fault
    delay = state.latency() + (state.config.slow_seconds if fault == "slow" else 0.0)
    if early is None and fault is not None:
        try:
            early, delay = _named_fault(state, fault, delay)
        except (OSError, ValueError) as exc:
            early = error_response(500, f"the fake OpenRouter cannot serve {fault}: {exc}")
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
