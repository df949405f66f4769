"""The one Server-Sent Events decoder of the SDK (no I/O).

It follows the WHATWG event-stream rules: lines end with ``\\n``, ``\\r\\n`` or ``\\r``; a line
starting with ``:`` is a comment (ignored); ``field: value`` lines set ``data`` (joined with
``\\n`` over several lines), ``event``, ``id`` (ignored when it contains NUL) and ``retry``
(digits only); a blank line dispatches the event when it has data. The last ``id`` seen is kept in
:attr:`SSEDecoder.last_event_id` even for frames without data, as browsers do, so a reconnect can
send it as ``Last-Event-ID``.

Feed it bytes as they arrive (:meth:`SSEDecoder.feed`) or whole lines (:meth:`SSEDecoder.line`).
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: ``data`` (lines joined), ``event`` (default ``message``), ``id``
    (the last id seen, possibly from an earlier frame) and ``retry`` (ms, when this frame set
    it)."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """``data`` decoded as JSON."""
        return json.loads(self.data)


class SSEDecoder:
    """Incremental decoder: bytes or lines in, :class:`ServerSentEvent` out."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        """The last ``id`` field seen (what to send as ``Last-Event-ID`` on reconnect)."""
        self.retry: int | None = None
        """The last reconnection delay the server asked for, in milliseconds."""
        self._data: list[str] = []
        self._event = ""
        self._frame_retry: int | None = None
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._skip_lf = False
        self._first = True

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode a chunk of the stream; returns the events it completed."""
        text = self._text.decode(chunk)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        out: list[ServerSentEvent] = []
        start = 0
        i = 0
        if self._skip_lf and text.startswith("\n"):
            start = i = 1
        self._skip_lf = False
        while i < len(text):
            ch = text[i]
            if ch == "\n" or ch == "\r":
                line = self._pending + text[start:i]
                self._pending = ""
                event = self.line(line)
                if event is not None:
                    out.append(event)
                if ch == "\r":
                    if i + 1 < len(text):
                        if text[i + 1] == "\n":
                            i += 1
                    else:
                        self._skip_lf = True
                start = i + 1
            i += 1
        self._pending += text[start:]
        return out

    def line(self, line: str) -> ServerSentEvent | None:
        """Process one line (without its terminator); returns an event on a blank line."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = self._frame_retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._frame_retry
        self._data, self._event, self._frame_retry = [], "", None
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data), event=event or "message", id=self.last_event_id, retry=retry
        )

    def reset(self) -> None:
        """Forget a half-received frame (the connection dropped); ``last_event_id`` stays."""
        self._data, self._event, self._frame_retry = [], "", None
        self._text.reset()
        self._pending = ""
        self._skip_lf = False
        self._first = True
