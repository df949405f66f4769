"""The polling view of a task (``POST /api/v1/tasks/states``) without Redis: parsing the few hash
fields it reads, what it shows for a damaged hash, and that it reads nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from taskflow_server.api.views import task_state_item
from taskflow_server.config import Settings
from taskflow_server.states import TaskState
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import STATE_FIELDS, TaskStateView, sid_seconds

SID = b"1717171717123-0"
CREATED = 1717171717.123


def _values(**given: bytes | None) -> list[bytes | None]:
    """HMGET's answer for :data:`STATE_FIELDS`: the given fields, None for the rest."""
    return [given.get(name) for name in STATE_FIELDS]


def test_sid_seconds() -> None:
    assert sid_seconds("1717171717123-0") == CREATED
    assert sid_seconds("1717171717123-7") == CREATED
    assert sid_seconds("0-1") == 0.0
    for bad in ("", "abc", "1717171717123", "-5", "12a-0", "٣-0"):
        assert sid_seconds(bad) is None, bad


def test_a_new_task_shows_its_creation_time() -> None:
    view = TaskStateView.from_fields("t1", _values(sid=SID, state=b"PENDING"))
    assert view == TaskStateView("t1", "PENDING", CREATED, 0, 0.0)


def test_a_running_task() -> None:
    view = TaskStateView.from_fields(
        "t2",
        _values(
            sid=SID,
            state=b"ACTIVE",
            updated_at=b"1717171720.500",
            retry_count=b"2",
            progress=b"0.2500",
        ),
    )
    assert view == TaskStateView("t2", "ACTIVE", 1717171720.5, 2, 0.25)


def test_no_sid_is_a_missing_task() -> None:
    assert TaskStateView.from_fields("gone", _values()) is None
    # A hash without its sid is not a task any read shows (read.lua agrees).
    assert TaskStateView.from_fields("half", _values(state=b"PENDING")) is None


def test_a_damaged_hash_never_raises() -> None:
    view = TaskStateView.from_fields(
        "bad",
        _values(
            sid=b"not-a-stream-id",
            state=b"\xff\xfeBOGUS",
            updated_at=b"soon",
            retry_count=b"many",
            progress=b"inf",
        ),
    )
    assert view is not None
    assert (view.updated_at, view.retry_count) == (0.0, 0)
    item = task_state_item(view)
    assert item.state is TaskState.FAILED  # as the full detail shows a state no one writes
    assert item.progress == 0.0  # not finite
    assert item.updated_at == datetime.fromtimestamp(0, UTC)
    assert item.retry_count == 0


def test_item_keeps_good_values() -> None:
    item = task_state_item(TaskStateView("t3", "SCHEDULED", CREATED, 1, 0.5))
    assert item.model_dump() == {
        "task_id": "t3",
        "state": TaskState.SCHEDULED,
        "updated_at": datetime.fromtimestamp(CREATED, UTC),
        "retry_count": 1,
        "progress": 0.5,
    }
    assert item.model_dump_json().count("Z") == 1  # UTC, written with a Z
    huge = task_state_item(TaskStateView("t4", "COMPLETED", 1e300, 0, float("nan")))
    assert huge.updated_at == datetime.fromtimestamp(0, UTC) and huge.progress == 0.0


class _RecordingPipeline:
    """Stands in for a redis-py pipeline: records the commands, answers HMGET from ``hashes``."""

    def __init__(self, hashes: dict[str, dict[str, bytes]], log: list[tuple[Any, ...]]) -> None:
        self.hashes = hashes
        self.log = log
        self.queued: list[list[bytes | None]] = []

    async def __aenter__(self) -> _RecordingPipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def hmget(self, name: str, keys: Sequence[str]) -> None:
        self.log.append(("HMGET", name, tuple(keys)))
        stored = self.hashes.get(name, {})
        self.queued.append([stored.get(k) for k in keys])

    async def execute(self) -> list[list[bytes | None]]:
        self.log.append(("EXEC",))
        return self.queued


class _RecordingRedis:
    """Only what :meth:`TaskQueue.states_many` may use; any other command fails the test."""

    def __init__(self, hashes: dict[str, dict[str, bytes]]) -> None:
        self.hashes = hashes
        self.log: list[tuple[Any, ...]] = []

    def pipeline(self, transaction: bool = True) -> _RecordingPipeline:
        self.log.append(("PIPELINE", transaction))
        return _RecordingPipeline(self.hashes, self.log)


async def test_states_many_reads_only_the_few_hash_fields() -> None:
    keys = Keys("unit")
    hashes = {
        keys.task("a"): {"sid": SID, "state": b"COMPLETED", "progress": b"1.0"},
        keys.task("b"): {"sid": SID, "state": b"PENDING"},
    }
    fake = _RecordingRedis(hashes)
    queue = TaskQueue(fake, keys, Settings(_env_file=None))  # type: ignore[arg-type,call-arg]
    views = await queue.states_many(["b", "nope", "a"])
    assert [v.id if v else None for v in views] == ["b", None, "a"]
    assert views[2] is not None and views[2].state == "COMPLETED"
    assert fake.log == [
        ("PIPELINE", False),
        ("HMGET", keys.task("b"), STATE_FIELDS),
        ("HMGET", keys.task("nope"), STATE_FIELDS),
        ("HMGET", keys.task("a"), STATE_FIELDS),
        ("EXEC",),
    ]
    assert not {"payload", "result", "state_history", "error_history"} & set(STATE_FIELDS)
    assert await queue.states_many([]) == []
    assert len(fake.log) == 5  # nothing asked: no round trip
