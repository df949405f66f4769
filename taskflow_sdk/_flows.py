"""Flows: how the SDK writes an operation once and runs it on two transports.

A *flow* is a generator that does no I/O. It describes an operation (a request with its
retries, a batch submit in chunks, ``wait()``'s polling loop) by *yielding actions* and receiving
their outcomes; its ``return`` value is the operation's result and whatever it raises is the
operation's error. The actions are:

* :class:`Send` ``(spec)``: "send this request". The driver answers with the
  ``httpx.Response`` (body read), or with the ``httpx.TransportError`` the send raised (as a
  value, not thrown in), so the flow decides whether to retry.
* :class:`Sleep` ``(seconds)``: "pause". The driver sleeps (``time.sleep`` or
  ``asyncio.sleep``) and answers ``None``.
* :class:`Gather` ``(flows)``: "run these sub-flows". The driver runs them (one after the other,
  or concurrently) and answers with the list of their results, an exception object in place of
  each one that raised.
* :class:`NextEvent` ``(seconds)``: only for flows run with an event source (the streaming
  ``wait()``): the driver answers with the next event, ``None`` when ``seconds`` pass without
  one, or the exception that ended the stream.

A *driver* owns the transport and runs flows: it calls ``flow.send(outcome)`` in a loop,
performs each action and sends its outcome back, until the generator returns. What a driver
offers is the protocol :class:`~taskflow_sdk._drivers.SyncDriver` (or ``AsyncDriver``): its
config, its request builder, ``run(flow)`` and a streaming send for event streams. There are
two, :class:`~taskflow_sdk._drivers.HttpxDriver` (``httpx.Client``, behind
:class:`~taskflow_sdk.Client`) and :class:`~taskflow_sdk._drivers.AsyncHttpxDriver`
(``httpx.AsyncClient``, behind :class:`~taskflow_sdk.AsyncClient`); batches and event streams
are typed against the protocols, never against a client class. A minimal flow and its use::

    def get_task(config, task_id):                      # a flow: no I/O in here
        spec = RequestSpec("GET", f"/api/v1/tasks/{task_id}")
        return (yield from request_flow(config, spec, parser(Task)))

    task = driver.run(get_task(config, "abc"))          # sync
    task = await adriver.run(get_task(config, "abc"))   # async: the same flow

Because flows only yield data and receive data, they are tested by driving them with a fake
transport, and retries, backoff and polling exist once for both clients. Where they live:
:func:`request_flow` here (one request and its retries), :mod:`taskflow_sdk._requests` (one
flow per API operation), :mod:`taskflow_sdk._wait` (``wait()``, polling or streaming) and
:class:`~taskflow_sdk.batch.BatchCore` (submitting, waiting for and budgeting a batch).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from taskflow_sdk._config import USE_CLIENT_DEFAULT, ClientConfig, Timeout, safe_url
from taskflow_sdk._files import Upload
from taskflow_sdk.errors import APIConnectionError, APITimeoutError, error_for_response

T = TypeVar("T")

__all__ = [
    "RETRY_STATUSES",
    "Action",
    "Flow",
    "Gather",
    "NextEvent",
    "RequestSpec",
    "Send",
    "Sleep",
    "connection_error",
    "request_flow",
    "retry_after_seconds",
    "retry_delay",
]


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, transport-neutral.

    ``idempotent``: whether sending it twice is harmless, so it may be retried after a 5xx, a
    429 or a broken connection (a connection that was refused is retried for any request).
    ``accept_statuses``: error statuses that are an answer, not an error (a 404 to a HEAD that
    asks whether something exists). ``files``: uploads, read only when the request is built.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, Any] | None = None
    files: Mapping[str, Upload] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: Timeout = USE_CLIENT_DEFAULT
    idempotent: bool = True
    accept_statuses: tuple[int, ...] = ()

    def build_kwargs(self, config: ClientConfig) -> dict[str, Any]:
        """Keyword arguments for ``build_request`` of either httpx client (this reads the
        files to upload, if any)."""
        kwargs: dict[str, Any] = {
            "method": self.method,
            "url": config.url(self.path),
            "headers": {**config.headers(), **self.headers},
            "timeout": config.timeout_for(self.timeout),
        }
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.data is not None:
            kwargs["data"] = dict(self.data)
        if self.files is not None:
            kwargs["files"] = {
                name: (up.filename, up.read(), up.content_type) for name, up in self.files.items()
            }
        return kwargs


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Send:
    """Action: send this request, answer with the response (read) or the transport error."""

    spec: RequestSpec


@dataclass(frozen=True)
class Sleep:
    """Action: pause this long (seconds)."""

    seconds: float


@dataclass(frozen=True)
class Gather:
    """Action: run these flows (concurrently when the client can); answer with their results,
    an exception object in place of each one that raised."""

    flows: Sequence[Flow[Any]]


@dataclass(frozen=True)
class NextEvent:
    """Action: answer with the next event of the driver's event source, ``None`` after
    ``seconds`` without one, or the exception that ended the source."""

    seconds: float


Action = Send | Sleep | Gather | NextEvent
"""What a flow yields."""
Flow = Generator[Action, Any, T]
"""A generator of actions whose return value is the operation's result."""


