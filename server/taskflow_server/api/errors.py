"""Exception handlers: every error is JSON ``{"detail": ...}``, and none shows a traceback.

Store errors map to their HTTP meaning (unknown task -> 404, a transition the state does not allow
-> 409); a Redis that does not answer is a 503 with ``Retry-After``; anything unexpected is a 500
whose body says only where to look (the server log, by request id). Validation errors keep
FastAPI's 422 shape (a list of ``{loc, msg, type}``), but list at most
:data:`~taskflow_server.api.body.MAX_LISTED` errors (then one entry counting the rest) and echo
at most :data:`INPUT_CHARS` characters of each bad input, so no 422 is ever large. Every
``detail`` is made sendable as UTF-8 JSON (no lone surrogate, no NaN) and cut to
:data:`DETAIL_CHARS` characters.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from taskflow_server.api.body import MAX_LISTED, printable_text
from taskflow_server.history.queries import HistoryDown, InvalidHistoryQuery
from taskflow_server.store.queue import InvalidTransitionError, TaskNotFoundError

log = logging.getLogger(__name__)

INPUT_CHARS = 200
"""The most characters of a bad input a 422 echoes (longer inputs are cut, with a ``…``)."""

DETAIL_CHARS = 4000
"""The most characters of a string ``detail``."""


def sendable(value: Any, depth: int = 0) -> Any:
    """``value`` made safe for a JSON response: no lone surrogates, no NaN, bounded depth."""
    if isinstance(value, str):
        return printable_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, bool | int):
        return value
    if depth > 20:
        return "…"
    if isinstance(value, dict):
        return {str(printable_text(str(k))): sendable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sendable(v, depth + 1) for v in value]
    return printable_text(str(value))


def _short_input(value: Any) -> Any:
    """A bad input as a 422 shows it: as is when small, else the start of its JSON text."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError, TypeError):
        return "(not shown: too large or not JSON)"
    if len(text) <= INPUT_CHARS:
        return value
    return text[:INPUT_CHARS] + "…"


def capped_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """The first :data:`MAX_LISTED` validation errors, each small, plus a count of the rest."""
    shown: list[dict[str, Any]] = []
    for error in errors[:MAX_LISTED]:
        issue = dict(error)
        if "input" in issue:
            issue["input"] = _short_input(issue["input"])
        issue.pop("url", None)
        shown.append(sendable(jsonable_encoder(issue)))
    if len(errors) > MAX_LISTED:
        shown.append(
            {
                "loc": ["body"],
                "msg": f"and {len(errors) - MAX_LISTED} more error(s) (only the first "
                f"{MAX_LISTED} are listed): fix these and send again",
                "type": "too_many_errors",
            }
        )
    return shown


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": capped_errors(list(exc.errors()))}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if isinstance(detail, str):
        cleaned = printable_text(detail) or ""
        if len(cleaned) > DETAIL_CHARS:
            cleaned = cleaned[:DETAIL_CHARS] + "…"
        if cleaned != detail:
            exc = StarletteHTTPException(exc.status_code, cleaned, headers=exc.headers)
    elif isinstance(detail, list):
        exc = StarletteHTTPException(exc.status_code, headers=exc.headers)
        exc.detail = capped_errors(detail)  # type: ignore[assignment]
    return await http_exception_handler(request, exc)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    task_id = getattr(exc, "task_id", "?")
    return JSONResponse({"detail": f"task {task_id} not found"}, status_code=404)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _store_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: the store did not answer: %r", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the task store (Redis) did not answer; try again shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


HISTORY_RETRY_AFTER = "5"
"""Seconds a client should wait after a 503 of the history."""


async def _history_query(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)  # the message says what to fix


async def _history_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc)}, status_code=503, headers={"Retry-After": HISTORY_RETRY_AFTER}
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    ref = uuid.uuid4().hex[:12]
    log.error("unhandled error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": f"internal error (reference {ref}); the server log has the details"},
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(TaskNotFoundError, _not_found)
    app.add_exception_handler(InvalidTransitionError, _conflict)
    app.add_exception_handler(InvalidHistoryQuery, _history_query)
    app.add_exception_handler(HistoryDown, _history_down)
    app.add_exception_handler(RedisError, _store_down)
    app.add_exception_handler(ConnectionError, _store_down)
    app.add_exception_handler(Exception, _unexpected)
