"""Opt-in OpenTelemetry traces: one trace from the submit request to every upstream call.

Tracing is off unless the standard ``OTEL_*`` environment asks for it (:func:`wanted`):

* ``OTEL_SDK_DISABLED=true`` turns it off, whatever else is set;
* ``OTEL_TRACES_EXPORTER`` set to anything but ``none`` (``otlp``, ``console``, a list such as
  ``otlp,console``, or the name of any exporter installed for the SDK) turns it on;
* without ``OTEL_TRACES_EXPORTER``, an ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` turns it on with the OTLP exporter;
* nothing set: off. (The SDK's own default exporter is ``otlp``; here a process with no OTEL
  variable at all sends nothing anywhere.)

Off, this module is all that is imported: nothing from ``opentelemetry`` is loaded and the hot
paths pay one module attribute test (``if tracing.ENABLED``). On, :func:`configure` builds the
provider from the environment in :mod:`taskflow_server.observability.tracing._otel` (which
imports the SDK), and the code paths below add their spans:

* the FastAPI instrumentation makes one server span per request (:func:`instrument_app`); a
  submit stores the W3C ``traceparent`` of that span with each task (:func:`current_traceparent`);
* a worker runs each attempt of a task inside a ``run <task_type>`` span whose parent is that
  stored ``traceparent`` (:func:`attempt_span`), so a task's retries are sibling attempt spans of
  the submit's trace;
* each upstream chat request is a ``chat <model>`` client span under its attempt
  (:func:`upstream_span`), with the httpx instrumentation's HTTP span below it
  (:func:`instrument_http_client`).

Without the ``[otel]`` extra installed, a process asked to trace says so once in its log and runs
without traces.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from taskflow_server import logs

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

    from taskflow_server.observability.tracing import _otel

log = logging.getLogger(__name__)

ENABLED: bool = False
"""True while traces are recorded. Read it as ``tracing.ENABLED`` (not ``from ... import``):
:func:`configure`, :func:`install` and :func:`uninstall` change it at run time."""

SERVER_SERVICE = "asynctaskflow-server"
"""The service name of ``taskflow-server`` when ``OTEL_SERVICE_NAME`` does not name one."""

WORKER_SERVICE = "asynctaskflow-worker"
"""The service name of ``taskflow-worker`` when ``OTEL_SERVICE_NAME`` does not name one."""

# Span attributes (the task's own under ``taskflow.task``; the upstream call's after the
# OpenTelemetry GenAI and HTTP conventions, plus the cost OpenRouter reports).
TASK_ID = "taskflow.task.id"
TASK_TYPE = "taskflow.task.type"
TASK_ATTEMPT = "taskflow.task.attempt"
"""1 for a task's first attempt; a retry's number is one more than the retries used before it."""
TASK_LANE = "taskflow.task.lane"
TASK_OUTCOME = "taskflow.task.outcome"
"""How the attempt ended: ``completed``, ``retry``, ``dlq``, ``requeue``, ``cancel`` or ``lost``."""
TASK_STATE = "taskflow.task.state"
"""The state the attempt left the task in (``COMPLETED``, ``SCHEDULED``, ``DLQ``...)."""
TASK_ERROR_CLASS = "taskflow.task.error_class"
BATCH_ACCEPTED = "taskflow.batch.accepted"
UPSTREAM_SYSTEM = "gen_ai.system"
UPSTREAM_OPERATION = "gen_ai.operation.name"
UPSTREAM_MODEL = "gen_ai.request.model"
UPSTREAM_RESPONSE_MODEL = "gen_ai.response.model"
UPSTREAM_INPUT_TOKENS = "gen_ai.usage.input_tokens"
UPSTREAM_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
UPSTREAM_TOTAL_TOKENS = "taskflow.upstream.total_tokens"
UPSTREAM_COST = "taskflow.upstream.cost"
"""The ``usage.cost`` OpenRouter reports for the request (credits, i.e. US dollars)."""
HTTP_STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"

_TRUE = frozenset({"true", "1", "yes", "on"})

_impl: _otel.Tracing | None = None


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables in ``environ`` (default: this process's) ask for traces.

    The rule is the module docstring's: ``OTEL_SDK_DISABLED`` wins, then an
    ``OTEL_TRACES_EXPORTER`` other than ``none``, then an OTLP endpoint.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return any(name.strip() not in ("", "none") for name in exporters.split(","))
    return any(
        env.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(default_service: str) -> bool:
    """Turn tracing on for this process when the environment asks for it (idempotent).

    Builds a tracer provider from the ``OTEL_*`` variables (exporters, sampler, resource,
    batching), named ``OTEL_SERVICE_NAME`` or else ``default_service``, and makes it the global
    one. Returns :data:`ENABLED`.
    """
    if ENABLED or not wanted():
        return ENABLED
    try:
        from taskflow_server.observability.tracing import _otel
    except ImportError as exc:
        log.warning(
            "OTEL_* variables ask for traces but the OpenTelemetry packages are missing (%s): "
            "install the otel extra (pip install 'asynctaskflow[otel]'); running without traces",
            exc,
        )
        return False
    provider, exporters = _otel.provider_from_env(default_service)
    if not exporters:
        log.warning("OTEL_TRACES_EXPORTER names no exporter that could be loaded; no traces")
        return False
    _otel.set_global_provider(provider)
    install(provider)
    log.info(
        "tracing on: service %s, exporter(s) %s",
        _otel.service_name(provider),
        ", ".join(exporters),
    )
    return True


def install(provider: TracerProvider) -> None:
    """Record traces with ``provider`` from now on (what :func:`configure` does once it has
    built one; tests pass a provider with an in-memory exporter)."""
    global ENABLED, _impl
    from taskflow_server.observability.tracing import _otel

    _impl = _otel.Tracing(provider)
    ENABLED = True
    logs.set_context_fields(log_ids)  # JSON log lines carry the trace and span ids


def uninstall() -> None:
    """Stop recording (spans already ended are flushed to the exporters first)."""
    global ENABLED, _impl
    impl, _impl, ENABLED = _impl, None, False
    logs.set_context_fields(None)
    if impl is not None:
        impl.flush()


def instrument_app(app: FastAPI) -> None:
    """Give every request to ``app`` a server span (continuing an incoming ``traceparent``).

    A no-op while tracing is off. ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` leaves paths out.
    """
    if _impl is not None:
        _impl.instrument_app(app)


def instrument_http_client(client: httpx.AsyncClient) -> None:
    """Give every request ``client`` sends an HTTP client span (a no-op while tracing is off).

    Only the clients passed here are traced: an application's own httpx clients in the same
    process (a notebook running the server in the background) are left alone.
    """
    if _impl is not None:
        _impl.instrument_http_client(client)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span in progress, to store with a task; ``None`` when
    tracing is off or no span is in progress."""
    return _impl.traceparent() if _impl is not None else None


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the span in progress (nothing when tracing is off)."""
    if _impl is not None:
        _impl.set_attributes(attributes)


def attempt_span(
    traceparent: str | None, task_id: str, task_type: str, attempt: int, lane: str
) -> contextlib.AbstractContextManager[object]:
    """A span around one attempt of a task, child of the submit's ``traceparent`` (a new trace
    when the task carries none). :func:`end_attempt` records how it ended."""
    if _impl is None:
        return contextlib.nullcontext()
    return _impl.attempt_span(traceparent, task_id, task_type, attempt, lane)


def end_attempt(outcome: str, state: str | None, error_class: str | None, message: str) -> None:
    """Record on the attempt span in progress how the attempt ended (see :data:`TASK_OUTCOME`);
    an ``error_class`` marks the span as an error with ``message``."""
    if _impl is not None:
        _impl.end_attempt(outcome, state, error_class, message)


class UpstreamCall:
    """What an upstream request span is told once the answer is in (a no-op while tracing is
    off); :func:`upstream_span` yields one."""

    def answered(self, status: int, model: str | None, usage: Mapping[str, Any]) -> None:
        """Record a successful answer: the HTTP status, the model that served it, its usage."""

    def failed(self, status: int | None, error_class: str, usage: Mapping[str, Any]) -> None:
        """Record a failed request: the HTTP status (``None`` for a transport error), the
        error class and whatever usage the upstream still reported."""


_NO_CALL = UpstreamCall()


@contextlib.contextmanager
def upstream_span(model: str, system: str = "openrouter") -> Iterator[UpstreamCall]:
    """A client span around one upstream chat request to ``model``, child of the span in
    progress (the attempt's)."""
    if _impl is None:
        yield _NO_CALL
        return
    with _impl.upstream_span(model, system) as call:
        yield call


def log_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` (hex) of the span in progress, for a log line; empty when
    tracing is off or no span is in progress."""
    return _impl.log_ids() if _impl is not None else {}
