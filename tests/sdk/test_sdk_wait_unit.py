"""Slim waiting and lean batches with no network: ``wait()``'s flows polled against an
in-memory fake of the task routes (states for the rounds, the full lookup once per finished
task), the streaming wait fed scripted events, and a PDF batch that keeps paths, not bytes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sdk_support import drive

from taskflow_sdk import (
    AsyncClient,
    Client,
    Event,
    NotFoundError,
    TaskFailed,
    TaskState,
    TaskStatus,
    TaskTimeout,
    _files,
)
from taskflow_sdk._config import ClientConfig, resolve_config
from taskflow_sdk._files import Upload, hash_file, read_upload
from taskflow_sdk._requests import LOOKUP_MAX, STATES_MAX, Requests
from taskflow_sdk._wait import WaitState, stream_wait_flow, wait_flow
from taskflow_sdk.batch import BATCH_RUNS_KEPT, BatchCore
from taskflow_sdk.errors import FileChangedError

URL = "http://taskflow.test"
TERMINAL = {str(s) for s in TaskState if s.is_terminal}


def _config() -> ClientConfig:
    return resolve_config(URL, None, 5.0, 0, env={})


class FakeServer:
    """The task routes ``wait()`` uses, in memory, with a log of what was asked.

    Each states request is one step of time: ``finish_per_round`` more tasks (in id order)
    complete, each after passing through ACTIVE. ``fail`` ids end in DLQ.
    """

    def __init__(self, ids: list[str], finish_per_round: int, fail: frozenset[str] = frozenset()):
        self.ids = ids
        self.state = dict.fromkeys(ids, "PENDING")
        self.finish_per_round = finish_per_round
        self.fail = fail
        self.rounds = 0
        self.states_asked: list[list[str]] = []
        self.states_seen: dict[str, str] = {}
        self.lookups: list[list[str]] = []
        self.gets: list[str] = []
        self.states_route = True

    def step(self) -> None:
        self.rounds += 1
        upto = self.rounds * self.finish_per_round
        for n, tid in enumerate(self.ids):
            if self.state.get(tid, "COMPLETED") in TERMINAL:
                continue
            if n < upto:
                self.state[tid] = "DLQ" if tid in self.fail else "COMPLETED"
            elif n < upto + self.finish_per_round:
                self.state[tid] = "ACTIVE"

    def detail(self, tid: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": tid,
            "state": self.state[tid],
            "task_type": "summarize",
            "content": f"the input text of {tid} " * 20,
        }
        if self.state[tid] == "COMPLETED":
            out["result_data"] = {"summary": f"sum {tid}", "usage": {"cost": 0.01}}
        if self.state[tid] == "DLQ":
            out.update(error_type="invalid_input", last_error="cannot read it")
        return out

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET":
            tid = path.rsplit("/", 1)[1]
            self.gets.append(tid)
            if tid not in self.state:
                return httpx.Response(404, json={"detail": f"task {tid} not found"})
            return httpx.Response(200, json=self.detail(tid))
        ids = json.loads(request.content)["task_ids"]
        known = [i for i in ids if i in self.state]
        missing = [i for i in ids if i not in self.state]
        if path == "/api/v1/tasks/states":
            if not self.states_route:
                return httpx.Response(405, json={"detail": "Method Not Allowed"})
            assert 1 <= len(ids) <= STATES_MAX
            assert not set(ids) & set(self.fetched), "a finished task was polled again"
            self.states_asked.append(ids)
            self.step()
            rows = []
            for i in known:
                self.states_seen[i] = self.state[i]
                rows.append(
                    {
                        "task_id": i,
                        "state": self.state[i],
                        "updated_at": "2024-05-31T12:00:00Z",
                        "retry_count": 0,
                        "progress": 0.5 if self.state[i] == "ACTIVE" else 0.0,
                    }
                )
            return httpx.Response(200, json={"tasks": rows, "missing": missing})
        assert path == "/api/v1/tasks/lookup", path
        assert 1 <= len(ids) <= LOOKUP_MAX
        self.lookups.append(ids)
        if not self.states_route:
            self.step()
        return httpx.Response(200, json={"tasks": [self.detail(i) for i in known], "missing": []})

    @property
    def fetched(self) -> list[str]:
        return [i for chunk in self.lookups for i in chunk]


# --------------------------------------------------------------------------- polling


def test_slim_wait_fetches_each_full_detail_once_when_it_finished() -> None:
    ids = [f"t{i:04d}" for i in range(1234)]
    fake = FakeServer(ids, finish_per_round=300)
    state = WaitState(ids, None, False)
    progress: list[tuple[int, dict[str, int], float]] = []
    done = drive(
        wait_flow(
            Requests(_config()),
            state,
            poll_interval=0.5,
            on_progress=lambda: progress.append((state.done(), state.counts(), state.cost())),
        ),
        fake,
        _config(),
    )
    assert [t.task_id for t in done] == ids
    assert all(t.state is TaskState.COMPLETED and t.content for t in done)  # full detail
    # one full fetch per task, only once the slim view said it had finished
    assert sorted(fake.fetched) == sorted(ids)
    assert all(fake.states_seen[i] in TERMINAL for i in fake.fetched)
    # each round asks only for the unfinished tasks (the fake checks), in chunks it accepts
    first = [i for chunk in fake.states_asked[:2] for i in chunk]
    assert first == ids  # round 1: everything (1,000 + 234)
    assert max(len(c) for c in fake.states_asked) == STATES_MAX
    assert not fake.gets
    # progress came from the slim view: counts per state, done, and the cost of finished tasks
    assert progress[0][0] == 300 and progress[0][1]["ACTIVE"] == 300
    assert progress[-1] == (1234, {"COMPLETED": 1234}, pytest.approx(12.34))
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)


def test_wait_raises_task_failed_with_the_full_detail() -> None:
    ids = ["a", "b", "c"]
    fake = FakeServer(ids, finish_per_round=1, fail=frozenset({"b"}))
    state = WaitState(ids, None, True)
    with pytest.raises(TaskFailed) as info:
        drive(wait_flow(Requests(_config()), state, poll_interval=0.1), fake, _config())
    assert info.value.task.task_id == "b" and info.value.task.error_type == "invalid_input"
    assert fake.fetched == ["a", "b"]


def test_timeout_reports_the_unfinished_tasks_from_their_slim_view() -> None:
    ids = ["a", "b", "c"]
    fake = FakeServer(ids, finish_per_round=1)
    now = [0.0]
    state = WaitState(ids, 5.0, False, clock=lambda: now[0])

    def handle(request: httpx.Request) -> httpx.Response:
        now[0] += 3.0  # each request takes 3 s: the deadline passes during round 1
        return fake(request)

    with pytest.raises(TaskTimeout) as info:
        drive(wait_flow(Requests(_config()), state, poll_interval=0.1), handle, _config())
    pending = {t.task_id: t for t in info.value.pending}
    assert list(pending) == ["b", "c"] and pending["b"].state is TaskState.ACTIVE
    assert pending["b"].progress == 0.5 and pending["b"].updated_at is not None
    assert pending["c"].state is TaskState.PENDING
    assert [t.task_id for t in info.value.done] == ["a"] and info.value.done[0].content


def test_an_unknown_task_raises_not_found() -> None:
    fake = FakeServer(["a"], finish_per_round=1)
    state = WaitState(["a", "ghost"], None, False)
    with pytest.raises(NotFoundError):
        drive(wait_flow(Requests(_config()), state, poll_interval=0.1), fake, _config())
    assert fake.gets == ["ghost"]


def test_a_server_without_the_states_route_is_polled_with_the_lookup() -> None:
    ids = ["a", "b", "c", "d"]
    fake = FakeServer(ids, finish_per_round=2)
    fake.states_route = False
    requests = Requests(_config())
    done = drive(
        wait_flow(requests, WaitState(ids, None, False), poll_interval=0.1), fake, _config()
    )
    assert [t.task_id for t in done] == ids and not requests.has_states_route
    assert fake.lookups[0] == ids and not fake.states_asked
    again = FakeServer(ids, finish_per_round=4)
    again.states_route = False
    drive(wait_flow(requests, WaitState(ids, None, False), poll_interval=0.1), again, _config())
    assert again.lookups == [ids]  # remembered: no second try of the missing route


def test_both_clients_poll_slim_and_fetch_once() -> None:
    ids = [f"x{i}" for i in range(40)]
    for make in (_sync_wait, _async_wait):
        fake = FakeServer(ids, finish_per_round=15)
        done = make(fake, ids)
        assert [t.task_id for t in done] == ids and all(t.summary for t in done)
        assert sorted(fake.fetched) == sorted(ids) and len(fake.fetched) == len(ids)


def _sync_wait(fake: FakeServer, ids: list[str]) -> Any:
    http = httpx.Client(transport=httpx.MockTransport(fake))
    with Client(URL, http_client=http) as client:
        return client.wait(ids, poll_interval=0.001)


def _async_wait(fake: FakeServer, ids: list[str]) -> Any:
    async def handler(request: httpx.Request) -> httpx.Response:
        return fake(request)

    async def go() -> Any:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncClient(URL, http_client=http) as client:
            return await client.wait(ids, poll_interval=0.001)

    return asyncio.run(go())


# --------------------------------------------------------------------------- streaming


def _event(task_id: str | None, state: str | None, kind: str = "task_state_changed") -> Event:
    return Event(type=kind, task_id=task_id, state=state)


def _script(
    fake: FakeServer, *steps: tuple[str | None, Any]
) -> tuple[Callable[[float], Any], list[float]]:
    """An event source: each call first completes the named task on ``fake`` (if any), then
    answers the step's item."""
    waited: list[float] = []
    it = iter(steps)

    def next_event(seconds: float) -> Any:
        waited.append(seconds)
        finished, item = next(it)
        if finished is not None:
            fake.state[finished] = "COMPLETED"
        return item

    return next_event, waited


