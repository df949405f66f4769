"""The only module that changes task state.

Every transition is one Lua script in ``store/scripts/`` (shared helpers in ``_lib.lua`` are
prepended at load time). Each script checks the expected state (and, for a worker, the lease
token), writes the task hash, moves the id between structures, adjusts the state counters and
appends to the event log, atomically. ``TaskQueue`` gives each script a typed async wrapper.

State machine::

    submit ─> PENDING ─claim─> ACTIVE ─complete─> COMPLETED
                 ▲               │ ├─fail(retry)─> SCHEDULED ─promote─> PENDING (retry queue)
                 │               │ ├─fail(dlq) / retries used up / poison ─> DLQ ─retry─> PENDING
                 │               │ ├─cancel requested ─> CANCELLED
                 └─requeue/reap──┘ └─lease expired (reaper) ─> PENDING (front of its queue)
    cancel: PENDING / SCHEDULED / DLQ ─> CANCELLED at once; ACTIVE cooperatively.
    delete: any state, every structure.

A running task may keep finished parts of its work (``checkpoint``, under its lease); they stay
through retries, requeues and the DLQ and go with complete, cancel (CANCELLED) and delete.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from taskflow_server.config import Settings
from taskflow_server.errors import TaskflowError
from taskflow_server.states import STATES
from taskflow_server.store.keys import LANES, PRIORITIES, QUEUE_NAMES, Keys
from taskflow_server.store.records import (
    STATE_FIELDS,
    Claim,
    NewTask,
    QueueDepths,
    Submitted,
    TaskRecord,
    TaskStateView,
    new_task_id,
)

SCRIPTS_DIR = Path(__file__).with_name("scripts")
_SCRIPT_NAMES = (
    "submit",
    "claim",
    "extend",
    "complete",
    "fail",
    "progress",
    "checkpoint",
    "promote",
    "reap",
    "cancel",
    "retry",
    "delete",
    "sweep",
    "heartbeat",
    "orphans",
    "read",
    "page",
)

PAGE_BUDGET = 1_000
"""The most submitted-stream entries one ``page`` script call reads; the caller loops.

Reading an entry copies its payload into Lua (~3 us for 1 KB), so one call holds Redis for about
3 ms at most and claims from workers never wait longer than that behind a deep listing page."""

PEEK_FIELDS: tuple[str, ...] = (
    "state",
    "task_type",
    "created_at",
    "updated_at",
    "completed_at",
    "priority",
    "retry_count",
)
"""The task fields :meth:`TaskQueue.peek_many` returns."""

EXTENDED, LOST, CANCEL_REQUESTED = 0, 1, 2
"""Per-task answers of :meth:`TaskQueue.extend`."""


class StoreError(TaskflowError):
    """Base class of the store's own errors."""


class TaskNotFoundError(StoreError):
    """No task with that id."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} not found")


class InvalidTransitionError(StoreError):
    """The task is in a state that does not allow the operation."""

    def __init__(self, task_id: str, state: str, operation: str, allowed: str) -> None:
        self.task_id = task_id
        self.state = state
        self.operation = operation
        super().__init__(f"cannot {operation} task {task_id} in state {state}; {allowed}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _lenient_text(value: Any) -> str:
    """Like ``_text``, but bytes that are not UTF-8 (another writer) come out as U+FFFD."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _blob_ref(payload: dict[str, Any]) -> str:
    """The uploaded file a payload names (its ``blob`` sha256), or ``''``: the task refers to it."""
    blob = payload.get("blob")
    return blob if isinstance(blob, str) and _SHA256.fullmatch(blob) else ""


_SHA256 = re.compile(r"[0-9a-f]{64}")

_ALL = 1 << 62
"""A skip count larger than any stream: skip everything, i.e. count the range."""


@dataclass(frozen=True)
class _Walk:
    """What one walk over the submitted stream found."""

    ids: list[str]
    skipped: int
    next: str
    """The last entry read, to continue after; empty when the range is done."""


