"""Traces across processes, and what tracing costs when it is off.

* An API-only ``taskflow-server`` and a separate ``taskflow-worker`` both export over OTLP/HTTP
  (``OTEL_EXPORTER_OTLP_ENDPOINT``) to a receiver this test runs on loopback, which decodes each
  ``ExportTraceServiceRequest`` with opentelemetry-proto. The submit's server span (server
  process) and the attempt span (worker process) share one trace id, the attempt's parent is the
  submit span, the upstream call (the fake OpenRouter, a process too) is the attempt's child, and
  the worker's JSON log line for the completion names the same trace and span.
* Off: a server with an in-process worker runs a task end to end in a fresh interpreter with no
  ``OTEL_*`` variable, and no ``opentelemetry`` module is loaded at the end. The same script with
  ``OTEL_TRACES_EXPORTER=console`` loads them and prints the spans (so the check can fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from e2e_support import POLL, TEXT, FakeUpstream, RedisServer, Spawner, log_text, worker_env
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


# --------------------------------------------------------------------------- OTLP receiver


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as an OTLP exporter sent it."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return (
        getattr(v, kind)
        if kind in ("string_value", "int_value", "double_value", "bool_value")
        else None
    )


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) on a loopback port."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces" or self.headers.get("Content-Encoding"):
                    self.send_error(400, "expected uncompressed POST /v1/traces")
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return  # no per-request lines in the test output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp", daemon=True)

    @property
    def endpoint(self) -> str:
        """The ``OTEL_EXPORTER_OTLP_ENDPOINT`` for the exporters (they add ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        """Keep every span of one export request."""
        found: list[ReceivedSpan] = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    found.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.spans += found

    def snapshot(self) -> list[ReceivedSpan]:
        """The spans received so far."""
        with self.lock:
            return list(self.spans)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    rec = OtlpReceiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
        rec.thread.join(timeout=10)


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    """Tracing on through the standard variables, exported every 100 ms."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


# ----------------------------------------------------------------------------------- tests


def test_submit_and_attempt_spans_share_one_trace_across_processes(
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    spawn: Spawner,
    start_server: Any,
    receiver: OtlpReceiver,
) -> None:
    prefix = "otel"
    env = worker_env(redis_server.url, prefix, **otel_env(receiver))
    server = start_server({**env, "TASKFLOW_WORKERS": "0"})
    worker = spawn(
        "taskflow-worker",
        env={**env, **fake_upstream.env(), "TASKFLOW_LOG_FORMAT": "json"},
    )
    resp = httpx.post(
        f"{server.url}/api/v1/tasks",
        json={"task_type": "summarize", "payload": {"content": TEXT, "sentences": 1}},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    task_id = resp.json()["task_id"]

    def completed() -> bool:
        state = httpx.get(f"{server.url}/api/v1/tasks/{task_id}", timeout=10).json()["state"]
        assert state != "DLQ", log_text(worker)[-3000:]
        return bool(state == "COMPLETED")

    wait_until(completed, f"task {task_id} to complete", 60, every=POLL)

    def traced() -> tuple[ReceivedSpan, ReceivedSpan, list[ReceivedSpan]] | None:
        spans = receiver.snapshot()
        submits = [
            s
            for s in spans
            if s.attributes.get("taskflow.task.id") == task_id and s.kind == Span.SPAN_KIND_SERVER
        ]
        runs = [
            s
            for s in spans
            if s.name == "run summarize" and s.attributes.get("taskflow.task.id") == task_id
        ]
        if not submits or not runs:
            return None
        calls = [s for s in spans if s.parent_id == runs[0].span_id and s.name.startswith("chat ")]
        return (submits[0], runs[0], calls) if calls else None

    submit, run, calls = wait_until(
        traced, "the submit, attempt and upstream spans", 30, every=POLL
    )

    assert submit.service == "asynctaskflow-server"
    assert submit.parent_id == ""  # the root of the trace
    # One server span per request (FastAPI's own telemetry defers to the instrumentation).
    in_trace = [s for s in receiver.snapshot() if s.trace_id == submit.trace_id]
    assert [s.kind for s in in_trace].count(Span.SPAN_KIND_SERVER) == 1, in_trace
    assert {s.service for s in in_trace} == {"asynctaskflow-server", "asynctaskflow-worker"}
    assert run.service == "asynctaskflow-worker"
    assert run.kind == Span.SPAN_KIND_CONSUMER
    assert run.trace_id == submit.trace_id
    assert run.parent_id == submit.span_id
    assert run.attributes["taskflow.task.attempt"] == 1
    assert run.attributes["taskflow.task.lane"] == "llm"
    assert run.attributes["taskflow.task.outcome"] == "completed"
    for call in calls:
        assert call.service == "asynctaskflow-worker" and call.trace_id == submit.trace_id
        assert call.kind == Span.SPAN_KIND_CLIENT
        assert call.attributes["http.response.status_code"] == 200
        assert call.attributes["gen_ai.usage.input_tokens"] > 0
        assert "taskflow.upstream.cost" in call.attributes

    # The worker's JSON log line for the completion joins the trace.
    def completion_line() -> dict[str, Any] | None:
        for line in log_text(worker).splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("task_id") == task_id and record.get("state") == "COMPLETED":
                return dict(record)
        return None

    line = wait_until(completion_line, "the worker's JSON line for the completion", 10)
    assert line["trace_id"] == run.trace_id and line["span_id"] == run.span_id
    assert line["task_type"] == "summarize" and line["attempt"] == 1


OFF_SCRIPT = r"""
import json, sys, time

# The server's third-party libraries first: with the otel extra installed, FastAPI (its native
# telemetry) and redis-py (its observability module) import parts of OpenTelemetry themselves.
import fastapi, httpx, redis, redis.asyncio, starlette, uvicorn

theirs = {m for m in sys.modules if m.startswith("opentelemetry")}

from taskflow_server import cli  # what the taskflow-server and taskflow-worker commands import
from taskflow_server.config import Settings
from taskflow_server.observability import tracing
from taskflow_server.serve import BackgroundServer

tracing.configure(tracing.SERVER_SERVICE)  # as the commands do at start
redis_url, base_url, key = sys.argv[1:4]
settings = Settings(
    _env_file=None, redis_url=redis_url, key_prefix="oteloff", workers=1, port=0,
    openrouter_api_key=key, openrouter_base_url=base_url,
)
with BackgroundServer(settings) as srv:
    body = {"task_type": "summarize", "payload": {"content": sys.argv[4], "sentences": 1}}
    task_id = httpx.post(srv.url + "/api/v1/tasks", json=body, timeout=10).json()["task_id"]
    deadline = time.monotonic() + 60
    state = ""
    while state != "COMPLETED" and time.monotonic() < deadline:
        state = httpx.get(f"{srv.url}/api/v1/tasks/{task_id}", timeout=10).json()["state"]
        time.sleep(0.05)
ours = sorted(
    m for m in sys.modules
    if (m.startswith("opentelemetry") and m not in theirs)
    or m == "taskflow_server.observability.tracing._otel"
)
print("RESULT " + json.dumps({"state": state, "enabled": tracing.ENABLED, "loaded": ours}))
"""


def _run_off_script(
    redis_server: RedisServer, fake_upstream: FakeUpstream, otel: dict[str, str]
) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TASKFLOW_"))}
    env.update(otel)
    done = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT, redis_server.url, fake_upstream.base_url,
         fake_upstream.env()["OPENROUTER_API_KEY"], TEXT],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :]), done.stdout


def test_tracing_off_imports_nothing_from_opentelemetry(
    redis_server: RedisServer, fake_upstream: FakeUpstream
) -> None:
    off, _ = _run_off_script(redis_server, fake_upstream, {})
    assert off["state"] == "COMPLETED"
    assert off["enabled"] is False
    # No SDK, no exporter, no instrumentation, not our _otel module: nothing beyond what
    # FastAPI and redis-py import for themselves.
    assert off["loaded"] == []

    # The control: the same run with tracing on loads the SDK and exports the attempt's span.
    on, stdout = _run_off_script(redis_server, fake_upstream, {"OTEL_TRACES_EXPORTER": "console"})
    assert on["state"] == "COMPLETED" and on["enabled"] is True
    for module in (
        "opentelemetry.sdk.trace",
        "opentelemetry.sdk.trace.export",
        "opentelemetry.instrumentation.fastapi",
        "opentelemetry.instrumentation.httpx",
        "taskflow_server.observability.tracing._otel",
    ):
        assert module in on["loaded"], module
    assert '"name": "run summarize"' in stdout
