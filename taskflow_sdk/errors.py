"""Every exception the SDK raises, under one root.

::

    TaskflowError
    ├── APIConnectionError             the server could not be reached (or the connection broke)
    │   └── APITimeoutError            no answer within the timeout
    ├── APIStatusError                 the server answered with a 4xx or 5xx
    │   ├── BadRequestError            400
    │   ├── AuthenticationError        401  (missing or wrong token)
    │   ├── PermissionDeniedError      403
    │   ├── NotFoundError              404
    │   │   └── HistoryDisabledError   404 from a history route: the server has no
    │   │                              TASKFLOW_DATABASE_URL (history is off)
    │   ├── ConflictError              409
    │   ├── PayloadTooLargeError       413
    │   ├── UnprocessableEntityError   422  (invalid input: ``detail`` says what to fix)
    │   ├── RateLimitError             429
    │   └── InternalServerError        5xx
    │       └── ServiceUnavailableError 503 (e.g. the server's Redis does not answer)
    ├── TaskTimeout                    ``wait()`` ran out of time; ``.pending`` lists the tasks
    ├── TaskFailed                     ``wait(raise_on_failure=True)`` saw a task end badly
    └── FileChangedError               a batch's file changed between hashing and upload
                                       (also a ``ValueError``)

Transport and status errors carry ``request`` (and status errors ``response``, ``status_code``,
``body`` and ``detail``). :func:`error_for_response` is the one place that maps a status code to
its class. An answer that is not JSON comes from something else than an AsyncTaskFlow server (a
wrong base URL, a proxy's error page): its error says so, without the page
(:func:`foreign_answer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from taskflow_sdk.models import Task

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "HistoryDisabledError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "TaskFailed",
    "TaskTimeout",
    "TaskflowError",
    "UnprocessableEntityError",
    "error_for_response",
    "foreign_answer",
]

BODY_KEPT = 200
"""How many characters of a foreign (non-JSON) error body an error keeps in ``body``."""


class TaskflowError(Exception):
    """The root of every error the SDK raises."""


class APIConnectionError(TaskflowError):
    """The request did not get an answer: refused, reset, DNS failure, broken stream.

    Attributes:
        request: the request that failed (``None`` when it was never built).
    """

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APITimeoutError(APIConnectionError):
    """The server did not answer within the timeout."""


def _detail_text(body: Any) -> str | None:
    """The human message of an error body: ``detail`` as a string, or a 422 list joined."""
    if not isinstance(body, dict):
        return body.strip() or None if isinstance(body, str) else None
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts: list[str] = []
        for issue in detail:
            if isinstance(issue, dict):
                loc = ".".join(str(p) for p in issue.get("loc", []) if p != "body")
                msg = str(issue.get("msg", issue))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(issue))
        return "; ".join(parts) or None
    return None if detail is None else str(detail)


class APIStatusError(TaskflowError):
    """The server answered with an error status.

    Attributes:
        request: the request sent.
        response: the response received.
        status_code: its HTTP status.
        body: the decoded JSON body (or the text when it is not JSON, or ``None``).
        detail: the server's explanation (``detail`` of the body), ready to show a user.
    """

    def __init__(self, message: str, *, response: httpx.Response, body: Any) -> None:
        super().__init__(message)
        self.message = message
        self.response = response
        self.request = response.request
        self.status_code = response.status_code
        self.body = body
        self.detail = _detail_text(body)


class BadRequestError(APIStatusError):
    """400: the request is not acceptable (e.g. not a PDF, retry of a task that has not failed)."""


class AuthenticationError(APIStatusError):
    """401: the bearer token is missing or wrong (set ``token=`` or ``TASKFLOW_API_TOKEN``)."""


class PermissionDeniedError(APIStatusError):
    """403: the token is valid but the operation is not allowed."""


class NotFoundError(APIStatusError):
    """404: no such task (or route)."""


class HistoryDisabledError(NotFoundError):
    """404 from ``history()`` / ``history_stats()``: the server records no history. Set
    ``TASKFLOW_DATABASE_URL=postgresql://...`` on the server (or start it with
    ``--database-url``) and restart it; ``detail`` says the same."""


HISTORY_HEADER = "x-taskflow-history"
"""The header a server without history sets (to ``off``) on its history routes' 404."""


class ConflictError(APIStatusError):
    """409: the task's state does not allow it (e.g. cancelling a finished task)."""


