"""Compact reprs of what ``wait([...])``, ``queues()`` and ``workers()`` return.

The answers are built with the server's own response models (``taskflow_server.api.schemas``)
and serialized as the API sends them, then parsed by the SDK: the reprs are checked on the
shapes a real server produces, with long inputs, results and per-worker detail.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from taskflow_sdk.models import REPR_ROWS, QueueStatus, Task, TaskList, Tasks, WorkerList
from taskflow_server.api import schemas

LIMIT = 2048
"""The most characters a text repr may take (about 2 KB)."""
HTML_LIMIT = 4096
"""The most characters an HTML repr may take (a table of at most REPR_ROWS rows)."""

_TASKS = TypeAdapter(list[Task])


def _wire(model: Any) -> Any:
    """What the server sends for ``model``: its JSON, decoded."""
    return json.loads(model.model_dump_json())


def _task_detail(i: int) -> schemas.TaskDetail:
    now = datetime.now(UTC)
    failed = i % 7 == 3
    body = f"Article {i}: " + "The council met on Tuesday to discuss the harbour. " * 100
    summary = f"Summary {i}: the council discussed the harbour and its budget at length. " * 3
    return schemas.TaskDetail(
        task_id=f"019300aa{i:04d}" + "0123456789abcd",
        state=schemas.TaskState.DLQ if failed else schemas.TaskState.COMPLETED,
        task_type="summarize",
        priority="default",
        lane="llm",
        content=body,
        result=None if failed else summary,
        result_data=None if failed else {"summary": summary, "usage": {"cost": 0.0012}},
        retry_count=3 if failed else 0,
        max_retries=3,
        last_error="upstream 503: no provider available " * 10 if failed else None,
        error_type="upstream_unavailable" if failed else None,
        retry_after=None,
        created_at=now - timedelta(seconds=30),
        updated_at=now,
        started_at=now - timedelta(seconds=20),
        completed_at=now,
        scheduled_at=None,
        dlq_at=now if failed else None,
        worker_id="worker-1",
        progress=1.0,
        progress_message=None,
        error_history=[{"error": "upstream 503", "ts": time.time()}] * (3 if failed else 0),
        state_history=[schemas.StateChange(state="PENDING", timestamp=now)],
        idempotency_key=f"key-{i}",
        metadata={"batch": "june", "index": i},
        cancel_requested=False,
        lost_leases=0,
    )


def _tasks(n: int) -> list[Task]:
    return _TASKS.validate_python([_wire(_task_detail(i)) for i in range(n)])


def _workers(n: int) -> WorkerList:
    breaker = {
        "name": "openrouter",
        "state": "CLOSED",
        "failure_count": 0,
        "success_count": 120,
        "opened_at": None,
        "open_until": None,
        "seconds_to_half_open": None,
        "held": False,
        "reason": None,
        "last_error_class": None,
        "opens": 0,
        "hold": None,
    }
    view = schemas.BreakerView(state="closed", fail_count=0, success_count=120)
    now = time.time()
    details = [
        schemas.WorkerDetail(
            worker_id=f"worker-{i}-{'f' * 24}",
            worker_name=f"worker-{i}@host-{i}.example",
            status="stale" if i == 9 else "healthy",
            circuit_breaker=view,
            last_heartbeat=now - (40.0 if i == 9 else 0.4),
            heartbeat_age=40.0 if i == 9 else 0.4,
            active=8,
            completed=1000 + i,
            failed=i,
            concurrency=100,
            host=f"host-{i}.example",
            pid=4000 + i,
            started=now - 3600,
            active_tasks=[{"task_id": f"t{i}-{k:04d}" + "x" * 20} for k in range(20)],
        )
        for i in range(n)
    ]
    answer = schemas.WorkersStatus(
        overall_status="degraded",
        total_workers=n,
        healthy_workers=n - 1,
        stale_workers=1,
        circuit_breaker_states={"closed": n},
        circuit_breaker=breaker,
        worker_details=details,
        timestamp=datetime.now(UTC),
    )
    return WorkerList.model_validate(_wire(answer))


def test_forty_tasks_print_compactly() -> None:
    tasks = Tasks(_tasks(40))
    assert isinstance(tasks, list) and len(tasks) == 40 and tasks[0].task_id.startswith("0193")
    text = repr(tasks)
    assert len(text) < LIMIT, len(text)
    lines = text.splitlines()
    assert lines[0] == "40 task(s): COMPLETED=34, DLQ=6"
    assert len(lines) == 1 + REPR_ROWS + 1 and lines[-1].strip() == "… 20 more"
    first = tasks[0]
    assert first.task_id in lines[1] and "COMPLETED" in lines[1] and "retries 0/3" in lines[1]
    assert "Summary 0" in lines[1]
    failed = tasks[3]
    assert failed.task_id in lines[4] and "DLQ" in lines[4] and "upstream_unavailable" in lines[4]
    assert "The council met" not in text  # the inputs stay out
    html = tasks._repr_html_()
    assert len(html) < HTML_LIMIT, len(html)
    assert html.startswith("<table>") and html.count("<tr>") == 1 + REPR_ROWS + 1
    assert "… 20 more" in html and first.task_id in html


def test_a_page_of_tasks_prints_compactly() -> None:
    page = TaskList(tasks=_tasks(40), page=1, page_size=40, total_items=95, total_pages=3)
    text = repr(page)
    assert len(text) < LIMIT and text.startswith("40 of 95 task(s), page 1: COMPLETED=34, DLQ=6")


def test_few_tasks_list_them_all() -> None:
    tasks = Tasks(_tasks(2))
    lines = repr(tasks).splitlines()
    assert len(lines) == 3 and "more" not in repr(tasks)
    assert repr(Tasks()) == "0 task(s)"


def test_ten_workers_print_compactly() -> None:
    workers = _workers(10)
    assert len(workers) == 10 and len(workers.workers[0].active_tasks) == 20
    text = repr(workers)
    assert len(text) < LIMIT, len(text)
    lines = text.splitlines()
    assert lines[0] == "10 worker(s): 9 healthy, 1 stale (degraded, breaker closed)"
    assert len(lines) == 11
    assert lines[1].strip().startswith("worker-0@host-0.example healthy active 8/100")
    assert "stale" in lines[10] and "seen 40s ago" in lines[10]
    assert "t0-0000" not in text  # per-worker task lists stay out
    html = workers._repr_html_()
    assert len(html) < LIMIT, len(html)
    assert "worker-9@host-9.example" in html and html.count("<tr>") == 11


def test_queue_status_prints_compactly() -> None:
    answer = schemas.QueueStatus(
        queues=schemas.QueueDepthsModel(
            primary=12,
            retry=1,
            scheduled=2,
            dlq=3,
            active=4,
            primary_by_priority=schemas.PriorityDepths(high=2, default=10, low=0),
        ),
        states=schemas.StateCounts(PENDING=12, ACTIVE=4, COMPLETED=1500, DLQ=3),
        retry_ratio=0.2,
        blobs=schemas.BlobUsageModel(count=3, bytes=1 << 20, max_bytes=1 << 30),
    )
    status = QueueStatus.model_validate(_wire(answer))
    text = repr(status)
    assert len(text) < 400
    assert "primary 12 (high 2, default 10)" in text and "dlq 3" in text
    assert "PENDING=12, ACTIVE=4, COMPLETED=1500, DLQ=3" in text and "20.0%" in text
    assert "CANCELLED" not in text  # states with no task are left out
    html = status._repr_html_()
    assert "<table>" in html and "COMPLETED" in html and len(html) < LIMIT
