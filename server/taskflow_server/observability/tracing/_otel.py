"""The OpenTelemetry side of :mod:`taskflow_server.observability.tracing`.

Imported only once tracing is on: this is the one module of the server that imports the
OpenTelemetry SDK and instrumentations (the ``[otel]`` extra).

Exporters come from ``OTEL_TRACES_EXPORTER`` (default ``otlp``), each name looked up the way the
SDK's own configuration does, among the ``opentelemetry_traces_exporter`` entry points of the
installed packages: ``console`` always, ``otlp`` as ``otlp_proto_http`` (or ``otlp_proto_grpc``
when ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL=grpc`` and that exporter is installed). Each exporter
reads its own variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``...),
each sits behind a ``BatchSpanProcessor`` (``OTEL_BSP_*``; smaller export batches than the SDK's
unless set, see :data:`EXPORT_BATCH`), and the provider takes its sampler
(``OTEL_TRACES_SAMPLER``) and resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) from
the environment too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from taskflow_server import __version__
from taskflow_server.observability import tracing as t

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

log = logging.getLogger(__name__)

EXPORTER_GROUP = "opentelemetry_traces_exporter"
"""The entry point group the SDK loads trace exporters from."""

EXPORT_BATCH = 64
"""Spans per export unless ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` says otherwise (the SDK's default
is 512). Encoding a batch holds the GIL, so the event loop of the API or the worker stalls while
it runs: measured at 200 submits/s, 512-span exports raised the submit p99 from 4.5 to 15-20 ms,
64-span ones to 5.5-6 ms (``benchmarks/RESULTS.md``, "OpenTelemetry tracing: cost")."""

_W3C = TraceContextTextMapPropagator()


def _exporter_entry(name: str) -> str:
    """The entry point name for one ``OTEL_TRACES_EXPORTER`` value."""
    if name != "otlp":
        return name
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        return "otlp_proto_grpc"
    if protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not supported here; using http/protobuf", protocol)
    return "otlp_proto_http"


def exporters_from_env() -> dict[str, SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (default ``otlp``), by name; a name no
    installed package provides is logged and left out."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    names = [n.strip().lower() for n in raw.split(",") if n.strip().lower() not in ("", "none")]
    found = {ep.name: ep for ep in entry_points(group=EXPORTER_GROUP)}
    exporters: dict[str, SpanExporter] = {}
    for name in names:
        entry = _exporter_entry(name)
        point = found.get(entry)
        if point is None:
            log.warning(
                "no trace exporter %r is installed (%s are); left out",
                entry,
                ", ".join(sorted(found)) or "none",
            )
            continue
        exporter = point.load()()
        if not isinstance(exporter, SpanExporter):
            log.warning("trace exporter %r is not a SpanExporter; left out", entry)
            continue
        exporters[name] = exporter
    return exporters


def resource_from_env(default_service: str) -> Resource:
    """The process's resource: ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` as the
    SDK reads them, with ``default_service`` when they name no service."""
    resource = Resource.create({SERVICE_VERSION: __version__})
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service}))
    return resource


def provider_from_env(default_service: str) -> tuple[TracerProvider, list[str]]:
    """A tracer provider configured from the ``OTEL_*`` environment, and its exporters' names."""
    provider = TracerProvider(resource=resource_from_env(default_service))
    exporters = exporters_from_env()
    batch = None if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else EXPORT_BATCH
    for exporter in exporters.values():
        provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=batch))
    return provider, list(exporters)


def set_global_provider(provider: TracerProvider) -> None:
    """Make ``provider`` the process's global one (libraries that trace on their own use it)."""
    trace.set_tracer_provider(provider)


def service_name(provider: TracerProvider) -> str:
    """The ``service.name`` of ``provider``'s resource."""
    return str(provider.resource.attributes.get(SERVICE_NAME, ""))


@functools.lru_cache(maxsize=1024)
def _parent_context(traceparent: str | None) -> otel_context.Context:
    """The context an attempt starts from: the stored ``traceparent``, or an empty context (a
    new trace, not the caller's). Cached: the tasks of one batch submit share a traceparent,
    and a context is immutable."""
    if not traceparent:
        return otel_context.Context()
    return _W3C.extract({"traceparent": traceparent})


