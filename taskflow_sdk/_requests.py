"""The request builder: one method per API operation, each returning its flow.

:class:`Requests` knows the routes, the bodies and the parsers; it sends nothing. A client
calls ``driver.run(requests.get(task_id, timeout=...))``; batches and ``wait()`` compose these
flows into bigger ones (see :mod:`taskflow_sdk._flows` for what a flow is).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from taskflow_sdk._config import USE_CLIENT_DEFAULT, ClientConfig, Timeout
from taskflow_sdk._files import Upload
from taskflow_sdk._flows import Flow, RequestSpec, request_flow
from taskflow_sdk._params import (
    HistoryQuery,
    ListQuery,
    batch_item,
    check_usd,
    new_idempotency_key,
    submit_body,
    valid_id,
)
from taskflow_sdk._parsers import (
    json_body,
    parse_breaker,
    parse_ids,
    parse_lookup,
    parse_states,
    parse_submitted,
    parse_task_list,
    parser,
)
from taskflow_sdk.models import (
    BatchItem,
    BatchSubmitResult,
    BreakerStatus,
    Budget,
    Health,
    HistoryPage,
    HistoryStats,
    HistoryTask,
    Metrics,
    OpenRouterStatus,
    QueueStatus,
    RequeueReport,
    Task,
    TaskList,
    TaskStatus,
    WorkerList,
)

T = TypeVar("T")

__all__ = [
    "API",
    "BATCH_BYTES",
    "BATCH_CHUNK",
    "HISTORY_PAGE",
    "LOOKUP_MAX",
    "STATES_MAX",
    "Requests",
]

API = "/api/v1"
"""The prefix of every API route."""
BATCH_CHUNK = 1000
"""Items per ``POST /api/v1/tasks/batch`` request in ``submit_many``."""
BATCH_BYTES = 1 << 20
"""About the most JSON per ``POST /api/v1/tasks/batch`` request in ``submit_many`` (1 MiB: half
the server's default body limit; an item bigger than this goes alone)."""
LOOKUP_MAX = 500
"""Task ids per ``POST /api/v1/tasks/lookup`` request (the server takes up to 1,000)."""
STATES_MAX = 1000
"""Task ids per ``POST /api/v1/tasks/states`` request (the server's limit)."""
HISTORY_PAGE = 500
"""Recorded tasks asked per ``GET /api/v1/history`` request (the server may cap it lower at
its ``max_page_size``; the cursor then simply takes more pages)."""
NO_ROUTE = (404, 405)
"""What a server without a route answers to it."""

_task = parser(Task)


def _batch_bounds(bodies: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``(start, end)`` of each chunk of ``bodies``: at most :data:`BATCH_CHUNK` items and,
    unless one item alone is bigger, at most :data:`BATCH_BYTES` of JSON."""
    bounds: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, body in enumerate(bodies):
        item = len(json.dumps(body, separators=(",", ":")))
        if i > start and (i - start >= BATCH_CHUNK or size + item > BATCH_BYTES):
            bounds.append((start, i))
            start, size = i, 0
        size += item + 1
    if start < len(bodies):
        bounds.append((start, len(bodies)))
    return bounds


class Requests:
    """Builds the flow of every API operation for one :class:`ClientConfig`.

    ``has_states_route`` is True until a server answers that it has no
    ``POST /api/v1/tasks/states`` (an older one): ``wait()`` then polls the full lookup route.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.has_states_route = True

    def _flow(self, spec: RequestSpec, parse: Callable[[httpx.Response], T]) -> Flow[T]:
        return request_flow(self.config, spec, parse)

    # submit ---------------------------------------------------------------------------

    def submit(
        self,
        task_type: str,
        payload: Mapping[str, Any] | None,
        *,
        priority: str | None,
        max_retries: int | None,
        idempotency_key: str | None,
        metadata: Mapping[str, Any] | None,
        timeout: Timeout,
    ) -> Flow[Task]:
        """``POST /api/v1/tasks``; the idempotency key (given or new) makes it retriable."""
        body = submit_body(task_type, payload, priority, max_retries, idempotency_key, metadata)
        spec = RequestSpec("POST", f"{API}/tasks", json=body, timeout=timeout)
        return self._flow(spec, lambda r: parse_submitted(r, body))

    def submit_many(
        self, items: Iterable[Mapping[str, Any]], *, timeout: Timeout
    ) -> Flow[BatchSubmitResult]:
        """``POST /api/v1/tasks/batch`` in chunks of at most :data:`BATCH_CHUNK` items and
        about :data:`BATCH_BYTES` of JSON; one merged answer."""
        bodies = [batch_item(item) for item in items]
        merged = BatchSubmitResult()
        for start, end in _batch_bounds(bodies):
            chunk = bodies[start:end]
            spec = RequestSpec("POST", f"{API}/tasks/batch", json={"tasks": chunk}, timeout=timeout)
            part = yield from self._flow(spec, parser(BatchSubmitResult))
            merged.accepted += part.accepted
            merged.failed += part.failed
            merged.created += part.created
            for item in part.items:
                merged.items.append(
                    BatchItem.model_validate({**item.model_dump(), "index": item.index + start})
                )
        if merged.failed:
            merged.detail = f"{merged.failed} of {len(bodies)} items were refused"
        return merged

    def summarize(
        self,
        text: str,
        *,
        options: Mapping[str, Any],
        priority: str | None,
        max_retries: int | None,
        idempotency_key: str | None,
        metadata: Mapping[str, Any] | None,
        timeout: Timeout,
    ) -> Flow[Task]:
        """A summarize task: ``payload = {content: text, **options}``."""
        payload = {"content": text, **{k: v for k, v in options.items() if v is not None}}
        return self.submit(
            "summarize",
            payload,
            priority=priority,
            max_retries=max_retries,
            idempotency_key=idempotency_key,
            metadata=metadata,
            timeout=timeout,
        )

    def extract_pdf(
        self,
        upload: Upload,
        *,
        issue_date: str | None,
        priority: str | None,
        max_retries: int | None,
        idempotency_key: str | None,
        timeout: Timeout,
    ) -> Flow[Task]:
        """A pdfxtract task that uploads the file only when the server does not hold it yet.

        ``HEAD /api/v1/blobs/{sha256}`` first: when the server holds the file, a submit that
        references it by sha256; otherwise the upload with ``POST /api/v1/tasks/pdfxtract``
        (the file's bytes are read then, see :class:`~taskflow_sdk._files.Upload`). The
        idempotency key is the same either way, so the result is one task.
        """
        key = idempotency_key or new_idempotency_key()
        payload: dict[str, Any] = {"blob": upload.sha256, "filename": upload.filename}
        if issue_date:
            payload["issue_date"] = issue_date
        held = RequestSpec(
            "HEAD", f"{API}/blobs/{upload.sha256}", timeout=timeout, accept_statuses=(404,)
        )
        if (yield from self._flow(held, lambda r: r.status_code == 200)):
            return (
                yield from self.submit(
                    "pdfxtract",
                    payload,
                    priority=priority,
                    max_retries=max_retries,
                    idempotency_key=key,
                    metadata=None,
                    timeout=timeout,
                )
            )
        form: dict[str, Any] = {"idempotency_key": key}
        if issue_date:
            form["issue_date"] = issue_date
        if priority is not None:
            form["priority"] = priority
        if max_retries is not None:
            form["max_retries"] = str(max_retries)
        spec = RequestSpec(
            "POST", f"{API}/tasks/pdfxtract", data=form, files={"file": upload}, timeout=timeout
        )
        sent = {"task_type": "pdfxtract", "priority": priority, "max_retries": max_retries}
        sent = {k: v for k, v in sent.items() if v is not None}
        return (yield from self._flow(spec, lambda r: parse_submitted(r, sent)))

    # tasks ------------------------------------------------------------------------------

    def get(self, task_id: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Flow[Task]:
        """``GET /api/v1/tasks/{id}``."""
        spec = RequestSpec("GET", f"{API}/tasks/{valid_id(task_id)}", timeout=timeout)
        return self._flow(spec, _task)

    def lookup(
        self, task_ids: Sequence[str], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Flow[list[Task]]:
        """``POST /api/v1/tasks/lookup``: the full detail of many tasks in one request (at most
        :data:`LOOKUP_MAX`).

        Answers the tasks found; an id the server does not know is fetched alone, so it raises
        the usual :class:`~taskflow_sdk.errors.NotFoundError`.
        """
        spec = RequestSpec(
            "POST", f"{API}/tasks/lookup", json={"task_ids": list(task_ids)}, timeout=timeout
        )
        tasks, missing = yield from self._flow(spec, parse_lookup)
        for task_id in missing:
            tasks.append((yield from self.get(task_id, timeout=timeout)))
        return tasks

    def states(
        self, task_ids: Sequence[str], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Flow[tuple[list[TaskStatus], list[str]] | None]:
        """``POST /api/v1/tasks/states``: where many tasks stand (at most :data:`STATES_MAX`),
        without their input or result; returns the statuses found and the ids not found.

        ``None`` when the server has no such route (it is then remembered in
        ``has_states_route``).
        """
        spec = RequestSpec(
            "POST",
            f"{API}/tasks/states",
            json={"task_ids": list(task_ids)},
            timeout=timeout,
            accept_statuses=NO_ROUTE,
        )
        response = yield from self._flow(spec, lambda r: r)
        if response.status_code in NO_ROUTE:
            self.has_states_route = False
            return None
        return parse_states(response)

    def statuses(
        self, task_ids: Sequence[str], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Flow[list[TaskStatus]]:
        """Where any number of tasks stand (state, retry count, progress; no input, no
        result), in :data:`STATES_MAX` ids per request; ids the server does not know are left
        out. An older server without the slim route is asked for the full tasks instead."""
        ids = list(dict.fromkeys(str(t) for t in task_ids))
        found: list[TaskStatus] = []
        for start in range(0, len(ids), STATES_MAX):
            chunk = ids[start : start + STATES_MAX]
            answer = None
            if self.has_states_route is not False:
                answer = yield from self.states(chunk, timeout=timeout)
            if answer is not None:
                found.extend(answer[0])
                continue
            spec = RequestSpec(
                "POST", f"{API}/tasks/lookup", json={"task_ids": chunk}, timeout=timeout
            )
            tasks, _missing = yield from self._flow(spec, parse_lookup)
            found.extend(TaskStatus.of(t) for t in tasks)
        return found

    def cancel(self, task_id: str, *, timeout: Timeout) -> Flow[Task]:
        """``POST .../{id}/cancel``: the task's state after it (CANCELLED, or ACTIVE with
        ``cancel_requested``)."""
        spec = RequestSpec(
            "POST", f"{API}/tasks/{valid_id(task_id)}/cancel", timeout=timeout, idempotent=False
        )
        return self._flow(spec, _task)

    def retry(self, task_id: str, *, reset_retry_count: bool, timeout: Timeout) -> Flow[Task]:
        """``POST .../{id}/retry``: the task as requeued (PENDING, its retry count)."""
        spec = RequestSpec(
            "POST",
            f"{API}/tasks/{valid_id(task_id)}/retry",
            json={"reset_retry_count": reset_retry_count},
            timeout=timeout,
            idempotent=False,
        )
        return self._flow(spec, _task)

    def delete(self, task_id: str, *, timeout: Timeout) -> Flow[None]:
        """``DELETE /api/v1/tasks/{id}``."""
        spec = RequestSpec("DELETE", f"{API}/tasks/{valid_id(task_id)}", timeout=timeout)
        yield from self._flow(spec, json_body)
        return None

    # collections ---------------------------------------------------------------------------

    def list_page(self, query: ListQuery, page: int, *, timeout: Timeout) -> Flow[TaskList]:
        """One page of ``GET /api/v1/tasks/``."""
        spec = RequestSpec("GET", f"{API}/tasks", params=query.params(page), timeout=timeout)
        return self._flow(spec, parse_task_list)

    def dlq(self, limit: int, *, timeout: Timeout) -> Flow[TaskList]:
        """``GET /api/v1/queues/dlq?limit=``."""
        spec = RequestSpec("GET", f"{API}/queues/dlq", params={"limit": limit}, timeout=timeout)
        return self._flow(spec, parse_task_list)

    def queues(self, *, timeout: Timeout) -> Flow[QueueStatus]:
        """``GET /api/v1/queues/status``."""
        spec = RequestSpec("GET", f"{API}/queues/status", timeout=timeout)
        return self._flow(spec, parser(QueueStatus))

    def queue_tasks(self, name: str, limit: int, *, timeout: Timeout) -> Flow[list[str]]:
        """``GET /api/v1/queues/{name}/tasks?limit=``: ids in the order they will be taken."""
        spec = RequestSpec(
            "GET",
            f"{API}/queues/{quote(name, safe='')}/tasks",
            params={"limit": limit},
            timeout=timeout,
        )
        return self._flow(spec, parse_ids)

    def requeue_orphaned(self, *, timeout: Timeout) -> Flow[RequeueReport]:
        """``POST /api/v1/tasks/requeue-orphaned``."""
        spec = RequestSpec("POST", f"{API}/tasks/requeue-orphaned", timeout=timeout)
        return self._flow(spec, parser(RequeueReport))

    # history -------------------------------------------------------------------------------

    def history_page(
        self, query: HistoryQuery, limit: int, cursor: str | None, *, timeout: Timeout
    ) -> Flow[HistoryPage]:
        """One page of ``GET /api/v1/history`` (at most ``limit`` tasks after ``cursor``)."""
        params = {**query.params(), "limit": limit, "cursor": cursor}
        spec = RequestSpec("GET", f"{API}/history", params=params, timeout=timeout)
        return self._flow(spec, parser(HistoryPage))

    def history(
        self, query: HistoryQuery, limit: int | None, *, timeout: Timeout
    ) -> Flow[list[HistoryTask]]:
        """Recorded tasks newest first, following ``next_cursor`` until ``limit`` tasks (or
        every match, for ``None``) are in."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit}")
        found: list[HistoryTask] = []
        cursor: str | None = None
        while limit is None or len(found) < limit:
            size = HISTORY_PAGE if limit is None else min(HISTORY_PAGE, limit - len(found))
            page = yield from self.history_page(query, size, cursor, timeout=timeout)
            found.extend(page.tasks)
            cursor = page.next_cursor
            if cursor is None or not page.tasks:
                break
        return found if limit is None else found[:limit]

    def history_stats(
        self, query: HistoryQuery, bucket: str, *, timeout: Timeout
    ) -> Flow[HistoryStats]:
        """``GET /api/v1/history/stats?bucket=``: one entry per day or hour."""
        if bucket not in ("day", "hour"):
            raise ValueError(f"bucket must be 'day' or 'hour', not {bucket!r}")
        params = {**query.params(), "bucket": bucket}
        spec = RequestSpec("GET", f"{API}/history/stats", params=params, timeout=timeout)
        return self._flow(spec, parser(HistoryStats))

    # system --------------------------------------------------------------------------------

    def workers(self, *, timeout: Timeout) -> Flow[WorkerList]:
        """``GET /api/v1/workers/``."""
        return self._flow(RequestSpec("GET", f"{API}/workers", timeout=timeout), parser(WorkerList))

    def breaker_status(self, *, timeout: Timeout) -> Flow[BreakerStatus]:
        """``GET /api/v1/workers/circuit-breaker``: the shared breaker."""
        spec = RequestSpec("GET", f"{API}/workers/circuit-breaker", timeout=timeout)
        return self._flow(spec, parse_breaker)

    def breaker_open(self, reason: str | None, *, timeout: Timeout) -> Flow[BreakerStatus]:
        """``POST /api/v1/workers/open-circuit-breaker`` (held open until reset)."""
        body = {"reason": reason} if reason else None
        spec = RequestSpec(
            "POST", f"{API}/workers/open-circuit-breaker", json=body, timeout=timeout
        )
        return self._flow(spec, parse_breaker)

    def breaker_reset(self, *, timeout: Timeout) -> Flow[BreakerStatus]:
        """``POST /api/v1/workers/reset-circuit-breaker``."""
        spec = RequestSpec("POST", f"{API}/workers/reset-circuit-breaker", timeout=timeout)
        return self._flow(spec, parse_breaker)

    def openrouter_status(self, force_refresh: bool, *, timeout: Timeout) -> Flow[OpenRouterStatus]:
        """``GET /api/v1/openrouter/status``."""
        params = {"force_refresh": "true"} if force_refresh else None
        spec = RequestSpec("GET", f"{API}/openrouter/status", params=params, timeout=timeout)
        return self._flow(spec, parser(OpenRouterStatus))

    def openrouter_budget(self, *, timeout: Timeout) -> Flow[Budget]:
        """``GET /api/v1/openrouter/budget``: the daily cap and today's spend."""
        spec = RequestSpec("GET", f"{API}/openrouter/budget", timeout=timeout)
        return self._flow(spec, parser(Budget))

    def openrouter_set_budget(self, daily_usd: float | None, *, timeout: Timeout) -> Flow[Budget]:
        """``PUT /api/v1/openrouter/budget`` ``{daily_usd}``: set the daily cap (``None``
        removes it); a budget hold lifts when the cap is raised above today's spend."""
        body = {"daily_usd": check_usd(daily_usd, "daily_usd")}
        spec = RequestSpec("PUT", f"{API}/openrouter/budget", json=body, timeout=timeout)
        return self._flow(spec, parser(Budget))

    def openrouter_metrics(self, days: int, *, timeout: Timeout) -> Flow[Metrics]:
        """``GET /api/v1/openrouter/metrics?days=``."""
        spec = RequestSpec(
            "GET", f"{API}/openrouter/metrics", params={"days": days}, timeout=timeout
        )
        return self._flow(spec, parser(Metrics))

    def health(self, *, timeout: Timeout) -> Flow[Health]:
        """``GET /health`` (no token needed)."""
        return self._flow(RequestSpec("GET", "/health", timeout=timeout), parser(Health))

    def events_spec(
        self, last_event_id: str | None, types: Sequence[str] | None, task_id: str | None
    ) -> RequestSpec:
        """The request of one connection to ``GET /api/v1/events`` (read timeout 60 s: the
        server sends a heartbeat every 15 s)."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        params = {"types": ",".join(types) if types else None, "task_id": task_id}
        return RequestSpec(
            "GET",
            f"{API}/events",
            params=params,
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout.connect or 10.0, read=60.0),
        )