def test_stream_wait_reads_only_the_tasks_events_name() -> None:
    ids = ["a", "b", "c"]
    fake = FakeServer(ids, finish_per_round=0)  # nothing moves unless the script says so
    state = WaitState(ids, None, False)
    events, waited = _script(
        fake,
        (None, _event("a", "ACTIVE")),  # recorded from the event: no request
        (None, _event("zzz", "COMPLETED")),  # not ours: ignored
        ("a", _event("a", "COMPLETED")),  # finished: its full detail, directly
        ("b", None),  # quiet for a while: everything unfinished is looked at again
        ("c", _event("c", "COMPLETED")),
    )
    counts: list[dict[str, int]] = []
    done = drive(
        stream_wait_flow(
            Requests(_config()),
            state,
            poll_interval=0.1,
            on_progress=lambda: counts.append(state.counts()),
        ),
        fake,
        _config(),
        events=events,
    )
    assert [t.task_id for t in done] == ids and all(t.content for t in done)
    assert fake.states_asked == [ids, ["b", "c"]]  # the first look, then the quiet-time repoll
    assert fake.fetched == ["a", "b", "c"]  # one full fetch each
    assert counts[0] == {"PENDING": 3} and counts[1] == {"ACTIVE": 1, "PENDING": 2}
    assert counts[-1] == {"COMPLETED": 3}
    assert waited == [5.0] * 5  # STREAM_REPOLL_SECONDS, no deadline


