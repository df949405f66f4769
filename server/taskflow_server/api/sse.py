"""Server-Sent Events: frame encoding and a streaming response that ends cleanly.

A frame is ``id:`` (optional), ``event:`` (optional), one ``data:`` line per line of the payload,
then a blank line. Heartbeats are comment lines (``: ping``), which every client ignores.
:class:`EventStreamResponse` also watches for the client going away, whatever the ASGI version,
so a stream stops at once instead of at its next write.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS: dict[str, str] = {
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}
"""Headers every event stream sends (no proxy buffering). No ``Access-Control-Allow-Origin``:
the CORS middleware adds it for origins in ``TASKFLOW_CORS_ORIGINS`` only."""

HEARTBEAT_SECONDS = 15.0
"""The longest a stream stays silent: proxies drop idle connections after about 60 s."""


def encode_json(data: Any) -> str:
    """Compact JSON for a ``data:`` line (non-JSON values become strings)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def sse_frame(
    data: Any,
    *,
    event: str | None = None,
    event_id: str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One SSE frame. ``data`` is sent as is when a string, else as JSON."""
    text = data if isinstance(data, str) else encode_json(data)
    lines: list[str] = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def sse_comment(text: str = "ping") -> bytes:
    """A comment frame (a heartbeat): ignored by clients, keeps proxies from timing out."""
    return f": {text}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that stops as soon as the client disconnects."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterable[bytes],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, status_code, headers={**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the body while a second task waits for ``http.disconnect``."""
        async with anyio.create_task_group() as tg:

            async def stream() -> None:
                try:
                    await self.stream_response(send)
                except OSError:  # the client went away mid-write
                    pass
                finally:
                    closer = getattr(self.body_iterator, "aclose", None)
                    if closer is not None:
                        with anyio.CancelScope(shield=True):
                            await closer()
                tg.cancel_scope.cancel()

            async def watch() -> None:
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()

            tg.start_soon(stream)
            tg.start_soon(watch)