class _UpstreamCall(t.UpstreamCall):
    """Writes an upstream answer's facts onto its span."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def _usage(self, usage: Mapping[str, Any]) -> None:
        for attr, key in (
            (t.UPSTREAM_INPUT_TOKENS, "prompt_tokens"),
            (t.UPSTREAM_OUTPUT_TOKENS, "completion_tokens"),
            (t.UPSTREAM_TOTAL_TOKENS, "total_tokens"),
        ):
            value = usage.get(key)
            if isinstance(value, int):
                self.span.set_attribute(attr, value)
        cost = usage.get("cost")
        if isinstance(cost, int | float):
            self.span.set_attribute(t.UPSTREAM_COST, float(cost))

    def answered(self, status: int, model: str | None, usage: Mapping[str, Any]) -> None:
        """Record a successful answer."""
        self.span.set_attribute(t.HTTP_STATUS, status)
        if model:
            self.span.set_attribute(t.UPSTREAM_RESPONSE_MODEL, model)
        self._usage(usage)

    def failed(self, status: int | None, error_class: str, usage: Mapping[str, Any]) -> None:
        """Record a failed request (the span becomes an error)."""
        if status is not None:
            self.span.set_attribute(t.HTTP_STATUS, status)
        self.span.set_attribute(t.ERROR_TYPE, error_class)
        self.span.set_status(Status(StatusCode.ERROR, error_class))
        self._usage(usage)


class Tracing:
    """Spans for one tracer provider: what :mod:`tracing` delegates to while it is on."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("taskflow_server", __version__)

    def flush(self) -> None:
        """Hand every ended span to the exporters now."""
        self.provider.force_flush()

    def instrument_app(self, app: FastAPI) -> None:
        """Server spans for ``app`` (no per-message ``receive``/``send`` spans)."""
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, exclude_spans=["receive", "send"]
        )

    def instrument_http_client(self, client: httpx.AsyncClient) -> None:
        """HTTP client spans for ``client``."""
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def traceparent(self) -> str | None:
        """The current span's W3C ``traceparent``."""
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        return carrier.get("traceparent")

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Attributes on the current span."""
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(dict(attributes))

    def attempt_span(
        self, traceparent: str | None, task_id: str, task_type: str, attempt: int, lane: str
    ) -> contextlib.AbstractContextManager[trace.Span]:
        """A consumer span for one attempt, child of ``traceparent``, current while it runs.

        (``start_span`` + ``use_span`` rather than ``start_as_current_span``: two generator
        layers fewer on a path every task takes.)
        """
        span = self.tracer.start_span(
            f"run {task_type}",
            context=_parent_context(traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                t.TASK_ID: task_id,
                t.TASK_TYPE: task_type,
                t.TASK_ATTEMPT: attempt,
                t.TASK_LANE: lane,
            },
        )
        return trace.use_span(span, end_on_exit=True)

    def end_attempt(
        self, outcome: str, state: str | None, error_class: str | None, message: str
    ) -> None:
        """Outcome attributes (and an error status) on the current attempt span."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attribute(t.TASK_OUTCOME, outcome)
        if state:
            span.set_attribute(t.TASK_STATE, state)
        if error_class:
            span.set_attribute(t.TASK_ERROR_CLASS, error_class)
            span.set_attribute(t.ERROR_TYPE, error_class)
            span.set_status(Status(StatusCode.ERROR, message[:500]))

    @contextlib.contextmanager
    def upstream_span(self, model: str, system: str) -> Iterator[t.UpstreamCall]:
        """A client span for one upstream chat request."""
        with self.tracer.start_as_current_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={
                t.UPSTREAM_SYSTEM: system,
                t.UPSTREAM_OPERATION: "chat",
                t.UPSTREAM_MODEL: model,
            },
        ) as span:
            yield _UpstreamCall(span)

    def log_ids(self) -> dict[str, str]:
        """Hex trace and span ids of the current span."""
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return {}
        return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
