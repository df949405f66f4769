"""The asynchronous client, on ``httpx.AsyncClient``: the same surface as
:class:`~taskflow_sdk.Client`, with coroutines.

Await it at the top level of a notebook or inside any running loop; it creates no loop and
patches none. Every method builds the same flow as :class:`~taskflow_sdk.Client`'s and runs it
on the client's :class:`~taskflow_sdk._drivers.AsyncHttpxDriver`; no logic lives here.
"""

from __future__ import annotations

import asyncio
import builtins
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

import httpx

from taskflow_sdk._config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    USE_CLIENT_DEFAULT,
    Timeout,
    TimeoutTypes,
    resolve_config,
    safe_url,
)
from taskflow_sdk._drivers import AsyncHttpxDriver
from taskflow_sdk._files import FileInput, read_upload
from taskflow_sdk._flows import Flow
from taskflow_sdk._params import HistoryQuery, ListQuery, TimeArg, task_id_of
from taskflow_sdk._wait import (
    STREAM_CONNECT_SECONDS,
    TERMINAL_EVENT_TYPES,
    WaitState,
    stream_wait_flow,
    wait_flow,
    wait_ids,
)
from taskflow_sdk.batch import BATCH_RUNS_KEPT, AsyncBatchRun
from taskflow_sdk.events import AsyncEventPump, AsyncEventStream, EventCursor
from taskflow_sdk.models import (
    BatchSubmitResult,
    BreakerStatus,
    Budget,
    Health,
    HistoryStats,
    Metrics,
    OpenRouterStatus,
    QueueStatus,
    RequeueReport,
    Task,
    TaskList,
    Tasks,
    TaskState,
    TaskStatus,
    WorkerList,
    history_frame,
    tasks_frame,
)
from taskflow_sdk.progress import Progress

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

__all__ = ["AsyncClient", "AsyncTaskPager"]