def test_stream_wait_raises_for_a_deleted_task_and_for_a_broken_stream() -> None:
    fake = FakeServer(["a"], finish_per_round=0)
    events, _ = _script(fake, (None, _event("a", None, kind="task_deleted")))
    del fake.state["a"]
    with pytest.raises(NotFoundError):
        drive(
            stream_wait_flow(Requests(_config()), WaitState(["a"], None, False), poll_interval=1),
            fake,
            _config(),
            events=events,
        )
    fake = FakeServer(["a"], finish_per_round=0)
    broken, _ = _script(fake, (None, RuntimeError("stream gone")))
    with pytest.raises(RuntimeError, match="stream gone"):
        drive(
            stream_wait_flow(Requests(_config()), WaitState(["a"], None, False), poll_interval=1),
            fake,
            _config(),
            events=broken,
        )


def test_task_status_applies_to_a_task() -> None:
    status = TaskStatus.model_validate(
        {"task_id": "a", "state": "ACTIVE", "retry_count": 2, "progress": 0.25, "extra": 1}
    )
    assert not status.is_terminal and status.model_extra == {"extra": 1}
    state = WaitState(["a"], None, False)
    assert state.observe(status) is False and state.counts() == {"ACTIVE": 1}
    assert state.observe(status.model_copy(update={"state": TaskState.DLQ})) is True
    assert state.done() == 0  # finished only once its full detail is in