class PayloadTooLargeError(APIStatusError):
    """413: the body or upload is over the server's limit."""


class UnprocessableEntityError(APIStatusError):
    """422: invalid input; ``detail`` names the field and the problem."""


class RateLimitError(APIStatusError):
    """429: too many requests; retried automatically for idempotent calls."""


class InternalServerError(APIStatusError):
    """5xx: the server failed; retried automatically for idempotent calls."""


class ServiceUnavailableError(InternalServerError):
    """503: the server cannot serve now (typically its Redis does not answer)."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def _decode_body(response: httpx.Response) -> Any:
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return None
    if not content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _media_type(response: httpx.Response) -> str:
    """The response's media type, lower case, without parameters (``""`` when not said)."""
    header: str = response.headers.get("content-type", "")
    return header.split(";", 1)[0].strip().lower()


def _base_url(request: httpx.Request) -> str:
    """The base URL a request was sent under: its URL up to the API prefix (or ``/health``)."""
    path = request.url.path
    for marker in ("/api/", "/health"):
        at = path.find(marker)
        if at >= 0:
            path = path[:at]
            break
    return str(request.url.copy_with(path=path or "/", query=None)).rstrip("/")


def foreign_answer(response: httpx.Response) -> str | None:
    """``no AsyncTaskFlow server at <base_url> (it answered <status> <type>)`` when the
    response is not what an AsyncTaskFlow server sends (its answers with a body are always
    JSON: ``application/json``, ``application/problem+json``); ``None`` when it is.

    A body with no content type counts as foreign too; an empty body without one does not
    (e.g. the answer to ``HEAD``)."""
    media = _media_type(response)
    if media == "application/json" or media.endswith("+json"):
        return None
    if not media:
        try:
            if not response.content:
                return None
        except httpx.ResponseNotRead:
            return None
    said = f"{response.status_code} {media}" if media else f"{response.status_code}"
    return f"no AsyncTaskFlow server at {_base_url(response.request)} (it answered {said})"


def error_for_response(response: httpx.Response) -> APIStatusError:
    """The exception for an error ``response``: the one status -> class mapping of the SDK.

    When the answer is not JSON (see :func:`foreign_answer`), the message says there is no
    AsyncTaskFlow server at the base URL and leaves the body out of it (``body`` keeps its
    first :data:`BODY_KEPT` characters; ``detail`` is ``None``)."""
    status = response.status_code
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    if status == 404 and response.headers.get(HISTORY_HEADER, "").lower() == "off":
        cls = HistoryDisabledError
    foreign = foreign_answer(response)
    if foreign is not None:
        body = _decode_body(response)
        kept = body[:BODY_KEPT] if isinstance(body, str) else None
        error = cls(foreign, response=response, body=kept)
        error.detail = None
        return error
    body = _decode_body(response)
    detail = _detail_text(body)
    request = response.request
    message = f"{request.method} {request.url.path} -> {status}"
    if detail:
        message += f": {detail}"
    return cls(message, response=response, body=body)


class TaskTimeout(TaskflowError):
    """``wait()`` ran out of time before every task finished.

    Attributes:
        timeout: the time allowed, in seconds.
        pending: the tasks (as last seen) that had not finished.
        done: the tasks that had finished.
    """

    def __init__(self, timeout: float, pending: Sequence[Task], done: Sequence[Task] = ()) -> None:
        states = ", ".join(f"{t.task_id} {t.state}" for t in list(pending)[:5])
        more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        super().__init__(
            f"{len(pending)} task(s) still unfinished after {timeout:g} s: {states}{more}"
        )
        self.timeout = timeout
        self.pending = list(pending)
        self.done = list(done)


class TaskFailed(TaskflowError):
    """A waited-for task ended in DLQ, FAILED or CANCELLED (with ``raise_on_failure=True``).

    Attributes:
        task: the task as it ended (``error_type`` and ``last_error`` say why).
    """

    def __init__(self, task: Task) -> None:
        reason = f"{task.error_type}: {task.last_error}" if task.error_type else task.last_error
        super().__init__(
            f"task {task.task_id} ended {task.state}" + (f" ({reason})" if reason else "")
        )
        self.task = task


class FileChangedError(TaskflowError, ValueError):
    """A file no longer has the content it had when it was hashed: its sha256 names the task
    and its idempotency key, so sending other bytes under it would be wrong. Submit it again."""
