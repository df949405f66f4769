"""Everything both clients share, with no I/O: configuration, request building, parsing, the
status -> error call, the retry decision and the wait/poll logic.

Each operation is a *flow*: a generator that yields actions and receives their outcomes.

* ``Send(spec)`` -> the client sends the request and sends back the ``httpx.Response`` (body
  read) or the ``httpx.TransportError`` it raised;
* ``Sleep(seconds)`` -> the client sleeps (``time.sleep`` or ``asyncio.sleep``), sends ``None``;
* ``Gather(flows)`` -> the client runs the sub-flows (one after the other, or concurrently) and
  sends back their results, an exception object in place of a result that raised.

A flow's return value is the operation's result; its exceptions are the operation's errors. So
retries, backoff, pagination and polling are written once, here, and :class:`~.client.Client`
and :class:`~.async_client.AsyncClient` only drive flows with their own transport.
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, TypeAdapter

from taskflow_sdk.errors import (
    APIConnectionError,
    APITimeoutError,
    TaskFailed,
    TaskflowError,
    TaskTimeout,
    error_for_response,
)
from taskflow_sdk.models import (
    BatchItem,
    BatchSubmitResult,
    BreakerStatus,
    Budget,
    Health,
    Metrics,
    OpenRouterStatus,
    QueueStatus,
    RequeueReport,
    Task,
    TaskList,
    TaskState,
    WorkerList,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_URL", "USE_CLIENT_DEFAULT", "UseClientDefault"]

ENV_URL = "TASKFLOW_URL"
ENV_TOKEN = "TASKFLOW_API_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"
"""Where the SDK looks for the server when neither ``base_url`` nor ``TASKFLOW_URL`` says."""
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""Per-request timeout unless the client or the call says otherwise."""
DEFAULT_MAX_RETRIES = 2
"""Automatic retries of an idempotent request after a connection error, a 429 or a 5xx."""
DEFAULT_POLL_INTERVAL = 0.5
"""The longest pause between two polls in ``wait()`` (polling starts faster and slows down)."""
FIRST_POLL_INTERVAL = 0.02
BATCH_CHUNK = 1000
"""Items per ``POST /api/v1/tasks/batch`` request in ``submit_many``."""
API = "/api/v1"


class UseClientDefault:
    """Type of :data:`USE_CLIENT_DEFAULT`: "use the client's setting" for a per-call option,
    so that ``timeout=None`` can still mean "no timeout"."""

    _instance: UseClientDefault | None = None

    def __new__(cls) -> UseClientDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"

    def __bool__(self) -> bool:
        return False


USE_CLIENT_DEFAULT = UseClientDefault()
"""Per-call ``timeout=`` default: use the client's timeout."""

TimeoutTypes = float | httpx.Timeout | None
Timeout = TimeoutTypes | UseClientDefault
"""What a ``timeout=`` argument accepts: seconds, an ``httpx.Timeout``, ``None`` (no limit) or
:data:`USE_CLIENT_DEFAULT`."""


# --------------------------------------------------------------------------- configuration


_SECRET_QUERY = re.compile(r"([?&](?:token|access_token|api_token)=)[^&#]*", re.IGNORECASE)


