"""The synchronous client, on ``httpx.Client``.

It never touches an event loop, so it works the same in scripts, threads and notebooks. Every
method builds a flow (:mod:`taskflow_sdk._requests`, :mod:`taskflow_sdk._wait`) and runs it on
the client's :class:`~taskflow_sdk._drivers.HttpxDriver`; no logic lives here.
"""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from taskflow_sdk._drivers import HttpxDriver
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
from taskflow_sdk.batch import BATCH_RUNS_KEPT, BatchRun
from taskflow_sdk.events import EventCursor, EventPump, EventStream
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

__all__ = ["Client", "TaskPager"]


class Client:
    """A client of the AsyncTaskFlow API.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000``; default ``TASKFLOW_URL``, else
            ``http://127.0.0.1:8000``.
        token: the bearer token; default ``TASKFLOW_API_TOKEN`` (none when unset).
        timeout: per-request timeout in seconds (or an ``httpx.Timeout``; ``None``: no limit).
            Every method also takes ``timeout=`` for one call.
        max_retries: automatic retries of idempotent requests after a connection error, a 429
            or a 5xx, with exponential backoff and jitter honouring ``Retry-After``. Submits are
            idempotent: each call sends one idempotency key, reused by its retries.
        http_client: an ``httpx.Client`` to use (its transport, proxies, limits); the client
            does not close it.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._config = resolve_config(base_url, token, timeout, max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._config.timeout)
        self._driver = HttpxDriver(self._http, self._config)
        self._requests = self._driver.requests
        self.breaker = Breaker(self)
        """The shared circuit breaker: ``open()``, ``reset()``, ``status()``."""
        self.openrouter = OpenRouter(self)
        """The upstream: ``status()``, ``metrics()``, ``budget()``, ``set_budget()``."""
        self.batch_runs: deque[BatchRun] = deque(maxlen=BATCH_RUNS_KEPT)
        """The last :data:`~taskflow_sdk.batch.BATCH_RUNS_KEPT` batches started from this
        client, oldest first (a control panel shows them); older ones are forgotten here but
        live on while you hold them."""

    @property
    def base_url(self) -> str:
        """The server's URL."""
        return self._config.base_url

    def _run(self, flow: Flow[T]) -> T:
        return self._driver.run(flow)

    # ------------------------------------------------------------------ submit

    def summarize(
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
        """Submit a summarize task for ``text`` (``sentences``: length of the summary,
        ``language``: of the summary, default the text's). Returns the new (or, for a repeated
        ``idempotency_key``, the first) task; ``wait()`` for its result."""
        options = {"sentences": sentences, "language": language}
        return self._run(
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

    def extract_pdf(
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
        """Submit a pdfxtract task for a PDF (a path, its bytes or a binary file object).

        The file is uploaded only when the server does not hold it yet (it is referenced by
        sha256). ``issue_date`` (e.g. ``2024-05-31``) is passed to the extraction.
        """
        upload = read_upload(file, filename)
        return self._run(
            self._requests.extract_pdf(
                upload,
                issue_date=issue_date,
                priority=priority,
                max_retries=max_retries,
                idempotency_key=idempotency_key,
                timeout=timeout,
            )
        )

    def submit(
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
        """Submit a task of any registered type (``demo.noop``, ``summarize``...).

        ``priority``: high, default or low. ``max_retries``: retries the server allows this
        task (default: the server's). ``idempotency_key``: a repeat returns the first task
        (``created`` False); without one, a fresh key is used for this call and its retries.
        """
        return self._run(
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

    def submit_many(
        self, items: Iterable[Mapping[str, Any]], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> BatchSubmitResult:
        """Submit many tasks in few requests. Each item is shaped like :meth:`submit`'s
        arguments: ``{"task_type": ..., "payload": {...}, "priority": ..., "idempotency_key":
        ...}``. Items are validated one by one: refused ones are reported, not raised."""
        return self._run(self._requests.submit_many(items, timeout=timeout))

    # ------------------------------------------------------------------ tasks

    def get(self, task: Task | str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Task:
        """The task with every field (raises :class:`~taskflow_sdk.NotFoundError`)."""
        return self._run(self._requests.get(task_id_of(task), timeout=timeout))

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
    ) -> TaskPager:
        """Tasks matching the filters, fetched page by page as you iterate.

        ``sort``: a field (created_at, updated_at, completed_at, state, task_type, priority,
        retry_count), ``-`` in front for descending. ``since``/``until``: dates or datetimes
        (naive = UTC). ``limit``: stop after that many tasks. ``.to_pandas()`` collects them.
        """
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
        return TaskPager(self, query, timeout)

    @overload
    def wait(  # type: ignore[overload-overlap]
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
    def wait(
        self,
        tasks: Sequence[Task | str],
        *,
        timeout: float | None = ...,
        poll_interval: float = ...,
        stream: bool = ...,
        raise_on_failure: bool = ...,
        progress: bool = ...,
    ) -> Tasks: ...

    def wait(
        self,
        tasks: Task | str | Sequence[Task | str],
        *,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        stream: bool = False,
        raise_on_failure: bool = False,
        progress: bool = False,
    ) -> Task | Tasks:
        """Wait until the task (or every task of a list) has finished; returns it (them, in
        order, as :class:`~taskflow_sdk.models.Tasks`: a ``list`` that prints compactly) with
        every field.

        Polling asks only where the unfinished tasks stand (state, progress, retry count) and
        fetches each task's full detail once, when it has finished. ``timeout``: seconds,
        ``None`` for no limit; raises :class:`~taskflow_sdk.TaskTimeout` (``.pending``: the
        unfinished tasks as last seen, state and progress only; ``.done``). ``stream``: follow
        the event stream instead of polling (fewer requests for long tasks).
        ``raise_on_failure``: raise :class:`~taskflow_sdk.TaskFailed` as soon as a task ends in
        DLQ, FAILED or CANCELLED. ``progress``: show a progress bar (a widget in notebooks, tqdm
        elsewhere).
        """
        ids, single = wait_ids(tasks)
        state = WaitState(ids, timeout, raise_on_failure)
        bar = Progress(state, name="wait") if progress else None
        try:
            if stream:
                done = self._wait_stream(state, poll_interval, bar)
            else:
                flow = wait_flow(
                    self._requests, state, poll_interval=poll_interval, on_progress=bar
                )
                done = self._run(flow)
        finally:
            if bar is not None:
                bar.close()
        return done[0] if single else Tasks(done)

    def _wait_stream(
        self, state: WaitState, poll_interval: float, bar: Progress | None
    ) -> builtins.list[Task]:
        pump = EventPump(self.events(types=TERMINAL_EVENT_TYPES))
        try:
            pump.wait_connected(state.clip(STREAM_CONNECT_SECONDS))
            flow = stream_wait_flow(
                self._requests, state, poll_interval=poll_interval, on_progress=bar
            )
            return self._driver.run(flow, events=pump.next)
        finally:
            pump.close()

    def cancel(self, task: Task | str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Task:
        """Cancel a task: PENDING/SCHEDULED/DLQ at once; an ACTIVE one is asked to stop (its
        ``cancel_requested`` is True until its worker stops it). Returns its state after the
        request (``task_id``, ``state``, ``cancel_requested``)."""
        return self._run(self._requests.cancel(task_id_of(task), timeout=timeout))

    def retry(
        self,
        task: Task | str,
        reset_retry_count: bool = False,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Task:
        """Send a DLQ, FAILED or CANCELLED task back to the queue; ``reset_retry_count`` gives it
        its retries back. Returns it as requeued (``task_id``, ``state`` PENDING,
        ``retry_count``)."""
        return self._run(
            self._requests.retry(
                task_id_of(task), reset_retry_count=reset_retry_count, timeout=timeout
            )
        )

    def delete(self, task: Task | str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        """Delete a task, whatever its state."""
        self._run(self._requests.delete(task_id_of(task), timeout=timeout))

    # ------------------------------------------------------------------ history

    def history(
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
        tasks = self._run(self._requests.history(query, limit, timeout=timeout))
        return history_frame(tasks)

    def history_stats(
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
        stats = self._run(
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

    def history_buckets(
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
        return self._run(self._requests.history_stats(query, bucket, timeout=timeout))

    # ------------------------------------------------------------------ system

    def dlq(self, limit: int = 100, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> TaskList:
        """The dead-lettered tasks, oldest first (at most ``limit``, up to 1000)."""
        return self._run(self._requests.dlq(limit, timeout=timeout))

    def statuses(
        self, task_ids: Sequence[str], *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> builtins.list[TaskStatus]:
        """Where many tasks stand (state, ``updated_at``, retry count, progress), without
        their input or result: the cheap way to follow thousands of tasks. Ids the server does
        not know are left out."""
        return self._run(self._requests.statuses(task_ids, timeout=timeout))

    def queues(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> QueueStatus:
        """Queue depths and tasks per state."""
        return self._run(self._requests.queues(timeout=timeout))

    def queue_tasks(
        self, name: str = "primary", limit: int = 10, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> builtins.list[str]:
        """Ids waiting in one queue (primary, retry, scheduled, dlq or active), in the order
        they will be taken; at most ``limit`` (up to 1000)."""
        return self._run(self._requests.queue_tasks(name, limit, timeout=timeout))

    def requeue_orphaned(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> RequeueReport:
        """Repair tasks that no queue holds for their state (on a healthy system: none found)."""
        return self._run(self._requests.requeue_orphaned(timeout=timeout))

    def workers(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> WorkerList:
        """The workers seen recently, with their heartbeats."""
        return self._run(self._requests.workers(timeout=timeout))

    def health(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Health:
        """The server's component health (``/health``; no token needed)."""
        return self._run(self._requests.health(timeout=timeout))

    def events(
        self,
        last_event_id: str | None = None,
        types: Sequence[str] | None = None,
        *,
        task_id: str | None = None,
    ) -> EventStream:
        """Live task events (an iterator that resumes after dropped connections).

        ``last_event_id``: start after that event (default: from now). ``types``: only these
        event types (task_created, task_state_changed, task_progress...). ``task_id``: only
        that task's events.
        """
        cursor = EventCursor(last_event_id, types, task_id)
        return EventStream(
            self._driver,
            lambda after: self._requests.events_spec(after, cursor.types, task_id),
            cursor,
        )

    def batch(
        self,
        texts: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
        folder: str | None = None,
        pattern: str = "*.pdf",
        summarize: bool = True,
        name: str | None = None,
        **opts: Any,
    ) -> BatchRun:
        """Submit a batch of texts or PDFs (a list of paths, or a folder and a glob pattern)
        idempotently and return its :class:`~taskflow_sdk.BatchRun`. Running the same call
        again resumes the same batch instead of submitting it twice. ``opts``: ``priority``,
        ``max_retries``, ``issue_date``, ``sentences``, ``language``, ``tag``, and
        ``budget_usd``: once the run's tasks have cost that much, its waiting tasks are held
        (cancelled, to be re-queued by ``run.raise_budget()``). ``name``: the label the
        control panel and progress bars show (``run.name``; not part of the idempotency keys,
        so a renamed run resumes the same batch). ``run.started_at`` and ``run.finished_at``
        (epoch seconds) give its real elapsed time."""
        run = BatchRun(
            self._driver,
            texts=texts,
            paths=paths,
            folder=folder,
            pattern=pattern,
            summarize=summarize,
            name=name,
            **opts,
        )
        run.submit()
        self.batch_runs.append(run)
        return run

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connections (not those of an ``http_client`` you passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={safe_url(self.base_url)!r})"


class Breaker:
    """The shared circuit breaker of the upstream (``client.breaker``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def status(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BreakerStatus:
        """Its state, counters and time to half-open."""
        c = self._client
        return c._run(c._requests.breaker_status(timeout=timeout))

    def open(
        self, reason: str | None = None, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> BreakerStatus:
        """Hold it open until :meth:`reset`: workers stop claiming LLM tasks (they wait)."""
        c = self._client
        return c._run(c._requests.breaker_open(reason, timeout=timeout))

    def reset(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BreakerStatus:
        """Close it and clear its counters: workers resume."""
        c = self._client
        return c._run(c._requests.breaker_reset(timeout=timeout))


class OpenRouter:
    """The LLM upstream's key status, daily metrics and daily budget (``client.openrouter``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def status(
        self, force_refresh: bool = False, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> OpenRouterStatus:
        """The key's state (cached 60 s by the server unless ``force_refresh``)."""
        c = self._client
        return c._run(c._requests.openrouter_status(force_refresh, timeout=timeout))

    def metrics(self, days: int = 7, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Metrics:
        """Calls, failures, tokens and cost per day for the last ``days`` days."""
        c = self._client
        return c._run(c._requests.openrouter_metrics(days, timeout=timeout))

    def budget(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Budget:
        """The daily spending cap, today's spend (USD, UTC day) and whether the cap holds LLM
        work now."""
        c = self._client
        return c._run(c._requests.openrouter_budget(timeout=timeout))

    def set_budget(
        self, daily_usd: float | None, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Budget:
        """Set the daily spending cap in USD (``None`` removes it). When today's spend reaches
        it, LLM work is held (nothing is dead-lettered) until the next UTC day or until the cap
        is raised. Returns the budget as the server now has it."""
        c = self._client
        return c._run(c._requests.openrouter_set_budget(daily_usd, timeout=timeout))


class TaskPager:
    """Tasks of ``Client.list()``: iterate for every match (pages are fetched as needed),
    ``pages()`` for the raw pages, ``to_pandas()`` / ``to_list()`` to collect."""

    def __init__(self, client: Client, query: ListQuery, timeout: Timeout) -> None:
        self._client = client
        self._query = query
        self._timeout = timeout

    def pages(self) -> Iterator[TaskList]:
        """Each page, in order."""
        page = 1
        while True:
            flow = self._client._requests.list_page(self._query, page, timeout=self._timeout)
            result = self._client._run(flow)
            yield result
            if not result.tasks or page >= result.total_pages:
                return
            page += 1

    def __iter__(self) -> Iterator[Task]:
        limit = self._query.limit
        count = 0
        for page in self.pages():
            for task in page.tasks:
                if not self._query.keep(task):
                    continue
                if limit is not None and count >= limit:
                    return
                count += 1
                yield task
            if limit is not None and count >= limit:
                return

    def to_list(self) -> builtins.list[Task]:
        """Every matching task."""
        return builtins.list(self)

    def to_pandas(self) -> pd.DataFrame:
        """Every matching task, one row each."""
        return tasks_frame(self.to_list())
