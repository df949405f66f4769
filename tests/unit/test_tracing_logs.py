"""JSON log lines: ``json_fields`` become top-level keys, trace ids join them while tracing is on,
and text lines stay as they were. The worker logs its state changes at a level that keeps text
logs quiet."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from redis.asyncio import Redis

from support import make_settings
from taskflow_server.logs import _Formatter, json_fields
from taskflow_server.observability import tracing
from taskflow_server.worker.worker import Worker


def record(**extra: object) -> logging.LogRecord:
    """A record as ``log.info("task %s done", "t1", extra=...)`` makes it."""
    rec = logging.LogRecord("taskflow_server.worker.worker", logging.INFO, __file__, 1,
                            "task %s done", ("t1",), None)  # fmt: skip
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


FIELDS = json_fields(task_id="t1", task_type="summarize", state="COMPLETED", attempt=1)


@pytest.fixture
def traced() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    tracing.install(provider)
    try:
        yield provider
    finally:
        tracing.uninstall()
        provider.shutdown()


def test_json_lines_carry_the_fields_at_top_level() -> None:
    line = json.loads(_Formatter(as_json=True).format(record(**FIELDS)))
    assert line["msg"] == "task t1 done"
    assert line["level"] == "info"
    assert (line["task_id"], line["task_type"], line["state"], line["attempt"]) == (
        "t1",
        "summarize",
        "COMPLETED",
        1,
    )
    assert "json_fields" not in line
    assert "trace_id" not in line  # tracing is off


def test_text_lines_leave_the_fields_out() -> None:
    text = _Formatter(as_json=False).format(record(**FIELDS, other="kept"))
    assert text.endswith("taskflow_server.worker.worker: task t1 done other='kept'")
    assert "task_id" not in text and "json_fields" not in text


def test_json_lines_inside_a_span_carry_its_ids(traced: TracerProvider) -> None:
    tracer = traced.get_tracer("test")
    with tracer.start_as_current_span("attempt") as span:
        line = json.loads(_Formatter(as_json=True).format(record(**FIELDS)))
    ctx = span.get_span_context()
    assert line["trace_id"] == f"{ctx.trace_id:032x}"
    assert line["span_id"] == f"{ctx.span_id:016x}"
    outside = json.loads(_Formatter(as_json=True).format(record(**FIELDS)))
    assert "trace_id" not in outside  # no span in progress
    text = _Formatter(as_json=False).format(record(**FIELDS))
    assert "trace_id" not in text


@pytest.mark.parametrize(("log_format", "level"), [("json", logging.INFO), ("text", logging.DEBUG)])
async def test_worker_logs_completions_at_info_only_with_json_logs(
    log_format: str, level: int
) -> None:
    redis = Redis()  # never connected: the worker is only built
    try:
        worker = Worker(make_settings(log_format=log_format), redis, worker_id="w")
        assert worker._change_level == level
        await worker.services.aclose()
    finally:
        await redis.aclose()