def safe_url(url: str) -> str:
    """``url`` fit to show: a password in it and ``token`` query values become ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _SECRET_QUERY.sub(r"\1***", url)
    if password:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{netloc[1]}")
    return _SECRET_QUERY.sub(r"\1***", urlunsplit(parts))


@dataclass(frozen=True)
class ClientConfig:
    """Resolved client settings (see :func:`resolve_config`).

    The token is kept out of ``repr``/``str`` (shown as ``'***'``), and so out of tracebacks
    and logs that print the config.
    """

    base_url: str
    token: str | None = field(repr=False)
    timeout: httpx.Timeout
    max_retries: int
    backoff_initial: float = 0.25
    backoff_max: float = 8.0
    retry_after_max: float = 60.0

    def __repr__(self) -> str:
        token = None if self.token is None else "***"
        return (
            f"ClientConfig(base_url={safe_url(self.base_url)!r}, token={token!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r}, "
            f"backoff_initial={self.backoff_initial!r}, backoff_max={self.backoff_max!r}, "
            f"retry_after_max={self.retry_after_max!r})"
        )

    __str__ = __repr__

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return self.base_url + path

    def headers(self) -> dict[str, str]:
        """Headers every request carries."""
        out = {"Accept": "application/json", "User-Agent": f"taskflow-sdk/{_version()}"}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out

    def timeout_for(self, timeout: Timeout) -> httpx.Timeout:
        """The timeout of one call: its own, or the client's."""
        if isinstance(timeout, UseClientDefault):
            return self.timeout
        if isinstance(timeout, httpx.Timeout):
            return timeout
        return httpx.Timeout(timeout)


def _version() -> str:
    from taskflow_sdk import __version__

    return __version__


