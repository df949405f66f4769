"""Traces in one process: submit over real HTTP -> worker -> the fake OpenRouter over real HTTP.

The server (API plus one in-process worker, :func:`taskflow_server.serve.build_app`) runs under
uvicorn on loopback against the test Redis; the fake OpenRouter is a real HTTP server too. The
spans go to the SDK's ``InMemorySpanExporter`` through a provider installed with
:func:`tracing.install` for this module only. Checked: the submit's server span is the root of
the trace, each attempt is a ``run <type>`` span under it with the task's attributes, each
upstream request is a ``chat <model>`` span under its attempt (with the httpx span below it),
a task that fails once shows two attempt spans in one trace, and the worker's JSON log lines
carry the attempt's trace and span ids.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from support import delete_prefix, eventually, fake_control, make_settings, serve_app
from taskflow_server.logs import _Formatter
from taskflow_server.observability import tracing
from taskflow_server.serve import build_app
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread

KEY = "sk-trace"
MODEL = "fake/trace-model"
COST_PER_1K = 0.5
TEXT = (
    "The council met on Monday to discuss the new library. Residents asked for longer opening "
    "hours. The mayor promised an answer by the end of the month."
)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this module, into an in-memory exporter (off again afterwards)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "taskflow-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture
def fake(fake_server: FakeOpenRouterThread) -> FakeOpenRouterThread:
    """The module's fake OpenRouter, fresh: one key, a cost per token, a short Retry-After."""
    return fake_server.reset(
        FakeConfig(
            keys=frozenset({KEY}),
            retry_after=0.2,
            cost_per_1k_tokens=COST_PER_1K,
            slow_seconds=5.0,
            seed=3,
        )
    )


@pytest.fixture
def server(
    spans: InMemorySpanExporter, fake: FakeOpenRouterThread, redis: Redis, redis_url: str
) -> Iterator[str]:
    """API + one worker (JSON logs) on loopback, traced; its keys are deleted afterwards."""
    prefix = f"tftrace{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        redis_url=redis_url,
        key_prefix=prefix,
        workers=1,
        concurrency=4,
        log_format="json",
        openrouter_api_key=KEY,
        openrouter_base_url=fake.base_url,
        openrouter_model=MODEL,
        rate_limit=None,
        breaker_failure_threshold=5,
        breaker_min_calls=1000,
    )
    spans.clear()
    try:
        with serve_app(build_app(settings), name="traced") as (url, _):
            yield url
    finally:
        delete_prefix(redis_url, prefix)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The worker's log records as JSON lines (the ``TASKFLOW_LOG_FORMAT=json`` formatter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(as_json=True))
    logger = logging.getLogger("taskflow_server.worker.worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# ----------------------------------------------------------------------------- helpers


def attr(span: ReadableSpan, name: str) -> Any:
    """One attribute of a span (``None`` when absent)."""
    return (span.attributes or {}).get(name)


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of the parent, ``None`` for a root span."""
    return span.parent.span_id if span.parent is not None else None


def trace_of(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    """The finished spans of one trace, in the order they ended."""
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def attempts(spans: Sequence[ReadableSpan], task_id: str) -> list[ReadableSpan]:
    """The attempt spans of a task, by attempt number."""
    found = [s for s in spans if s.name.startswith("run ") and attr(s, tracing.TASK_ID) == task_id]
    return sorted(found, key=lambda s: s.start_time or 0)


async def submit(url: str, text: str = TEXT) -> str:
    """Submit one summarize over HTTP; returns its id."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        resp = await http.post(
            "/api/v1/tasks",
            json={"task_type": "summarize", "payload": {"content": text, "sentences": 1}},
        )
        assert resp.status_code == 201, resp.text
        task_id: str = resp.json()["task_id"]
        return task_id


async def wait_completed(url: str, task_id: str) -> dict[str, Any]:
    """Poll the API until the task is COMPLETED (fails early on the DLQ)."""

    async def done() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            body: dict[str, Any] = (await http.get(f"/api/v1/tasks/{task_id}")).json()
        assert body["state"] != "DLQ", body
        return body if body["state"] == "COMPLETED" else None

    body: dict[str, Any] = await eventually(done, f"task {task_id} to complete", 20)
    return body


async def wait_spans(
    exporter: InMemorySpanExporter, task_id: str, count: int
) -> tuple[ReadableSpan, list[ReadableSpan], list[ReadableSpan]]:
    """The submit span, the task's ``count`` attempt spans and its whole trace, once ended."""

    def ended() -> tuple[ReadableSpan, list[ReadableSpan], list[ReadableSpan]] | None:
        servers = [
            s
            for s in exporter.get_finished_spans()
            if s.kind is SpanKind.SERVER and attr(s, tracing.TASK_ID) == task_id
        ]
        if not servers:
            return None
        trace = trace_of(exporter, servers[0].context.trace_id)
        runs = attempts(trace, task_id)
        return (servers[0], runs, trace) if len(runs) >= count else None

    found: tuple[ReadableSpan, list[ReadableSpan], list[ReadableSpan]] = await eventually(
        ended, f"{count} attempt span(s) of {task_id}", 10
    )
    return found