class AsyncClient:
    """An asyncio client of the AsyncTaskFlow API (same options as
    :class:`~taskflow_sdk.Client`).

    Args:
        base_url: the server; default ``TASKFLOW_URL``, else ``http://127.0.0.1:8000``.
        token: the bearer token; default ``TASKFLOW_API_TOKEN``.
        timeout: per-request timeout (seconds, ``httpx.Timeout`` or ``None``); every method
            also takes ``timeout=``.
        max_retries: automatic retries of idempotent requests (connection errors, 429, 5xx),
            with backoff and jitter honouring ``Retry-After``; submits keep one idempotency key
            across their retries.
        http_client: an ``httpx.AsyncClient`` to use; the client does not close it.

    Use it as ``async with AsyncClient() as client:``, or ``await client.close()``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = resolve_config(base_url, token, timeout, max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._config.timeout)
        self._driver = AsyncHttpxDriver(self._http, self._config)
        self._requests = self._driver.requests
        self.breaker = AsyncBreaker(self)
        """The shared circuit breaker: ``await open()``, ``reset()``, ``status()``."""
        self.openrouter = AsyncOpenRouter(self)
        """The upstream: ``await status()``, ``metrics()``, ``budget()``, ``set_budget()``."""
        self.batch_runs: deque[AsyncBatchRun] = deque(maxlen=BATCH_RUNS_KEPT)
        """The last :data:`~taskflow_sdk.batch.BATCH_RUNS_KEPT` batches started from this
        client, oldest first (a control panel shows them); older ones are forgotten here but
        live on while you hold them."""

    @property
    def base_url(self) -> str:
        """The server's URL."""
        return self._config.base_url

    async def _run(self, flow: Flow[T]) -> T:
        return await self._driver.run(flow)

    # ------------------------------------------------------------------ submit

    async def summarize(
        self,
        text: str,
        *,
        sentences: int | None = None,
        language: str | None = None,
        priority: str | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Task:
        """Submit a summarize task for ``text`` (see :meth:`Client.summarize`)."""
        options = {"sentences": sentences, "language": language}
        return await self._run(
            self._requests.summarize(
                text,
                options=options,
                priority=priority,
                max_retries=max_retries,
                idempotency_key=idempotency_key,
                metadata=metadata,
                timeout=timeout,
            )
        )

    async def extract_pdf(
        self,
        file: FileInput,
        issue_date: str | None = None,
        *,
        filename: str | None = None,
        priority: str | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Task:
        """Submit a pdfxtract task; the file is uploaded only when the server lacks it (see
        :meth:`Client.extract_pdf`)."""
        upload = await asyncio.to_thread(read_upload, file, filename)
        return await self._run(
            self._requests.extract_pdf(
                upload,
                issue_date=issue_date,
                priority=priority,
                max_retries=max_retries,
                idempotency_key=idempotency_key,
                timeout=timeout,
            )
        )

    async def submit(
        self,
        task_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: str | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Task:
        """Submit a task of any registered type (see :meth:`Client.submit`)."""
        return await self._run(
            self._requests.submit(
                task_type,
                payload,
                priority=priority,
                max_retries=max_retries,
                idempotency_key=idempotency_key,
                metadata=metadata,
                timeout=timeout,
            )
        )

    async def submit_many(
        self, items: Iterable[Mapping[str, Any]], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> BatchSubmitResult:
        """Submit many tasks in few requests (see :meth:`Client.submit_many`)."""
        return await self._run(self._requests.submit_many(items, timeout=timeout))

    # ------------------------------------------------------------------ tasks

    async def get(self, task: Task | str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Task:
        """The task with every field (raises :class:`~taskflow_sdk.NotFoundError`)."""
        return await self._run(self._requests.get(task_id_of(task), timeout=timeout))

    def list(
        self,
        *,
        state: TaskState | str | None = None,
        task_type: str | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        id_prefix: str | None = None,
        sort: str = "-created_at",
        page_size: int = 100,
        limit: int | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> AsyncTaskPager:
        """Tasks matching the filters, as an async iterator over pages fetched as needed (see
        :meth:`Client.list`); ``await pager.to_pandas()`` collects them."""
        query = ListQuery.make(
            state=state,
            task_type=task_type,
            since=since,
            until=until,
            id_prefix=id_prefix,
            sort=sort,
            page_size=page_size,
            limit=limit,
        )
        return AsyncTaskPager(self, query, timeout)

    @overload
    async def wait(  # type: ignore[overload-overlap]
        self,
        tasks: Task | str,
        *,
        timeout: float | None = ...,
        poll_interval: float = ...,
        stream: bool = ...,
        raise_on_failure: bool = ...,
        progress: bool = ...,
    ) -> Task: ...

    @overload
    async def wait(
        self,
        tasks: Sequence[Task | str],
        *,
        timeout: float | None = ...,
        poll_interval: float = ...,
        stream: bool = ...,
        raise_on_failure: bool = ...,
        progress: bool = ...,
    ) -> Tasks: ...

    async def wait(
        self,
        tasks: Task | str | Sequence[Task | str],
        *,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        stream: bool = False,
        raise_on_failure: bool = False,
        progress: bool = False,
    ) -> Task | Tasks:
        """Wait until the task (or every task of a list) has finished (see
        :meth:`Client.wait`)."""
        ids, single = wait_ids(tasks)
        state = WaitState(ids, timeout, raise_on_failure)
        bar = Progress(state, name="wait") if progress else None
        try:
            if stream:
                done = await self._wait_stream(state, poll_interval, bar)
            else:
                flow = wait_flow(
                    self._requests, state, poll_interval=poll_interval, on_progress=bar
                )
                done = await self._run(flow)
        finally:
            if bar is not None:
                bar.close()
        return done[0] if single else Tasks(done)

    async def _wait_stream(
        self, state: WaitState, poll_interval: float, bar: Progress | None
    ) -> builtins.list[Task]:
        pump = AsyncEventPump(self.events(types=TERMINAL_EVENT_TYPES))
        try:
            await pump.wait_connected(state.clip(STREAM_CONNECT_SECONDS))
            flow = stream_wait_flow(
                self._requests, state, poll_interval=poll_interval, on_progress=bar
            )
            return await self._driver.run(flow, events=pump.next)
        finally:
            await pump.aclose()

    async def cancel(self, task: Task | str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Task:
        """Cancel a task (see :meth:`Client.cancel`)."""
        return await self._run(self._requests.cancel(task_id_of(task), timeout=timeout))

    async def retry(
        self,
        task: Task | str,
        reset_retry_count: bool = False,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Task:
        """Send a DLQ, FAILED or CANCELLED task back to the queue (see :meth:`Client.retry`)."""
        return await self._run(
            self._requests.retry(
                task_id_of(task), reset_retry_count=reset_retry_count, timeout=timeout
            )
        )

    async def delete(self, task: Task | str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        """Delete a task, whatever its state."""
        await self._run(self._requests.delete(task_id_of(task), timeout=timeout))

    # ------------------------------------------------------------------ history

    async def history(
        self,
        *,
        since: TimeArg = None,
        until: TimeArg = None,
        time_field: str = "created",
        task_type: str | None = None,
        state: TaskState | str | Sequence[TaskState | str] | None = None,
        error_class: str | None = None,
        batch: str | None = None,
        min_cost: float | None = None,
        max_cost: float | None = None,
        limit: int | None = 1000,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pd.DataFrame:
        """Recorded tasks from the server's PostgreSQL history, newest first, as a DataFrame
        (one row per task, the columns of :data:`~taskflow_sdk.models.HISTORY_COLUMNS`).

        Pages are followed through the server's cursor until ``limit`` tasks are in (``None``:
        every match). Filters: ``since``/``until`` (datetimes, naive = UTC; dates; epoch
        seconds; ISO text; both inclusive) bound the creation time, or the finish time with
        ``time_field="finished"``; ``task_type``; ``state`` (one or several); ``error_class``
        (the last error's class); ``batch``; ``min_cost``/``max_cost`` in USD.

        Raises :class:`~taskflow_sdk.HistoryDisabledError` when the server has no history
        (no ``TASKFLOW_DATABASE_URL``) and :class:`~taskflow_sdk.UnprocessableEntityError`
        for a filter it refuses (``detail`` says what to fix).
        """
        query = HistoryQuery.make(
            since=since,
            until=until,
            time_field=time_field,
            task_type=task_type,
            state=state,
            error_class=error_class,
            batch=batch,
            min_cost=min_cost,
            max_cost=max_cost,
        )
        tasks = await self._run(self._requests.history(query, limit, timeout=timeout))
        return history_frame(tasks)

    async def history_stats(
        self,
        *,
        bucket: str = "day",
        since: TimeArg = None,
        until: TimeArg = None,
        time_field: str = "created",
        task_type: str | None = None,
        state: TaskState | str | Sequence[TaskState | str] | None = None,
        error_class: str | None = None,
        batch: str | None = None,
        min_cost: float | None = None,
        max_cost: float | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pd.DataFrame:
        """The history summed up per UTC ``bucket`` (``"day"`` or ``"hour"``) as a tidy
        DataFrame, one row per bucket, oldest first (empty buckets in the range are zeros):
        ``bucket`` (its start), ``tasks``, a count per state, ``failures`` and
        ``failures_<class>`` (DLQ and FAILED tasks by error class), ``timed``,
        ``duration_p50_s`` / ``duration_p95_s`` (finished - started), ``cost_usd`` and the
        tokens. Filters as in :meth:`history`; ``time_field`` also picks the time bucketed.
        :meth:`history_buckets` gives the same without pandas."""
        stats = await self._run(
            self._requests.history_stats(
                HistoryQuery.make(
                    since=since,
                    until=until,
                    time_field=time_field,
                    task_type=task_type,
                    state=state,
                    error_class=error_class,
                    batch=batch,
                    min_cost=min_cost,
                    max_cost=max_cost,
                ),
                bucket,
                timeout=timeout,
            )
        )
        return stats.to_pandas()

    async def history_buckets(
        self,
        *,
        bucket: str = "day",
        since: TimeArg = None,
        until: TimeArg = None,
        time_field: str = "created",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> HistoryStats:
        """The stats of :meth:`history_stats` (over every task in the range) as a model, without
        importing pandas: what the control panel's History tab reads."""
        query = HistoryQuery.make(
            since=since,
            until=until,
            time_field=time_field,
            task_type=None,
            state=None,
            error_class=None,
            batch=None,
            min_cost=None,
            max_cost=None,
        )
        return await self._run(self._requests.history_stats(query, bucket, timeout=timeout))

    # ------------------------------------------------------------------ system

    async def dlq(self, limit: int = 100, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> TaskList:
        """The dead-lettered tasks, oldest first (at most ``limit``, up to 1000)."""
        return await self._run(self._requests.dlq(limit, timeout=timeout))

    async def statuses(
        self, task_ids: Sequence[str], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> builtins.list[TaskStatus]:
        """Where many tasks stand (state, ``updated_at``, retry count, progress), without
        their input or result: the cheap way to follow thousands of tasks. Ids the server does
        not know are left out."""
        return await self._run(self._requests.statuses(task_ids, timeout=timeout))

    async def queues(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> QueueStatus:
        """Queue depths and tasks per state."""
        return await self._run(self._requests.queues(timeout=timeout))

    async def queue_tasks(
        self, name: str = "primary", limit: int = 10, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> builtins.list[str]:
        """Ids waiting in one queue (primary, retry, scheduled, dlq or active), in the order
        they will be taken; at most ``limit`` (up to 1000)."""
        return await self._run(self._requests.queue_tasks(name, limit, timeout=timeout))

    async def requeue_orphaned(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> RequeueReport:
        """Repair tasks that no queue holds for their state (on a healthy system: none found)."""
        return await self._run(self._requests.requeue_orphaned(timeout=timeout))

    async def workers(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> WorkerList:
        """The workers seen recently, with their heartbeats."""
        return await self._run(self._requests.workers(timeout=timeout))

    async def health(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Health:
        """The server's component health (``/health``; no token needed)."""
        return await self._run(self._requests.health(timeout=timeout))

    def events(
        self,
        last_event_id: str | None = None,
        types: Sequence[str] | None = None,
        *,
        task_id: str | None = None,
    ) -> AsyncEventStream:
        """Live task events as an async iterator that resumes after dropped connections (see
        :meth:`Client.events`)."""
        cursor = EventCursor(last_event_id, types, task_id)
        return AsyncEventStream(
            self._driver,
            lambda after: self._requests.events_spec(after, cursor.types, task_id),
            cursor,
        )

    async def batch(
        self,
        texts: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
        folder: str | None = None,
        pattern: str = "*.pdf",
        summarize: bool = True,
        name: str | None = None,
        **opts: Any,
    ) -> AsyncBatchRun:
        """Submit a batch idempotently and return its :class:`~taskflow_sdk.AsyncBatchRun` (see
        :meth:`Client.batch`). ``name``: the label the control panel and progress bars show
        (``run.name``; not part of the idempotency keys)."""
        run = AsyncBatchRun(
            self._driver,
            texts=texts,
            paths=paths,
            folder=folder,
            pattern=pattern,
            summarize=summarize,
            name=name,
            **opts,
        )
        await run.submit()
        self.batch_runs.append(run)
        return run

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Close the connections (not those of an ``http_client`` you passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={safe_url(self.base_url)!r})"


class AsyncBreaker:
    """The shared circuit breaker of the upstream (``client.breaker``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def status(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BreakerStatus:
        """Its state, counters and time to half-open."""
        c = self._client
        return await c._run(c._requests.breaker_status(timeout=timeout))

    async def open(
        self, reason: str | None = None, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> BreakerStatus:
        """Hold it open until :meth:`reset`: workers stop claiming LLM tasks (they wait)."""
        c = self._client
        return await c._run(c._requests.breaker_open(reason, timeout=timeout))

    async def reset(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BreakerStatus:
        """Close it and clear its counters: workers resume."""
        c = self._client
        return await c._run(c._requests.breaker_reset(timeout=timeout))


class AsyncOpenRouter:
    """The LLM upstream's key status, daily metrics and daily budget (``client.openrouter``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def status(
        self, force_refresh: bool = False, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> OpenRouterStatus:
        """The key's state (cached 60 s by the server unless ``force_refresh``)."""
        c = self._client
        return await c._run(c._requests.openrouter_status(force_refresh, timeout=timeout))

    async def metrics(self, days: int = 7, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Metrics:
        """Calls, failures, tokens and cost per day for the last ``days`` days."""
        c = self._client
        return await c._run(c._requests.openrouter_metrics(days, timeout=timeout))

    async def budget(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Budget:
        """The daily spending cap and today's spend (see :meth:`OpenRouter.budget`)."""
        c = self._client
        return await c._run(c._requests.openrouter_budget(timeout=timeout))

    async def set_budget(
        self, daily_usd: float | None, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Budget:
        """Set the daily spending cap in USD, ``None`` to remove it (see
        :meth:`OpenRouter.set_budget`)."""
        c = self._client
        return await c._run(c._requests.openrouter_set_budget(daily_usd, timeout=timeout))


class AsyncTaskPager:
    """Tasks of ``AsyncClient.list()``: ``async for`` every match, ``pages()`` for the raw
    pages, ``await to_pandas()`` / ``await to_list()`` to collect."""

    def __init__(self, client: AsyncClient, query: ListQuery, timeout: Timeout) -> None:
        self._client = client
        self._query = query
        self._timeout = timeout

    async def pages(self) -> AsyncIterator[TaskList]:
        """Each page, in order."""
        page = 1
        while True:
            flow = self._client._requests.list_page(self._query, page, timeout=self._timeout)
            result = await self._client._run(flow)
            yield result
            if not result.tasks or page >= result.total_pages:
                return
            page += 1

    async def _items(self) -> AsyncIterator[Task]:
        limit = self._query.limit
        count = 0
        async for page in self.pages():
            for task in page.tasks:
                if not self._query.keep(task):
                    continue
                if limit is not None and count >= limit:
                    return
                count += 1
                yield task
            if limit is not None and count >= limit:
                return

    def __aiter__(self) -> AsyncIterator[Task]:
        return self._items()

    async def to_list(self) -> builtins.list[Task]:
        """Every matching task."""
        return [task async for task in self._items()]

    async def to_pandas(self) -> pd.DataFrame:
        """Every matching task, one row each."""
        return tasks_frame(await self.to_list())