def resolve_config(
    base_url: str | None,
    token: str | None,
    timeout: TimeoutTypes,
    max_retries: int,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Settings from arguments, else the environment (``TASKFLOW_URL``, ``TASKFLOW_API_TOKEN``),
    else the defaults."""
    environ = os.environ if env is None else env
    url = base_url or environ.get(ENV_URL) or DEFAULT_URL
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    return ClientConfig(
        base_url=url,
        token=token if token is not None else (environ.get(ENV_TOKEN) or None),
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        max_retries=max_retries,
    )


def new_idempotency_key() -> str:
    """A fresh key for one submit call (reused by that call's retries)."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- flows


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, transport-neutral.

    ``idempotent``: whether sending it twice is harmless, so it may be retried after a 5xx, a
    429 or a broken connection (a connection that was refused is retried for any request).
    ``accept_statuses``: error statuses that are an answer, not an error (a 404 to a HEAD that
    asks whether something exists).
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, Any] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: Timeout = USE_CLIENT_DEFAULT
    idempotent: bool = True
    accept_statuses: tuple[int, ...] = ()

    def build_kwargs(self, config: ClientConfig) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.build_request`` (either client)."""
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
            kwargs["files"] = dict(self.files)
        return kwargs


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


Action = Send | Sleep | Gather
Flow = Generator[Action, Any, T]
"""A generator of actions whose return value is the operation's result."""


def gather_flow(flows: Sequence[Flow[Any]]) -> Flow[list[Any]]:
    """A flow that runs ``flows`` (see :class:`Gather`) and returns their results."""
    results: list[Any] = yield Gather(flows)
    return results


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


# --------------------------------------------------------------------------- parsing


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise TaskflowError(
            f"{response.request.method} {response.request.url.path}: the server answered "
            f"{response.status_code} with a body that is not JSON"
        ) from exc


def parser(model: type[M]) -> Callable[[httpx.Response], M]:
    """A response parser into ``model``."""

    def parse(response: httpx.Response) -> M:
        return model.model_validate(_json(response))

    return parse


_TASKS = TypeAdapter(list[Task])


_IDS = TypeAdapter(list[str])


def parse_ids(response: httpx.Response) -> list[str]:
    """A JSON list of task ids."""
    return _IDS.validate_python(_json(response))


def parse_task_list(response: httpx.Response) -> TaskList:
    """A page (``{tasks, page, ...}``) or a bare list of tasks (the DLQ route)."""
    data = _json(response)
    if isinstance(data, list):
        tasks = _TASKS.validate_python(data)
        n = len(tasks)
        return TaskList(tasks=tasks, page=1, page_size=n, total_items=n, total_pages=1 if n else 0)
    return TaskList.model_validate(data)


def parse_breaker(response: httpx.Response) -> BreakerStatus:
    """The breaker from an action's answer (``breaker``) or the workers view."""
    data = _json(response)
    breaker = data.get("breaker") if isinstance(data, dict) else None
    if breaker is None and isinstance(data, dict):
        breaker = data.get("circuit_breaker", data)
    status = BreakerStatus.model_validate(breaker or {})
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        status.message = data["message"]
    return status


# --------------------------------------------------------------------------- requests


def _iso(value: datetime | date | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    return value.isoformat()


def _submit_body(
    task_type: str,
    payload: Mapping[str, Any] | None,
    priority: str | None,
    max_retries: int | None,
    idempotency_key: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_type": task_type,
        "payload": dict(payload or {}),
        "idempotency_key": idempotency_key or new_idempotency_key(),
    }
    if priority is not None:
        body["priority"] = priority
    if max_retries is not None:
        body["max_retries"] = max_retries
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body


LOOKUP_MAX = 500
"""Task ids per ``POST /api/v1/tasks/lookup`` request (the server takes up to 1,000)."""


def _lookup(response: httpx.Response) -> tuple[list[Task], list[str]]:
    data = _json(response)
    return _TASKS.validate_python(data.get("tasks", [])), [str(i) for i in data.get("missing", [])]


def _created(response: httpx.Response) -> Task:
    return Task.model_validate(_json(response))


@dataclass(frozen=True)
class ListQuery:
    """Filters of ``list()``; builds each page's query string."""

    state: str | None = None
    task_type: str | None = None
    since: str | None = None
    until: str | None = None
    id_prefix: str | None = None
    sort_by: str = "created_at"
    sort_order: str = "desc"
    page_size: int = 100
    limit: int | None = None

    @classmethod
    def make(
        cls,
        *,
        state: TaskState | str | None,
        task_type: str | None,
        since: datetime | date | str | None,
        until: datetime | date | str | None,
        id_prefix: str | None,
        sort: str,
        page_size: int,
        limit: int | None,
    ) -> ListQuery:
        """Validate and normalise the arguments of ``list()``."""
        order = "desc" if sort.startswith("-") else "asc"
        name = sort.lstrip("-+") or "created_at"
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        return cls(
            state=str(TaskState(str(state).upper())) if state is not None else None,
            task_type=task_type,
            since=_iso(since),
            until=_iso(until),
            id_prefix=id_prefix or None,
            sort_by=name,
            sort_order=order,
            page_size=page_size,
            limit=limit,
        )

    def params(self, page: int) -> dict[str, Any]:
        """The query string of page ``page`` (1-based)."""
        return {
            "task_status": self.state,
            "task_type": self.task_type,
            "start_date": self.since,
            "end_date": self.until,
            "task_id": self.id_prefix,
            "sort_by": self.sort_by,
            "sort_order": self.sort_order,
            "page": page,
            "page_size": self.page_size,
        }

    def keep(self, task: Task) -> bool:
        """Whether a listed task matches (the server matches id substrings; this keeps only
        prefixes)."""
        return self.id_prefix is None or task.task_id.startswith(self.id_prefix)


class Requests:
    """Builds the flow of every API operation for one :class:`ClientConfig`."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config

    def _flow(self, spec: RequestSpec, parse: Callable[[httpx.Response], T]) -> Flow[T]:
        return request_flow(self.config, spec, parse)

    # submit ---------------------------------------------------------------------------

    def submit(
        self,
        task_type: str,
        payload: Mapping[str, Any] | None,
        *,
        priority: str | None,
        max_retries: int | None,
        idempotency_key: str | None,
        metadata: Mapping[str, Any] | None,
        timeout: Timeout,
    ) -> Flow[Task]:
        """``POST /api/v1/tasks``; the idempotency key (given or new) makes it retriable."""
        body = _submit_body(task_type, payload, priority, max_retries, idempotency_key, metadata)
        return self._flow(RequestSpec("POST", f"{API}/tasks", json=body, timeout=timeout), _created)

    def submit_many(
        self, items: Iterable[Mapping[str, Any]], *, timeout: Timeout
    ) -> Flow[BatchSubmitResult]:
        """``POST /api/v1/tasks/batch`` in chunks of :data:`BATCH_CHUNK`; one merged answer."""
        bodies = [_batch_item(item) for item in items]
        merged = BatchSubmitResult()
        details: list[str] = []
        for start in range(0, len(bodies), BATCH_CHUNK):
            chunk = bodies[start : start + BATCH_CHUNK]
            spec = RequestSpec("POST", f"{API}/tasks/batch", json={"tasks": chunk}, timeout=timeout)
            part = yield from self._flow(spec, parser(BatchSubmitResult))
            merged.accepted += part.accepted
            merged.failed += part.failed
            merged.created += part.created
            for item in part.items:
                merged.items.append(
                    BatchItem.model_validate({**item.model_dump(), "index": item.index + start})
                )
            if part.detail:
                details.append(part.detail)
        if merged.failed:
            merged.detail = f"{merged.failed} of {len(bodies)} items were refused"
        return merged

    def summarize(
        self,
        text: str,
        *,
        options: Mapping[str, Any],
        priority: str | None,
        max_retries: int | None,
        idempotency_key: str | None,
        metadata: Mapping[str, Any] | None,
        timeout: Timeout,
    ) -> Flow[Task]:
        """A summarize task: ``payload = {content: text, **options}``."""
        payload = {"content": text, **{k: v for k, v in options.items() if v is not None}}
        return self.submit(
            "summarize",
            payload,
            priority=priority,
            max_retries=max_retries,
            idempotency_key=idempotency_key,
            metadata=metadata,
            timeout=timeout,
        )

    def extract_pdf(
        self,
        upload: Upload,
        *,
        issue_date: str | None,
        priority: str | None,
        max_retries: int | None,
        idempotency_key: str | None,
        timeout: Timeout,
    ) -> Flow[Task]:
        """A pdfxtract task that uploads the file only when the server does not hold it yet.

        ``HEAD /api/v1/blobs/{sha256}`` first: when the server holds the file, a submit that
        references it by sha256; otherwise the upload with ``POST /api/v1/tasks/pdfxtract``.
        The idempotency key is the same either way, so the result is one task.
        """
        key = idempotency_key or new_idempotency_key()
        payload: dict[str, Any] = {"blob": upload.sha256, "filename": upload.filename}
        if issue_date:
            payload["issue_date"] = issue_date
        held = RequestSpec(
            "HEAD", f"{API}/blobs/{upload.sha256}", timeout=timeout, accept_statuses=(404,)
        )
        if (yield from self._flow(held, lambda r: r.status_code == 200)):
            return (
                yield from self.submit(
                    "pdfxtract",
                    payload,
                    priority=priority,
                    max_retries=max_retries,
                    idempotency_key=key,
                    metadata=None,
                    timeout=timeout,
                )
            )
        form: dict[str, Any] = {"idempotency_key": key}
        if issue_date:
            form["issue_date"] = issue_date
        if priority is not None:
            form["priority"] = priority
        if max_retries is not None:
            form["max_retries"] = str(max_retries)
        spec = RequestSpec(
            "POST",
            f"{API}/tasks/pdfxtract",
            data=form,
            files={"file": (upload.filename, upload.data, "application/pdf")},
            timeout=timeout,
        )
        return (yield from self._flow(spec, _created))

    # one task ---------------------------------------------------------------------------

    def get(self, task_id: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Flow[Task]:
        """``GET /api/v1/tasks/{id}``."""
        spec = RequestSpec("GET", f"{API}/tasks/{_id(task_id)}", timeout=timeout)
        return self._flow(spec, parser(Task))

    def lookup(
        self, task_ids: Sequence[str], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Flow[list[Task]]:
        """``POST /api/v1/tasks/lookup``: many tasks in one request (at most :data:`LOOKUP_MAX`).

        Answers the tasks found; an id the server does not know is fetched alone, so it raises
        the usual :class:`~taskflow_sdk.errors.NotFoundError`.
        """
        spec = RequestSpec(
            "POST", f"{API}/tasks/lookup", json={"task_ids": list(task_ids)}, timeout=timeout
        )
        found = yield from self._flow(spec, _lookup)
        tasks, missing = found
        for task_id in missing:
            tasks.append((yield from self.get(task_id, timeout=timeout)))
        return tasks

    def cancel(self, task_id: str, *, timeout: Timeout) -> Flow[Task]:
        """``POST .../{id}/cancel``: the task's state after it (CANCELLED, or ACTIVE with
        ``cancel_requested``)."""
        spec = RequestSpec(
            "POST", f"{API}/tasks/{_id(task_id)}/cancel", timeout=timeout, idempotent=False
        )
        return (yield from self._flow(spec, parser(Task)))

    def retry(self, task_id: str, *, reset_retry_count: bool, timeout: Timeout) -> Flow[Task]:
        """``POST .../{id}/retry``: the task as requeued (PENDING, its retry count)."""
        spec = RequestSpec(
            "POST",
            f"{API}/tasks/{_id(task_id)}/retry",
            json={"reset_retry_count": reset_retry_count},
            timeout=timeout,
            idempotent=False,
        )
        return (yield from self._flow(spec, parser(Task)))

    def delete(self, task_id: str, *, timeout: Timeout) -> Flow[None]:
        """``DELETE /api/v1/tasks/{id}``."""
        spec = RequestSpec("DELETE", f"{API}/tasks/{_id(task_id)}", timeout=timeout)
        yield from self._flow(spec, _json)
        return None

    # collections ---------------------------------------------------------------------------

    def list_page(self, query: ListQuery, page: int, *, timeout: Timeout) -> Flow[TaskList]:
        """One page of ``GET /api/v1/tasks/``."""
        spec = RequestSpec("GET", f"{API}/tasks", params=query.params(page), timeout=timeout)
        return self._flow(spec, parse_task_list)

    def dlq(self, limit: int, *, timeout: Timeout) -> Flow[TaskList]:
        """``GET /api/v1/queues/dlq?limit=``."""
        spec = RequestSpec("GET", f"{API}/queues/dlq", params={"limit": limit}, timeout=timeout)
        return self._flow(spec, parse_task_list)

    def queues(self, *, timeout: Timeout) -> Flow[QueueStatus]:
        """``GET /api/v1/queues/status``."""
        spec = RequestSpec("GET", f"{API}/queues/status", timeout=timeout)
        return self._flow(spec, parser(QueueStatus))

    def queue_tasks(self, name: str, limit: int, *, timeout: Timeout) -> Flow[list[str]]:
        """``GET /api/v1/queues/{name}/tasks?limit=``: ids in the order they will be taken."""
        spec = RequestSpec(
            "GET",
            f"{API}/queues/{quote(name, safe='')}/tasks",
            params={"limit": limit},
            timeout=timeout,
        )
        return self._flow(spec, parse_ids)

    def requeue_orphaned(self, *, timeout: Timeout) -> Flow[RequeueReport]:
        """``POST /api/v1/tasks/requeue-orphaned``."""
        spec = RequestSpec("POST", f"{API}/tasks/requeue-orphaned", timeout=timeout)
        return self._flow(spec, parser(RequeueReport))

    def workers(self, *, timeout: Timeout) -> Flow[WorkerList]:
        """``GET /api/v1/workers/``."""
        return self._flow(RequestSpec("GET", f"{API}/workers", timeout=timeout), parser(WorkerList))

    def breaker_status(self, *, timeout: Timeout) -> Flow[BreakerStatus]:
        """``GET /api/v1/workers/circuit-breaker``: the shared breaker."""
        spec = RequestSpec("GET", f"{API}/workers/circuit-breaker", timeout=timeout)
        return self._flow(spec, parse_breaker)

    def breaker_open(self, reason: str | None, *, timeout: Timeout) -> Flow[BreakerStatus]:
        """``POST /api/v1/workers/open-circuit-breaker`` (held open until reset)."""
        body = {"reason": reason} if reason else None
        spec = RequestSpec(
            "POST", f"{API}/workers/open-circuit-breaker", json=body, timeout=timeout
        )
        return self._flow(spec, parse_breaker)

    def breaker_reset(self, *, timeout: Timeout) -> Flow[BreakerStatus]:
        """``POST /api/v1/workers/reset-circuit-breaker``."""
        spec = RequestSpec("POST", f"{API}/workers/reset-circuit-breaker", timeout=timeout)
        return self._flow(spec, parse_breaker)

    def openrouter_status(self, force_refresh: bool, *, timeout: Timeout) -> Flow[OpenRouterStatus]:
        """``GET /api/v1/openrouter/status``."""
        params = {"force_refresh": "true"} if force_refresh else None
        spec = RequestSpec("GET", f"{API}/openrouter/status", params=params, timeout=timeout)
        return self._flow(spec, parser(OpenRouterStatus))

    def openrouter_budget(self, *, timeout: Timeout) -> Flow[Budget]:
        """``GET /api/v1/openrouter/budget``: the daily cap and today's spend."""
        spec = RequestSpec("GET", f"{API}/openrouter/budget", timeout=timeout)
        return self._flow(spec, parser(Budget))

    def openrouter_set_budget(self, daily_usd: float | None, *, timeout: Timeout) -> Flow[Budget]:
        """``PUT /api/v1/openrouter/budget`` ``{daily_usd}``: set the daily cap (``None``
        removes it); a budget hold lifts when the cap is raised above today's spend."""
        body = {"daily_usd": check_usd(daily_usd, "daily_usd")}
        spec = RequestSpec("PUT", f"{API}/openrouter/budget", json=body, timeout=timeout)
        return self._flow(spec, parser(Budget))

    def openrouter_metrics(self, days: int, *, timeout: Timeout) -> Flow[Metrics]:
        """``GET /api/v1/openrouter/metrics?days=``."""
        spec = RequestSpec(
            "GET", f"{API}/openrouter/metrics", params={"days": days}, timeout=timeout
        )
        return self._flow(spec, parser(Metrics))

    def health(self, *, timeout: Timeout) -> Flow[Health]:
        """``GET /health`` (no token needed)."""
        return self._flow(RequestSpec("GET", "/health", timeout=timeout), parser(Health))

    def events_spec(
        self, last_event_id: str | None, types: Sequence[str] | None, task_id: str | None
    ) -> RequestSpec:
        """The request of one connection to ``GET /api/v1/events`` (read timeout 60 s: the
        server sends a heartbeat every 15 s)."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        params = {"types": ",".join(types) if types else None, "task_id": task_id}
        return RequestSpec(
            "GET",
            f"{API}/events",
            params=params,
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout.connect or 10.0, read=60.0),
        )

    # waiting ---------------------------------------------------------------------------

    def wait(
        self,
        state: WaitState,
        *,
        poll_interval: float,
        on_progress: Callable[[], None] | None = None,
        after_round: Callable[[], Flow[None]] | None = None,
    ) -> Flow[list[Task]]:
        """Poll the unfinished tasks of ``state`` (all of them per round, through the lookup
        route) until every one has finished; ``state`` is updated as answers come and
        ``on_progress`` is called after each round.

        ``after_round`` (optional) makes a flow that runs after each round's answers are in
        and before the progress call: a batch's budget check, which may cancel tasks and record
        the answers in ``state``.

        Polling starts at :data:`FIRST_POLL_INTERVAL` and slows down by half each round up to
        ``poll_interval``, so short tasks return quickly and long ones cost few requests.
        """
        interval = min(FIRST_POLL_INTERVAL, poll_interval)
        while True:
            pending = state.pending
            chunks = [pending[i : i + LOOKUP_MAX] for i in range(0, len(pending), LOOKUP_MAX)]
            results = yield Gather([self.lookup(chunk) for chunk in chunks])
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                for task in result:
                    state.update(task)
            if after_round is not None:
                yield from after_round()
            if on_progress is not None:
                on_progress()
            if state.finished:
                return state.result()
            state.check_deadline()
            yield Sleep(state.clip(interval))
            interval = min(interval * 1.5, poll_interval)


def check_usd(value: float | None, name: str) -> float | None:
    """``value`` as a non-negative finite amount of USD, or ``None``; raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of USD or None, not {type(value).__name__}")
    amount = float(value)
    if not amount >= 0.0 or amount == float("inf"):
        raise ValueError(f"{name} must be a finite amount >= 0 (or None), not {value!r}")
    return amount


def _id(task_id: str) -> str:
    if not task_id or "/" in task_id:
        raise ValueError(f"not a task id: {task_id!r}")
    return task_id


def _batch_item(item: Mapping[str, Any]) -> dict[str, Any]:
    if "task_type" not in item:
        raise ValueError("every submit_many item needs a task_type")
    return _submit_body(
        str(item["task_type"]),
        item.get("payload"),
        item.get("priority"),
        item.get("max_retries"),
        item.get("idempotency_key"),
        item.get("metadata"),
    )


def task_id_of(task: Task | str) -> str:
    """The id of a task or an id."""
    return task.task_id if isinstance(task, Task) else str(task)


class WaitState:
    """What ``wait()`` knows: the latest view of each task, which are unfinished, the deadline.

    Shared by polling and by streaming waits.
    """

    def __init__(
        self,
        task_ids: Sequence[str],
        timeout: float | None,
        raise_on_failure: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.order = list(dict.fromkeys(task_ids))
        self.timeout = timeout
        self.raise_on_failure = raise_on_failure
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.latest: dict[str, Task] = {}
        self._pending = set(self.order)

    @property
    def pending(self) -> list[str]:
        """Ids not yet seen finished, in the caller's order."""
        return [i for i in self.order if i in self._pending]

    def is_pending(self, task_id: str | None) -> bool:
        """Whether ``task_id`` is one of the unfinished tasks."""
        return task_id in self._pending

    @property
    def finished(self) -> bool:
        """True when every task has finished."""
        return not self._pending

    def update(self, task: Task) -> None:
        """Record a fresh view of a task; raises :class:`TaskFailed` when asked to."""
        self.latest[task.task_id] = task
        if task.is_terminal:
            self._pending.discard(task.task_id)
            if self.raise_on_failure and task.state.is_failure:
                raise TaskFailed(task)

    def counts(self) -> dict[str, int]:
        """Tasks per state, as last seen (``UNKNOWN`` before the first answer)."""
        seen = [str(self.latest[i].state) if i in self.latest else "UNKNOWN" for i in self.order]
        return dict(Counter(seen))

    def done(self) -> int:
        """Tasks seen finished."""
        return len(self.order) - len(self._pending)

    def cost(self) -> float:
        """USD spent by the finished tasks seen so far (their ``result.usage.cost``)."""
        return sum((t.cost or 0.0) for t in self.latest.values() if t.is_terminal)

    def total(self) -> int:
        """Tasks waited for."""
        return len(self.order)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def clip(self, seconds: float) -> float:
        """``seconds``, shortened so as not to sleep past the deadline."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    def check_deadline(self) -> None:
        """Raise :class:`TaskTimeout` when the deadline has passed with tasks unfinished."""
        if self.deadline is not None and self._pending and self.clock() >= self.deadline:
            pending = [self.latest.get(i) or _unknown(i) for i in self.pending]
            done = [self.latest[i] for i in self.order if i not in self._pending]
            raise TaskTimeout(self.timeout or 0.0, pending, done)

    def result(self) -> list[Task]:
        """The tasks in the caller's order."""
        return [self.latest[i] for i in self.order]


def _unknown(task_id: str) -> Task:
    return Task(task_id=task_id, state=TaskState.PENDING)


@dataclass(frozen=True)
class Upload:
    """A file to upload: its name, bytes and sha256 (hex)."""

    filename: str
    data: bytes
    sha256: str
