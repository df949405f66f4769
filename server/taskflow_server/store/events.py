"""The event log: a capped Redis Stream every transition script appends to.

Each entry has an id (the stream id, ``<ms>-<seq>``), a ``type`` (``task_created``,
``task_state_changed``, ``task_progress``, ``task_deleted``, ``task_expired``,
``task_cancel_requested``, and ``breaker_state_changed`` from the circuit breaker's script), the
task id (none for breaker events), the new state and (for transitions) the old one, plus a few
type-specific fields. The event's time is the stream id's millisecond part (Redis time).
SSE streams serve these entries with their stream id as the SSE ``id``, so a client reconnecting
with ``Last-Event-ID`` resumes exactly after the last event it saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from taskflow_server.store.keys import Keys

_CORE_FIELDS = {"type", "task_id", "old", "state"}


@dataclass(frozen=True)
class Event:
    """One entry of the event log."""

    id: str
    type: str
    task_id: str | None
    state: str | None
    old_state: str | None
    ts: float
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``ts`` in epoch seconds)."""
        return {
            "id": self.id,
            "type": self.type,
            "task_id": self.task_id,
            "state": self.state,
            "old_state": self.old_state,
            "ts": self.ts,
            **self.data,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_entry(entry_id: Any, fields: dict[Any, Any]) -> Event:
    """Turn one raw stream entry into an :class:`Event`."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    extra: dict[str, Any] = {k: v for k, v in f.items() if k not in _CORE_FIELDS}
    if "progress" in extra:
        extra["progress"] = float(extra["progress"])
    return Event(
        id=_text(entry_id),
        type=f.get("type", "unknown"),
        task_id=f.get("task_id") or None,
        state=f.get("state") or None,
        old_state=f.get("old") or None,
        ts=int(_text(entry_id).split("-", 1)[0]) / 1000.0,
        data=extra,
    )


class EventLog:
    """Reads the event log; only the transition scripts write to it."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._key = keys.events

    async def read(
        self, after: str = "$", count: int = 500, block_ms: int | None = None
    ) -> list[Event]:
        """Events after ``after`` (a stream id, ``0-0`` for the start, ``$`` for new ones only).

        With ``block_ms`` the call waits up to that long for the first new event.
        """
        reply: Any = await self._redis.xread({self._key: after}, count=count, block=block_ms)
        events: list[Event] = []
        for _stream, entries in reply or []:
            events.extend(parse_entry(eid, fields) for eid, fields in entries)
        return events

    async def last_id(self) -> str:
        """The id of the newest event (``0-0`` when the log is empty)."""
        entries = await self._redis.xrevrange(self._key, count=1)
        return _text(entries[0][0]) if entries else "0-0"

    async def first_id(self) -> str | None:
        """The id of the oldest event the log still holds."""
        entries = await self._redis.xrange(self._key, count=1)
        return _text(entries[0][0]) if entries else None
