"""Exception handlers: every error is JSON ``{"detail": ...}``, and none shows a traceback.

Store errors map to their HTTP meaning (unknown task -> 404, a transition the state does not allow
-> 409); a Redis that does not answer is a 503 with ``Retry-After``; anything unexpected is a 500
whose body says only where to look (the server log, by request id). Validation errors keep
FastAPI's 422 shape (a list of ``{loc, msg, type}``).
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from taskflow_server.store.queue import InvalidTransition, TaskNotFound

log = logging.getLogger(__name__)


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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    ref = uuid.uuid4().hex[:12]
    log.error("unhandled error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": f"internal error (reference {ref}); the server log has the details"},
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(TaskNotFound, _not_found)
    app.add_exception_handler(InvalidTransition, _conflict)
    app.add_exception_handler(RedisError, _store_down)
    app.add_exception_handler(ConnectionError, _store_down)
    app.add_exception_handler(Exception, _unexpected)