def _stream_bounds(start: float | None, end: float | None) -> tuple[str, str]:
    """Epoch-second bounds as submitted-stream ids (a bare millisecond covers that millisecond)."""
    lo = "-" if start is None else str(max(0, int(start * 1000)))
    hi = "+" if end is None else str(max(0, int(end * 1000)))
    return lo, hi


def _after(lo: str, hi: str, last: str, *, desc: bool) -> tuple[str, str]:
    """The bounds that continue a walk past entry ``last`` in its direction."""
    return (lo, "(" + last) if desc else ("(" + last, hi)


def load_script_source(name: str) -> str:
    """The full source of one transition script.

    ``_lib.lua`` comes first; the script's body runs as a function so that, whichever ``return``
    it leaves by, the state counter changes it made are written once at the end.
    """
    lib = (SCRIPTS_DIR / "_lib.lua").read_text()
    body = (SCRIPTS_DIR / f"{name}.lua").read_text()
    wrapped = f"local function main()\n{body}\nend\n"
    return f"{lib}\n{wrapped}local result = main()\nflush_counts()\nreturn result\n"


class TaskQueue:
    """Typed wrappers around the transition scripts, plus the read-only queries the API needs.

    Args:
        redis: an async client (``decode_responses=False``).
        keys: the key builder (its prefix is the hash tag).
        settings: lease length, retry share, event log cap, retention and so on.
    """

    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self._scripts: dict[str, AsyncScript] = {}
        self._base_args: list[Any] = [keys.tag, settings.events_maxlen]
        share = settings.retry_share
        self._retry_every = 0 if share <= 0 else max(1, round(1 / share))

    async def load(self) -> None:
        """Register every script (EVALSHA with a reload on NOSCRIPT) and check Redis answers."""
        for name in _SCRIPT_NAMES:
            self._scripts[name] = self.redis.register_script(load_script_source(name))
        await self.redis.ping()

    async def _run(self, name: str, args: list[Any]) -> Any:
        if not self._scripts:
            await self.load()
        script = self._scripts[name]
        return await script(keys=[self.keys.counts], args=[*self._base_args, *args])

    # ------------------------------------------------------------------ producers

    async def submit(self, task: NewTask) -> Submitted:
        """Submit one task (see :meth:`submit_many`)."""
        return (await self.submit_many([task]))[0]

    async def submit_many(self, tasks: list[NewTask]) -> list[Submitted]:
        """Submit tasks atomically, in order. A seen idempotency key returns the first task."""
        if not tasks:
            return []
        args: list[Any] = [self.settings.idempotency_ttl_seconds, len(tasks)]
        for t in tasks:
            if t.priority not in PRIORITIES:
                raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
            if t.lane not in LANES:
                raise ValueError(f"lane must be one of {', '.join(LANES)}")
            max_retries = (
                self.settings.default_max_retries if t.max_retries is None else t.max_retries
            )
            args += [
                t.task_id or new_task_id(),
                t.task_type,
                t.lane,
                t.priority,
                max_retries,
                json.dumps(t.payload, separators=(",", ":")),
                t.idempotency_key or "",
                json.dumps(t.metadata, separators=(",", ":")) if t.metadata else "",
                _blob_ref(t.payload),
                t.traceparent or "",
            ]
        raw = await self._run("submit", args)
        return [
            Submitted(_text(raw[i]), _text(raw[i + 1]), bool(int(raw[i + 2])))
            for i in range(0, len(raw), 3)
        ]

    # ------------------------------------------------------------------ workers

    async def claim(
        self, worker_id: str, token: str, n: int, lanes: dict[str, int | None]
    ) -> list[Claim]:
        """Claim up to ``n`` tasks under a lease ``token``.

        ``lanes`` maps each lane to claim from to a limit: ``None`` = no limit, ``0`` = none,
        ``1`` = at most one (a circuit breaker's half-open probe).
        """
        lane_args: list[Any] = []
        for lane, limit in lanes.items():
            lane_args += [lane, -1 if limit is None else limit]
        raw = await self._run(
            "claim",
            [
                worker_id,
                token,
                int(self.settings.lease_seconds * 1000),
                n,
                self._retry_every,
                len(lanes),
                *lane_args,
            ],
        )
        claims: list[Claim] = []
        for i in range(0, len(raw), 6):
            try:
                payload = json.loads(raw[i + 4])
            except (ValueError, RecursionError):
                payload = {}
            claims.append(
                Claim(
                    task_id=_text(raw[i]),
                    task_type=_text(raw[i + 1]),
                    token=token,
                    retry_count=int(raw[i + 2]),
                    lost_leases=int(raw[i + 3]),
                    payload=payload if isinstance(payload, dict) else {},
                    traceparent=_text(raw[i + 5]) or None,
                )
            )
        return claims

    async def extend(self, leases: list[tuple[str, str]], lease_seconds: float) -> list[int]:
        """Extend leases ``(task_id, token)``; per task EXTENDED, LOST or CANCEL_REQUESTED."""
        if not leases:
            return []
        args: list[Any] = [int(lease_seconds * 1000)]
        for task_id, token in leases:
            args += [task_id, token]
        return [int(x) for x in await self._run("extend", args)]

    async def complete_many(self, done: list[tuple[str, str, Any]]) -> list[bool]:
        """Complete tasks ``(task_id, token, result)``; False where the lease was no longer ours."""
        if not done:
            return []
        args: list[Any] = [len(done)]
        for task_id, token, result in done:
            args += [task_id, token, json.dumps(result, separators=(",", ":"), default=str)]
        return [bool(int(x)) for x in await self._run("complete", args)]

    async def fail(
        self,
        task_id: str,
        token: str,
        *,
        mode: str,
        error_type: str = "",
        message: str = "",
        delay_seconds: float = 0.0,
    ) -> str:
        """End an attempt without a result: ``mode`` is retry, dlq, requeue or cancel.

        Returns the new state, or ``stale:<state>`` when the lease was no longer ours.
        """
        if mode not in ("retry", "dlq", "requeue", "cancel"):
            raise ValueError(f"unknown fail mode {mode!r}")
        raw = await self._run(
            "fail",
            [task_id, token, mode, error_type, message[:2000], int(delay_seconds * 1000)],
        )
        return _text(raw)

    async def progress(self, task_id: str, token: str, fraction: float, message: str) -> bool:
        """Record progress of a running task; False when the lease is no longer ours."""
        raw = await self._run("progress", [task_id, token, f"{fraction:.4f}", message[:500]])
        return bool(int(raw))

    async def save_part(self, task_id: str, token: str, name: str, value: Any) -> bool:
        """Keep one finished part of a running task (work already paid for) under ``name``.

        The parts survive retries, requeues and the DLQ, so the next attempt redoes only what is
        missing; they go when the task completes, is cancelled or deleted, and expire with the
        results (``result_ttl_seconds``). Returns False (nothing written) when the lease is no
        longer ours.
        """
        raw = await self._run(
            "checkpoint",
            [
                task_id,
                token,
                name,
                json.dumps(value, separators=(",", ":"), default=str),
                self.settings.result_ttl_seconds,
            ],
        )
        return bool(int(raw))

    async def parts(self, task_id: str) -> dict[str, Any]:
        """The parts saved by :meth:`save_part` for a task, JSON-decoded (empty when none).

        A value that does not decode is left out.
        """
        raw = await self.redis.hgetall(self.keys.parts(task_id))
        out: dict[str, Any] = {}
        for name, value in raw.items():
            try:
                out[_text(name)] = json.loads(value)
            except ValueError:
                continue
        return out

    async def promote_due(self, limit: int = 100) -> int:
        """Move due retries to the retry queues; returns how many were due."""
        return int(await self._run("promote", [limit]))

    async def reap_expired(self, limit: int = 100) -> tuple[int, int]:
        """Requeue tasks whose lease expired; returns (requeued, dead-lettered as poison)."""
        raw = await self._run("reap", [limit, self.settings.max_lost_leases])
        return int(raw[0]), int(raw[1])

    async def sweep_finished(self, limit: int = 500) -> int:
        """Delete finished tasks older than the result retention; returns how many."""
        return int(await self._run("sweep", [self.settings.result_ttl_seconds * 1000, limit]))

    async def heartbeat(self, worker_id: str, fields: dict[str, Any]) -> None:
        """Write a worker's heartbeat hash (expires after three missed beats)."""
        ttl = max(3, int(self.settings.heartbeat_seconds * 3))
        args: list[Any] = [worker_id, ttl, int(self.settings.worker_stale_seconds * 1000)]
        for k, v in fields.items():
            args += [k, v if isinstance(v, str | int | float) else json.dumps(v)]
        await self._run("heartbeat", args)

    async def forget_worker(self, worker_id: str) -> None:
        """Remove a stopped worker's heartbeat."""
        await self.redis.delete(self.keys.worker(worker_id))
        await self.redis.zrem(self.keys.workers, worker_id)

    # ------------------------------------------------------------------ operators

    async def cancel(self, task_id: str) -> TaskRecord:
        """Cancel: PENDING/SCHEDULED/DLQ at once, ACTIVE cooperatively (cancel_requested)."""
        outcome = _text(await self._run("cancel", [task_id]))
        if outcome == "missing":
            raise TaskNotFoundError(task_id)
        if outcome.startswith("refused:"):
            raise InvalidTransitionError(
                task_id, outcome.split(":", 1)[1], "cancel", "the task has already finished"
            )
        return await self._must_get(task_id)

    async def retry(self, task_id: str, reset_retry_count: bool = False) -> TaskRecord:
        """Manual retry of a DLQ, FAILED or CANCELLED task: back to the retry queue, PENDING."""
        outcome = _text(await self._run("retry", [task_id, "1" if reset_retry_count else "0"]))
        if outcome == "missing":
            raise TaskNotFoundError(task_id)
        if outcome.startswith("refused:"):
            raise InvalidTransitionError(
                task_id,
                outcome.split(":", 1)[1],
                "retry",
                "only FAILED, DLQ or CANCELLED tasks can be retried",
            )
        return await self._must_get(task_id)

    async def delete(self, task_id: str) -> bool:
        """Delete a task from every structure; False when it did not exist."""
        return bool(int(await self._run("delete", [task_id])))

    async def requeue_orphaned(self, batch: int = 500) -> dict[str, Any]:
        """Repair tasks that sit in no structure matching their state (none on a healthy system)."""
        found: list[str] = []
        errors: list[str] = []
        async for ids in self.iter_ids(chunk=batch, desc=False):
            try:
                fixed = await self._run("orphans", ids)
                found.extend(_text(x) for x in fixed)
            except Exception as exc:  # report, keep scanning
                errors.append(str(exc))
        return {"found": len(found), "requeued": len(found), "task_ids": found, "errors": errors}

    # ------------------------------------------------------------------ reads

    async def _read(self, mode: str, ids: list[str], *extra: str) -> list[Any]:
        """Run the read-only ``read`` script (see its header) for ``ids``."""
        return list(await self._run("read", [mode, *extra, *ids]))

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task record, or ``None``."""
        return (await self.get_many([task_id]))[0]

    async def _must_get(self, task_id: str) -> TaskRecord:
        record = await self.get(task_id)
        if record is None:
            raise TaskNotFoundError(task_id)
        return record

    async def get_many(self, ids: list[str]) -> list[TaskRecord | None]:
        """Records for many ids in one round trip (``None`` for unknown ids)."""
        if not ids:
            return []
        rows = await self._read("record", ids)
        return [
            TaskRecord.from_hash(tid, dict(zip(row[::2], row[1::2], strict=True))) if row else None
            for tid, row in zip(ids, rows, strict=True)
        ]

    async def payload(self, task_id: str) -> dict[str, Any] | None:
        """The task's payload, or ``None`` when the task is unknown or its payload is not JSON."""
        raw = (await self._read("payload", [task_id]))[0]
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # damaged (another writer): the task shows no content
            return None
        return value if isinstance(value, dict) else {"value": value}

    async def peek_many(self, ids: list[str]) -> list[dict[str, str | None] | None]:
        """:data:`PEEK_FIELDS` of each task in one round trip (``None`` for a missing task).

        Reads only small fields, so filtering a listing never pulls results over the wire.
        """
        if not ids:
            return []
        rows = await self._read("peek", ids, ",".join(PEEK_FIELDS))
        out: list[dict[str, str | None] | None] = []
        for row in rows:
            if not row:
                out.append(None)
                continue
            values = [None if v is None else _lenient_text(v) for v in row]
            out.append(dict(zip(PEEK_FIELDS, values, strict=True)))
        return out

    async def states_many(self, ids: list[str]) -> list[TaskStateView | None]:
        """Where each task stands, in one round trip (``None`` for a missing task).

        One HMGET of :data:`~taskflow_server.store.records.STATE_FIELDS` per task, no script:
        neither the payload, the result, the history nor the submitted stream is read.
        """
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for tid in ids:
                pipe.hmget(self.keys.task(tid), STATE_FIELDS)
            rows = await pipe.execute()
        return [TaskStateView.from_fields(tid, row) for tid, row in zip(ids, rows, strict=True)]

    async def payloads_many(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """The JSON payload of each task in one round trip (``None`` when missing)."""
        if not ids:
            return []
        out: list[dict[str, Any] | None] = []
        for raw in await self._read("payload", ids):
            try:
                value = json.loads(raw) if raw is not None else None
            except (ValueError, RecursionError):
                value = None
            out.append(value if isinstance(value, dict) else None)
        return out

    async def counts(self) -> dict[str, int]:
        """Tasks per state, from the counters the scripts keep (never a scan)."""
        raw = await self.redis.hgetall(self.keys.counts)
        stored = {_text(k): int(v) for k, v in raw.items()}
        return {state: stored.get(state, 0) for state in STATES}

    async def depths(self) -> QueueDepths:
        """Queue lengths, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for prio in PRIORITIES:
                for lane in LANES:
                    pipe.llen(self.keys.queue(lane, prio))
            for lane in LANES:
                pipe.llen(self.keys.retry_queue(lane))
            pipe.zcard(self.keys.scheduled)
            pipe.zcard(self.keys.dlq)
            pipe.zcard(self.keys.active)
            r = [int(x) for x in await pipe.execute()]
        n = len(LANES)
        by_priority = {p: sum(r[i * n : (i + 1) * n]) for i, p in enumerate(PRIORITIES)}
        base = len(PRIORITIES) * n
        return QueueDepths(
            by_priority=by_priority,
            retry=sum(r[base : base + n]),
            scheduled=r[base + n],
            dlq=r[base + n + 1],
            active=r[base + n + 2],
        )

    async def queue_ids(self, name: str, limit: int = 100) -> list[str]:
        """Ids waiting in queue ``name`` in the order they will be taken."""
        if name not in QUEUE_NAMES:
            raise ValueError(f"unknown queue {name!r}; one of {', '.join(QUEUE_NAMES)}")
        if name in ("scheduled", "dlq", "active"):
            key = {
                "scheduled": self.keys.scheduled,
                "dlq": self.keys.dlq,
                "active": self.keys.active,
            }
            return [_text(x) for x in await self.redis.zrange(key[name], 0, limit - 1)]
        lists = (
            [self.keys.retry_queue(lane) for lane in LANES]
            if name == "retry"
            else [self.keys.queue(lane, p) for p in PRIORITIES for lane in LANES]
        )
        out: list[str] = []
        for list_key in lists:
            if len(out) >= limit:
                break
            out += [_text(x) for x in await self.redis.lrange(list_key, 0, limit - len(out) - 1)]
        return out

    async def list_ids(
        self,
        *,
        start: float | None = None,
        end: float | None = None,
        desc: bool = True,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[str], int]:
        """Task ids by creation time within [start, end] (epoch s), a page, and the total.

        The creation-time index is the submitted stream: skipping ``offset`` ids and counting a
        bounded range read the entries between (in calls of :data:`PAGE_BUDGET`), so deep pages
        and dated totals cost time in proportion to what they cover; the undated total is XLEN.
        """
        lo, hi = _stream_bounds(start, end)
        page = await self._walk(lo, hi, desc=desc, skip=offset, take=limit)
        if not page.next:  # the page reached the end of the range: it has seen every entry
            return page.ids, page.skipped + len(page.ids)
        if start is None and end is None:
            return page.ids, int(await self.redis.xlen(self.keys.submitted))
        lo, hi = _after(lo, hi, page.next, desc=desc)
        rest = await self._walk(lo, hi, desc=desc, skip=_ALL, take=0)
        return page.ids, page.skipped + len(page.ids) + rest.skipped

    async def iter_ids(
        self,
        *,
        start: float | None = None,
        end: float | None = None,
        desc: bool = True,
        chunk: int = 1_000,
    ) -> AsyncIterator[list[str]]:
        """Every task id created within [start, end] (epoch s), ``chunk`` at a time."""
        lo, hi = _stream_bounds(start, end)
        while True:
            walk = await self._walk(lo, hi, desc=desc, skip=0, take=chunk)
            if walk.ids:
                yield walk.ids
            if not walk.next:
                return
            lo, hi = _after(lo, hi, walk.next, desc=desc)

    async def _walk(self, lo: str, hi: str, *, desc: bool, skip: int, take: int) -> _Walk:
        """Skip ``skip`` ids between ``lo`` and ``hi``, then take ``take``, in bounded calls."""
        ids: list[str] = []
        skipped = 0
        while True:
            raw = await self._run(
                "page",
                [lo, hi, "desc" if desc else "asc", skip - skipped, take - len(ids), PAGE_BUDGET],
            )
            after = _text(raw[0])
            skipped += int(raw[1])
            ids += [_text(x) for x in raw[2:]]
            if not after or (skipped >= skip and len(ids) >= take):
                return _Walk(ids, skipped, after)
            lo, hi = _after(lo, hi, after, desc=desc)

    async def workers(self) -> list[dict[str, Any]]:
        """Heartbeat hashes of the workers seen recently, newest first."""
        ids = [_text(x) for x in await self.redis.zrevrange(self.keys.workers, 0, 999)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for wid in ids:
                pipe.hgetall(self.keys.worker(wid))
            raws = await pipe.execute()
        out: list[dict[str, Any]] = []
        for wid, raw in zip(ids, raws, strict=True):
            if not raw:
                continue
            h = {_text(k): _text(v) for k, v in raw.items()}
            info: dict[str, Any] = {"id": wid, **h}
            for k in ("pid", "concurrency", "active", "completed", "failed"):
                if k in info:
                    info[k] = int(float(info[k]))
            for k in ("started", "last_seen"):
                if k in info:
                    info[k] = float(info[k])
            if "active_tasks" in info:
                try:
                    info["active_tasks"] = json.loads(info["active_tasks"])
                except ValueError:
                    info["active_tasks"] = []
            out.append(info)
        return out

    async def ping(self) -> float:
        """Round-trip time to Redis in milliseconds; raises when Redis does not answer."""
        t0 = time.perf_counter()
        await self.redis.ping()
        return (time.perf_counter() - t0) * 1000.0
