"""Tracing's switch and set-up: the ``OTEL_*`` rule, the exporters and resource it builds, the
missing-extra message, and the span helpers on an in-memory exporter."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskflow_server.observability import tracing
from taskflow_server.observability.tracing import _otel

OTEL_VARS = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from an environment without OTEL variables, and leaves tracing off."""
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    # configure() must not set a global provider here: it would stay for the whole session.
    monkeypatch.setattr(_otel, "set_global_provider", lambda provider: None)
    yield
    tracing.uninstall()


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none, otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": " OTLP "}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, False),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_SERVICE_NAME": "svc"}, False),
    ],
)
def test_the_otel_variables_turn_tracing_on(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


def test_off_configure_does_nothing() -> None:
    assert tracing.configure(tracing.SERVER_SERVICE) is False
    assert tracing.ENABLED is False
    assert tracing.current_traceparent() is None
    assert tracing.log_ids() == {}
    with tracing.attempt_span("00-" + "1" * 32 + "-" + "2" * 16 + "-01", "t", "x", 1, "local"):
        tracing.end_attempt("completed", "COMPLETED", None, "")
    with tracing.upstream_span("m") as call:
        call.answered(200, "m", {"prompt_tokens": 1})


def test_exporters_follow_otel_traces_exporter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console,nosuch")
    with caplog.at_level(logging.WARNING):
        exporters = _otel.exporters_from_env()
    assert list(exporters) == ["otlp", "console"]
    assert isinstance(exporters["otlp"], OTLPSpanExporter)
    assert isinstance(exporters["console"], ConsoleSpanExporter)
    assert "no trace exporter 'nosuch' is installed" in caplog.text
    for exporter in exporters.values():
        exporter.shutdown()


def test_an_endpoint_alone_means_otlp_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    exporters = _otel.exporters_from_env()
    assert list(exporters) == ["otlp"]
    exporter = exporters["otlp"]
    assert isinstance(exporter, OTLPSpanExporter)
    exporter.shutdown()  # type: ignore[no-untyped-call]


def test_grpc_without_its_exporter_is_said_and_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with caplog.at_level(logging.WARNING):
        exporters = _otel.exporters_from_env()
    assert exporters == {}
    assert "otlp_proto_grpc" in caplog.text


def test_service_name_defaults_per_command_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resource = _otel.resource_from_env(tracing.WORKER_SERVICE)
    assert resource.attributes["service.name"] == "asynctaskflow-worker"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment=test")
    resource = _otel.resource_from_env(tracing.WORKER_SERVICE)
    assert resource.attributes["service.name"] == "from-attrs"
    assert resource.attributes["deployment"] == "test"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "queue-eu")
    assert _otel.resource_from_env(tracing.SERVER_SERVICE).attributes["service.name"] == "queue-eu"


def test_a_missing_extra_is_said_once_and_tracing_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    # As if the otel extra were not installed: the SDK cannot be imported.
    for name in [m for m in sys.modules if m.startswith("opentelemetry.sdk")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    monkeypatch.delitem(sys.modules, "taskflow_server.observability.tracing._otel", raising=False)
    monkeypatch.delattr(tracing, "_otel", raising=False)
    with caplog.at_level(logging.WARNING):
        assert tracing.configure(tracing.SERVER_SERVICE) is False
    assert tracing.ENABLED is False
    assert "pip install 'asynctaskflow[otel]'" in caplog.text


# ----------------------------------------------------------------------------- span helpers


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "unit"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


def test_traceparent_round_trip_and_attempt_attributes(memory: InMemorySpanExporter) -> None:
    impl = tracing._impl
    assert impl is not None and tracing.ENABLED
    with impl.tracer.start_as_current_span("submit", kind=SpanKind.SERVER) as submit:
        parent = tracing.current_traceparent()
        assert tracing.log_ids() == {
            "trace_id": f"{submit.get_span_context().trace_id:032x}",
            "span_id": f"{submit.get_span_context().span_id:016x}",
        }
        # An attempt takes its parent from the stored traceparent, not from the caller.
        with tracing.attempt_span(None, "t0", "demo.noop", 1, "local"):
            pass
    assert parent is not None
    version, trace_hex, span_hex, flags = parent.split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    with tracing.attempt_span(parent, "t1", "summarize", 2, "llm"):
        tracing.end_attempt("dlq", "DLQ", "content_filtered", "refused")
    spans = {s.name: s for s in memory.get_finished_spans()}
    run = spans["run summarize"]
    assert f"{run.context.trace_id:032x}" == trace_hex
    assert run.parent is not None and f"{run.parent.span_id:016x}" == span_hex
    assert run.kind is SpanKind.CONSUMER
    assert dict(run.attributes or {}) == {
        tracing.TASK_ID: "t1",
        tracing.TASK_TYPE: "summarize",
        tracing.TASK_ATTEMPT: 2,
        tracing.TASK_LANE: "llm",
        tracing.TASK_OUTCOME: "dlq",
        tracing.TASK_STATE: "DLQ",
        tracing.TASK_ERROR_CLASS: "content_filtered",
        tracing.ERROR_TYPE: "content_filtered",
    }
    assert run.status.status_code is StatusCode.ERROR and run.status.description == "refused"
    orphan = spans["run demo.noop"]
    assert orphan.parent is None and orphan.context.trace_id != run.context.trace_id


def test_upstream_span_attributes(memory: InMemorySpanExporter) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cost": 0.0025}
    with tracing.upstream_span("vendor/model") as call:
        call.answered(200, "vendor/model-0613", usage)
    with pytest.raises(RuntimeError), tracing.upstream_span("vendor/model") as call:
        call.failed(429, "rate_limited", {})
        raise RuntimeError("the caller re-raises the classified error")
    ok, failed = memory.get_finished_spans()
    assert ok.name == "chat vendor/model" and ok.kind is SpanKind.CLIENT
    assert dict(ok.attributes or {}) == {
        tracing.UPSTREAM_SYSTEM: "openrouter",
        tracing.UPSTREAM_OPERATION: "chat",
        tracing.UPSTREAM_MODEL: "vendor/model",
        tracing.UPSTREAM_RESPONSE_MODEL: "vendor/model-0613",
        tracing.HTTP_STATUS: 200,
        tracing.UPSTREAM_INPUT_TOKENS: 12,
        tracing.UPSTREAM_OUTPUT_TOKENS: 5,
        tracing.UPSTREAM_TOTAL_TOKENS: 17,
        tracing.UPSTREAM_COST: 0.0025,
    }
    assert failed.attributes is not None
    assert failed.attributes[tracing.HTTP_STATUS] == 429
    assert failed.attributes[tracing.ERROR_TYPE] == "rate_limited"
    assert failed.status.status_code is StatusCode.ERROR
