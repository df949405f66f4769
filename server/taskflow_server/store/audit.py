"""A full-scan audit of the store: counters against reality, every id in exactly one place.

Read-only and O(tasks): for tests, benchmarks and operators, never on a hot path. A healthy store
always passes; the crash and property tests assert that it does after every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from taskflow_server.states import STATES, TaskState
from taskflow_server.store.keys import LANES, PRIORITIES, Keys

_WHERE_STATE_LIVES: dict[str, str] = {
    TaskState.PENDING: "queue",
    TaskState.ACTIVE: "active",
    TaskState.SCHEDULED: "scheduled",
    TaskState.DLQ: "dlq",
    TaskState.COMPLETED: "finished",
    TaskState.CANCELLED: "finished",
}
"""The structure that holds a task in each state it can rest in (FAILED is none: see
:mod:`taskflow_server.states`)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class AuditReport:
    """What a full scan found."""

    counters: dict[str, int]
    scanned: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Counters equal the scan and every id sits in exactly the structure its state says."""
        return not self.problems and self.counters == self.scanned


async def audit(redis: Redis, keys: Keys) -> AuditReport:
    """Scan every task and structure and compare with the counters."""
    raw_counts = await redis.hgetall(keys.counts)
    counters = {state.value: 0 for state in STATES}
    counters.update({_text(k): int(v) for k, v in raw_counts.items()})
    places: dict[str, list[str]] = {}

    def note(task_id: str, place: str) -> None:
        places.setdefault(task_id, []).append(place)

    for lane in LANES:
        for prio in (*PRIORITIES, "retry"):
            for tid in await redis.lrange(keys.queue(lane, prio), 0, -1):
                note(_text(tid), "queue")
    structures: tuple[tuple[str, str], ...] = (
        ("active", keys.active),
        ("scheduled", keys.scheduled),
        ("dlq", keys.dlq),
        ("finished", keys.finished),
    )
    for name, zkey in structures:
        for member in await redis.zrange(zkey, 0, -1):
            note(_text(member), name)
    entries: dict[str, str] = {}  # task id -> its submitted entry id
    for sid, fields in await redis.xrange(keys.submitted) or []:
        owner = (fields or {}).get(b"id", b"")
        entries[_text(owner)] = _text(sid)
    scanned = {state.value: 0 for state in STATES}
    problems: list[str] = []
    seen: set[str] = set()
    async for key in redis.scan_iter(match=keys.task_prefix + "*", count=1000):
        name = _text(key)
        tid = name[len(keys.task_prefix) :]
        seen.add(tid)
        raw_state, raw_sid = await redis.hmget(name, ["state", "sid"])
        state = _text(raw_state or b"?")
        scanned[state] = scanned.get(state, 0) + 1
        expected = _WHERE_STATE_LIVES.get(state)
        found = places.get(tid, [])
        if expected is None or found != [expected]:
            problems.append(f"{tid}: state {state} but found in {found or 'nothing'}")
        if entries.get(tid) != _text(raw_sid or b""):
            problems.append(f"{tid}: its submitted entry is missing or not the one it points to")
    for tid, found in places.items():
        if tid not in seen:
            problems.append(f"{tid}: in {found} but its hash is gone")
    for tid in entries.keys() - seen:
        problems.append(f"{tid}: a submitted entry outlived its task")
    if counters != scanned:
        problems.append(f"counters {counters} != scan {scanned}")
    return AuditReport(counters=counters, scanned=scanned, problems=problems)