def children(trace: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """The spans of ``trace`` whose parent is ``parent``."""
    return [s for s in trace if parent_id(s) == parent.context.span_id]


def check_upstream(span: ReadableSpan, status: int) -> None:
    """A ``chat <model>`` span: the request's model, the status, and on success usage + cost."""
    assert span.kind is SpanKind.CLIENT
    assert span.name == f"chat {MODEL}"
    assert attr(span, tracing.UPSTREAM_MODEL) == MODEL
    assert attr(span, tracing.UPSTREAM_SYSTEM) == "openrouter"
    assert attr(span, tracing.HTTP_STATUS) == status
    if status != 200:
        return
    prompt = attr(span, tracing.UPSTREAM_INPUT_TOKENS)
    completion = attr(span, tracing.UPSTREAM_OUTPUT_TOKENS)
    assert isinstance(prompt, int) and prompt > 0
    assert isinstance(completion, int) and completion > 0
    assert attr(span, tracing.UPSTREAM_TOTAL_TOKENS) == prompt + completion
    # The fake charges cost_per_1k_tokens per 1,000 tokens of the request.
    expected = round((prompt + completion) / 1000 * COST_PER_1K, 10)
    assert attr(span, tracing.UPSTREAM_COST) == pytest.approx(expected)


# ----------------------------------------------------------------------------- tests


async def test_submit_attempt_and_upstream_spans_form_one_trace(
    server: str, spans: InMemorySpanExporter, json_log: io.StringIO
) -> None:
    task_id = await submit(server)
    detail = await wait_completed(server, task_id)
    root, runs, trace = await wait_spans(spans, task_id, 1)

    # The submit request's server span is the root of the trace.
    assert root.parent is None
    assert root.name.startswith("POST /api/v1/tasks")
    assert attr(root, tracing.TASK_TYPE) == "summarize"

    # One attempt, a child of the submit span, with the task's attributes and its outcome.
    (run,) = runs
    assert run.kind is SpanKind.CONSUMER and run.name == "run summarize"
    assert parent_id(run) == root.context.span_id
    assert run.resource.attributes["service.name"] == "taskflow-test"
    assert attr(run, tracing.TASK_ATTEMPT) == 1
    assert attr(run, tracing.TASK_LANE) == "llm"
    assert attr(run, tracing.TASK_OUTCOME) == "completed"
    assert attr(run, tracing.TASK_STATE) == "COMPLETED"
    assert attr(run, tracing.TASK_ERROR_CLASS) is None
    assert detail["retry_count"] == 0

    # Each upstream request is a chat span under the attempt, with the HTTP span below it.
    calls = [s for s in children(trace, run) if s.name.startswith("chat ")]
    assert calls, [s.name for s in trace]
    for call in calls:
        check_upstream(call, 200)
        http_spans = children(trace, call)
        assert len(http_spans) == 1 and http_spans[0].kind is SpanKind.CLIENT, http_spans
        assert attr(http_spans[0], "http.response.status_code") in (200, None)
        assert attr(http_spans[0], "http.status_code") in (200, None)

    # The worker's JSON line for the completion carries the task and the attempt span's ids.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    done = [x for x in lines if x.get("task_id") == task_id and x.get("state") == "COMPLETED"]
    assert len(done) == 1, lines
    assert done[0]["trace_id"] == f"{run.context.trace_id:032x}"
    assert done[0]["span_id"] == f"{run.context.span_id:016x}"
    assert done[0]["task_type"] == "summarize" and done[0]["attempt"] == 1


async def test_a_retry_is_a_second_attempt_span_in_the_same_trace(
    server: str, fake: FakeOpenRouterThread, spans: InMemorySpanExporter, json_log: io.StringIO
) -> None:
    await fake_control(fake.root_url, enqueue=["503_retry_after"])  # the next request fails
    task_id = await submit(server)
    detail = await wait_completed(server, task_id)
    assert detail["retry_count"] == 1
    root, runs, trace = await wait_spans(spans, task_id, 2)
    assert len(runs) == 2, [s.name for s in trace]

    first, second = runs
    assert {parent_id(first), parent_id(second)} == {root.context.span_id}
    assert first.context.span_id != second.context.span_id
    assert [attr(s, tracing.TASK_ATTEMPT) for s in runs] == [1, 2]
    assert attr(first, tracing.TASK_OUTCOME) == "retry"
    assert attr(first, tracing.TASK_STATE) == "SCHEDULED"
    assert attr(first, tracing.TASK_ERROR_CLASS) == "unavailable"
    assert attr(second, tracing.TASK_OUTCOME) == "completed"

    (failed,) = [s for s in children(trace, first) if s.name.startswith("chat ")]
    check_upstream(failed, 503)
    assert attr(failed, tracing.ERROR_TYPE) == "unavailable"
    answered = [s for s in children(trace, second) if s.name.startswith("chat ")]
    assert answered
    for call in answered:
        check_upstream(call, 200)

    # One JSON line per state change of this task: the failed attempt, then the completion,
    # each with the trace and the span of its own attempt.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    mine = [x for x in lines if x.get("task_id") == task_id]
    assert [(x["state"], x["attempt"], x["error_class"]) for x in mine] == [
        ("SCHEDULED", 1, "unavailable"),
        ("COMPLETED", 2, None),
    ]
    assert [x["span_id"] for x in mine] == [f"{s.context.span_id:016x}" for s in runs]
    assert {x["trace_id"] for x in mine} == {f"{root.context.trace_id:032x}"}


async def test_a_batch_submit_is_the_parent_of_every_task_it_queued(
    server: str, spans: InMemorySpanExporter
) -> None:
    items = [
        {"task_type": "summarize", "payload": {"content": f"{TEXT} Item {i}.", "sentences": 1}}
        for i in range(3)
    ]
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        resp = await http.post("/api/v1/tasks/batch", json={"tasks": items})
    assert resp.status_code == 201, resp.text
    ids = [item["task_id"] for item in resp.json()["items"]]
    for task_id in ids:
        await wait_completed(server, task_id)

    def batch_span() -> ReadableSpan | None:
        found = [
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.SERVER and attr(s, tracing.BATCH_ACCEPTED) == 3
        ]
        return found[0] if found else None

    root = await eventually(batch_span, "the batch submit's server span", 10)
    assert root.parent is None

    def all_runs() -> list[ReadableSpan] | None:
        trace = trace_of(spans, root.context.trace_id)
        runs = [s for task_id in ids for s in attempts(trace, task_id)]
        return runs if len(runs) == len(ids) else None

    runs = await eventually(all_runs, "an attempt span per batch item", 10)
    assert {parent_id(s) for s in runs} == {root.context.span_id}
    assert sorted(attr(s, tracing.TASK_ID) for s in runs) == sorted(ids)


async def test_dead_letter_and_cancel_end_their_attempt_spans_and_log_lines(
    server: str, fake: FakeOpenRouterThread, spans: InMemorySpanExporter, json_log: io.StringIO
) -> None:
    # A 400 is not retried: the first attempt dead-letters the task.
    await fake_control(fake.root_url, enqueue=["400"])
    dead = await submit(server)
    # A slow answer keeps the next task ACTIVE until it is cancelled.
    await fake_control(fake.root_url, enqueue=["slow"])
    slow = await submit(server, f"{TEXT} Slow.")
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:

        async def state(task_id: str, wanted: str) -> bool:
            return bool((await http.get(f"/api/v1/tasks/{task_id}")).json()["state"] == wanted)

        await eventually(lambda: state(dead, "DLQ"), f"task {dead} in the DLQ", 20)
        await eventually(lambda: state(slow, "ACTIVE"), f"task {slow} running", 20)
        resp = await http.post(f"/api/v1/tasks/{slow}/cancel")
        assert resp.status_code == 202, resp.text
        await eventually(lambda: state(slow, "CANCELLED"), f"task {slow} cancelled", 20)

    _, (dlq_run,), _ = await wait_spans(spans, dead, 1)
    assert attr(dlq_run, tracing.TASK_OUTCOME) == "dlq"
    assert attr(dlq_run, tracing.TASK_STATE) == "DLQ"
    assert attr(dlq_run, tracing.TASK_ERROR_CLASS) == "invalid_request"
    _, (cancelled_run,), _ = await wait_spans(spans, slow, 1)
    assert attr(cancelled_run, tracing.TASK_OUTCOME) == "cancel"
    assert attr(cancelled_run, tracing.TASK_STATE) == "CANCELLED"

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    by_task = {x["task_id"]: x for x in lines if x.get("task_id") in (dead, slow)}
    assert (by_task[dead]["state"], by_task[dead]["error_class"]) == ("DLQ", "invalid_request")
    assert by_task[dead]["span_id"] == f"{dlq_run.context.span_id:016x}"
    assert (by_task[slow]["state"], by_task[slow]["outcome"]) == ("CANCELLED", "cancel")
    assert by_task[slow]["span_id"] == f"{cancelled_run.context.span_id:016x}"