# --------------------------------------------------------------------------- batches


class FakeUploads:
    """``HEAD /blobs/{sha}`` (none held) and ``POST /tasks/pdfxtract``, recording uploads."""

    def __init__(self) -> None:
        self.uploaded: dict[str, bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(404)
        assert request.url.path == "/api/v1/tasks/pdfxtract"
        body = request.read()
        match = re.search(rb'filename="([^"]+)"\r\nContent-Type: application/pdf\r\n\r\n', body)
        assert match, body[:200]
        start = match.end()
        end = body.index(b"\r\n--", start)
        name = match.group(1).decode()
        self.uploaded[name] = body[start:end]
        tid = hashlib.sha256(body[start:end]).hexdigest()[:12]
        return httpx.Response(201, json={"task_id": tid, "state": "PENDING", "created": True})


def _pdfs(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"issue-{i}.pdf"
        path.write_bytes(b"%PDF-1.4\n" + f"page {i} ".encode() * 500)
        paths.append(path)
    return paths


def test_pdf_batch_entries_hold_a_path_and_a_sha_not_the_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_files, "HASH_CHUNK", 1000)  # several chunks per file
    paths = _pdfs(tmp_path, 3)
    core = BatchCore(Requests(_config()), folder=str(tmp_path))
    core.load()
    for entry, path in zip(core.entries, paths, strict=True):
        upload = entry.upload
        assert upload is not None and upload.data is None and upload.path == path
        assert upload.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert upload.size == path.stat().st_size and "data" not in repr(upload)
    fake = FakeUploads()
    assert drive(core.submit_flow(), fake, _config()) == 3
    assert fake.uploaded == {p.name: p.read_bytes() for p in paths}  # read at upload time
    assert all(e.upload is not None and e.upload.data is None for e in core.entries)


def test_a_file_changed_after_hashing_is_not_uploaded(tmp_path: Path) -> None:
    (path,) = _pdfs(tmp_path, 1)
    upload = read_upload(path)
    assert hash_file(path) == (upload.sha256, upload.size)
    path.write_bytes(b"%PDF-1.4 something else")
    with pytest.raises(FileChangedError):
        upload.read()
    held = read_upload(b"%PDF-1.4 bytes", filename="given.pdf")
    assert held.data == b"%PDF-1.4 bytes" and held.path is None and held.read() == held.data
    with pytest.raises(ValueError):
        Upload(filename="x.pdf", sha256="0" * 64, size=0)


def test_a_client_lists_only_its_latest_runs() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["tasks"]
        answer = [
            {"index": i, "ok": True, "task_id": it["idempotency_key"][-12:], "state": "PENDING"}
            for i, it in enumerate(items)
        ]
        return httpx.Response(200, json={"accepted": len(items), "items": answer})

    with Client(URL, http_client=httpx.Client(transport=httpx.MockTransport(handler))) as client:
        first = client.batch(texts=["run 0"])
        runs = [first] + [client.batch(texts=[f"run {i}"]) for i in range(1, BATCH_RUNS_KEPT + 3)]
        assert len(client.batch_runs) == BATCH_RUNS_KEPT
        assert list(client.batch_runs) == runs[-BATCH_RUNS_KEPT:]
        assert first not in client.batch_runs and first.tasks  # still usable through its holder
