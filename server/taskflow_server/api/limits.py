"""Request body limits: a pure ASGI middleware that answers 413 before reading too much.

A request whose ``Content-Length`` is over the limit is refused before its body is read. A body
sent without a length (chunked) is counted as it streams in, and reading stops at the first byte
over the limit: the route sees a 413 ``HTTPException`` from ``receive`` and answers with JSON. The
limit is ``max_body_bytes`` everywhere except on upload routes, which get ``max_upload_bytes``
plus room for the multipart framing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_OVERHEAD = 64 * 1024
"""Bytes allowed on top of the upload limit for multipart boundaries and small form fields."""

DRAIN_BYTES = 16 * 1024 * 1024
"""Before a 413, read and discard up to this much of the rest of the body, so that an HTTP/1.1
client still sending gets the answer instead of a reset connection; beyond it, close at once."""


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit (FastAPI re-raises HTTPExceptions)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit), headers={"Connection": "close"})


def too_large_message(limit: int) -> str:
    """The 413 detail: the limit and the setting that raises it."""
    return (
        f"request body too large: the limit here is {limit} bytes "
        "(TASKFLOW_MAX_BODY_BYTES, or TASKFLOW_MAX_UPLOAD_BYTES for uploads)"
    )


class BodyLimitMiddleware:
    """Refuse bodies over ``max_body_bytes`` (or the per-path ``overrides``) with a JSON 413.

    Args:
        app: the wrapped ASGI app.
        max_body_bytes: the default limit.
        overrides: exact paths (without a trailing slash) with their own limit.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, overrides: Mapping[str, int]):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.overrides = dict(overrides)

    def limit_for(self, path: str) -> int:
        """The body limit of ``path``."""
        return self.overrides.get(path.rstrip("/") or "/", self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            if declared <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES)
            await _send_413(send, limit)
            return

        received = 0
        started = False
        overflowed = False
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    overflowed = True
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if overflowed and not body_done:
                    await _drain(receive, DRAIN_BYTES - received)
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Only reached when no exception handler turned it into a response.
            if started:
                raise
            if not body_done:
                await _drain(receive, DRAIN_BYTES - received)
            await _send_413(send, limit)


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the body, up to ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": too_large_message(limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