# --------------------------------------------------------------------------- retries


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date) in seconds, when it sends one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses after which an idempotent request is tried again."""


def retry_delay(
    config: ClientConfig,
    spec: RequestSpec,
    attempt: int,
    outcome: httpx.Response | BaseException,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying after ``outcome``, or ``None`` to give up.

    Retried: a refused connection (the server never saw the request) for any request; other
    transport errors, 408, 429 and 5xx for idempotent requests only; at most
    ``config.max_retries`` times. The wait honours ``Retry-After`` (capped at
    ``retry_after_max``), else backs off exponentially from ``backoff_initial`` up to
    ``backoff_max`` with up to 25 % jitter.
    """
    if attempt >= config.max_retries:
        return None
    if isinstance(outcome, httpx.Response):
        if outcome.status_code not in RETRY_STATUSES or not spec.idempotent:
            return None
        hinted = retry_after_seconds(outcome)
        if hinted is not None:
            return min(hinted, config.retry_after_max)
    elif isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout):
        pass
    elif not (isinstance(outcome, httpx.TransportError) and spec.idempotent):
        return None
    base = min(config.backoff_initial * (2.0**attempt), config.backoff_max)
    return base * (1.0 - 0.25 * rng())


def connection_error(exc: BaseException, config: ClientConfig) -> APIConnectionError:
    """The SDK error for a transport failure (a timeout becomes :class:`APITimeoutError`)."""
    request: httpx.Request | None
    try:
        request = exc.request if isinstance(exc, httpx.RequestError) else None
    except RuntimeError:
        request = None
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"the AsyncTaskFlow server at {safe_url(config.base_url)} did not answer in time "
            f"({type(exc).__name__})",
            request=request,
        )
    reason = str(exc) or type(exc).__name__
    return APIConnectionError(
        f"cannot reach the AsyncTaskFlow server at {safe_url(config.base_url)}: {reason} "
        f"(is it running? set TASKFLOW_URL or base_url=)",
        request=request,
    )


def request_flow(
    config: ClientConfig, spec: RequestSpec, parse: Callable[[httpx.Response], T]
) -> Flow[T]:
    """Send ``spec``, retrying as :func:`retry_delay` decides; return ``parse(response)``."""
    attempt = 0
    while True:
        outcome = yield Send(spec)
        if isinstance(outcome, httpx.Response) and (
            outcome.is_success or outcome.status_code in spec.accept_statuses
        ):
            return parse(outcome)
        delay = retry_delay(config, spec, attempt, outcome)
        if delay is None:
            if isinstance(outcome, httpx.Response):
                raise error_for_response(outcome)
            raise connection_error(outcome, config) from outcome
        attempt += 1
        yield Sleep(delay)
