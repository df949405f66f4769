"""Task routes: submit (generic, summarize, pdfxtract, batch), list, detail, retry, cancel,
delete, requeue-orphaned, and the per-task progress stream.

Idempotency: a submit whose ``idempotency_key`` was seen before returns the first task with
``created: false`` and status **200** (a new task is **201**), so a client can tell a repeat
from a new task by the status alone.

Listing: the query planner is :mod:`taskflow_server.api.listing` (without filters other than
dates, a page comes straight from the creation-time index; other filters and sorts scan the most
recent tasks of the date range and set ``scan_limited`` when the range holds more).

Polling many tasks: ``POST /lookup`` answers with each task's full detail; ``POST /states`` with
only where each task stands (state, updated_at, retry_count, progress), read from a few fields
of the task hash without the payload or the result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, HTTPException, Path, Response, UploadFile
from pydantic import ValidationError

from taskflow_server.api.body import MAX_LISTED, CheckedJsonRoute, printable_text, unknown_fields
from taskflow_server.api.deps import ApiContext, ContextDep
from taskflow_server.api.listing import (
    InvalidListing,
    Listing,
    ListingDep,
    ListingQuery,
    run_listing,
)
from taskflow_server.api.schemas import (
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    CancelResponse,
    DeleteResponse,
    ErrorResponse,
    IdempotencyKey,
    Priority,
    RequeueResponse,
    RetryRequest,
    RetryResponse,
    SubmitRequest,
    SummarizeRequest,
    TaskCreated,
    TaskDetail,
    TaskList,
    TaskLookup,
    TaskLookupRequest,
    TaskStateItem,
    TaskStates,
    TaskSummaryList,
    ValidationErrorResponse,
)
from taskflow_server.api.sse import HEARTBEAT_SECONDS, EventStreamResponse, sse_comment, sse_frame
from taskflow_server.api.views import (
    iso,
    payload_text,
    task_detail,
    task_state_item,
    task_summary,
)
from taskflow_server.errors import TaskflowError
from taskflow_server.observability import tracing
from taskflow_server.states import TERMINAL_STATES, TaskState
from taskflow_server.store.blobs import BlobQuotaExceededError
from taskflow_server.store.queue import InvalidTransitionError, TaskNotFoundError
from taskflow_server.store.records import NewTask, TaskRecord
from taskflow_server.tasks.registry import InvalidPayloadError, UnknownTaskTypeError, get_spec

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], route_class=CheckedJsonRoute)
stream_router = APIRouter(prefix="/api/v1/tasks", tags=["tasks", "events"])

UPLOAD_PATH = "/api/v1/tasks/pdfxtract"
"""The upload route (it gets the upload body limit instead of the JSON one)."""

PDF_MAGIC = b"%PDF-"
READ_CHUNK = 1024 * 1024
BLOB_FIELD = "blob"

TaskIdPath = Annotated[str, Path(min_length=1, max_length=200, description="The task id.")]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No task with this id."}
}


class ItemError(TaskflowError, ValueError):
    """A submit item that cannot be accepted; the message says why."""


# --------------------------------------------------------------------------- submit helpers


def _readable(errors: list[Any], root: str = "body") -> str:
    """Validation errors as one line: the first :data:`MAX_LISTED`, then a count of the rest."""
    parts = []
    for err in errors[:MAX_LISTED]:
        loc = ".".join(str(p)[:40] for p in err["loc"]) or root
        parts.append(f"{loc}: {err['msg']}")
    if len(errors) > MAX_LISTED:
        parts.append(f"and {len(errors) - MAX_LISTED} more error(s)")
    return "; ".join(parts)


async def _prepare(ctx: ApiContext, req: SubmitRequest) -> NewTask:
    """Validate one submit against its task type; raises :class:`ItemError` with the reason."""
    try:
        spec = get_spec(req.task_type)
    except UnknownTaskTypeError as exc:
        raise ItemError(str(exc)) from None
    unknown = unknown_fields(spec.payload_model, req.payload, ("payload",))
    if unknown:
        raise ItemError(f"invalid payload for {spec.name}: {unknown}")
    try:
        model = spec.parse_payload(req.payload)
    except InvalidPayloadError as exc:
        raise ItemError(
            f"invalid payload for {spec.name}: {_readable(exc.errors, 'payload')}"
        ) from None
    payload: dict[str, Any] = model.model_dump(mode="json")
    text = payload_text(payload)
    if text is not None and len(text) > ctx.settings.max_text_chars:
        raise ItemError(
            f"the text has {len(text)} characters; the limit is {ctx.settings.max_text_chars} "
            "(TASKFLOW_MAX_TEXT_CHARS): split it or raise the limit"
        )
    blob = payload.get(BLOB_FIELD)
    if isinstance(blob, str) and not await ctx.blobs.exists(blob):
        raise ItemError(
            f"payload.{BLOB_FIELD}: no uploaded file with sha256 {blob!r} (it expired or was "
            "never uploaded); upload it with POST /api/v1/tasks/pdfxtract"
        )
    return NewTask(
        task_type=spec.name,
        payload=payload,
        lane=spec.lane,
        priority=req.priority,
        max_retries=req.max_retries,
        idempotency_key=req.idempotency_key,
        metadata=req.metadata,
        traceparent=tracing.current_traceparent() if tracing.ENABLED else None,
    )


async def _submit(ctx: ApiContext, req: SubmitRequest, response: Response) -> TaskCreated:
    """Validate one submit (422 with the reason when it is refused) and queue it."""
    try:
        task = await _prepare(ctx, req)
    except ItemError as exc:
        raise HTTPException(422, str(exc)) from None
    submitted = await ctx.queue.submit(task)
    if tracing.ENABLED:
        tracing.set_attributes(
            {tracing.TASK_ID: submitted.task_id, tracing.TASK_TYPE: task.task_type}
        )
    response.status_code = 201 if submitted.created else 200
    task_type, priority = task.task_type, task.priority
    max_retries = ctx.settings.default_max_retries if task.max_retries is None else task.max_retries
    if not submitted.created:  # the earlier task's own settings, not this request's
        earlier = await ctx.queue.get(submitted.task_id)
        if earlier is not None:
            task_type, priority = earlier.task_type, earlier.priority
            max_retries = earlier.max_retries
    return TaskCreated(
        task_id=submitted.task_id,
        state=submitted.state,  # type: ignore[arg-type]
        created=submitted.created,
        task_type=task_type,
        priority=priority,
        max_retries=max_retries,
    )


def _text_payload(task_type: str, text: str) -> dict[str, Any]:
    """The payload of a text task: its model's text field is ``content`` or ``text``."""
    fields = get_spec(task_type).payload_model.model_fields
    name = "text" if "text" in fields and "content" not in fields else "content"
    return {name: text}


SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": TaskCreated, "description": "The idempotency key matched an earlier task."},
    422: {"model": ValidationErrorResponse, "description": "Unknown task type or bad payload."},
}


@router.post(
    "",
    status_code=201,
    response_model=TaskCreated,
    responses=SUBMIT_RESPONSES,
    summary="Submit a task of any registered type",
)
async def submit(req: SubmitRequest, ctx: ContextDep, response: Response) -> TaskCreated:
    """Validate the payload against the task type and queue the task.

    201 with a new task; 200 with the first task when ``idempotency_key`` was seen before.
    """
    return await _submit(ctx, req, response)


@router.post(
    "/summarize",
    status_code=201,
    response_model=TaskCreated,
    responses=SUBMIT_RESPONSES,
    summary="Summarize a text (v1)",
)
async def submit_summarize(
    req: SummarizeRequest, ctx: ContextDep, response: Response
) -> TaskCreated:
    """Queue a summarize task for ``content``. 201 ``{task_id, state: "PENDING"}``."""
    generic = SubmitRequest(
        task_type="summarize",
        payload=_text_payload("summarize", req.content),
        priority=req.priority,
        max_retries=req.max_retries,
        idempotency_key=req.idempotency_key,
    )
    return await _submit(ctx, generic, response)


def _safe_filename(name: str | None) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    cleaned = "".join(ch for ch in base if ch.isprintable())[:255]
    return cleaned or "upload.pdf"


@router.post(
    "/pdfxtract",
    status_code=201,
    response_model=TaskCreated,
    responses={
        **SUBMIT_RESPONSES,
        400: {"model": ErrorResponse, "description": "The file is not a PDF."},
        413: {"model": ErrorResponse, "description": "The file is over the upload limit."},
        507: {
            "model": ErrorResponse,
            "description": "Uploaded files would go over their total quota (max_blob_bytes).",
        },
    },
    summary="Extract articles from a newspaper PDF (v1)",
)
async def submit_pdfxtract(
    ctx: ContextDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The PDF (its bytes must start with %PDF-).")],
    issue_date: Annotated[
        str | None, Form(max_length=40, description="The issue's date, e.g. 2024-05-31.")
    ] = None,
    priority: Annotated[Priority, Form()] = "default",
    idempotency_key: Annotated[IdempotencyKey | None, Form()] = None,
    max_retries: Annotated[int | None, Form(ge=0, le=100)] = None,
) -> TaskCreated:
    """Store the file once (by sha256) and queue a pdfxtract task that references it."""
    limit = ctx.settings.max_upload_bytes
    head = await file.read(len(PDF_MAGIC))
    if head != PDF_MAGIC:
        raise HTTPException(
            400, "the file is not a PDF: its bytes do not start with %PDF- (check the file)"
        )
    chunks = [head]
    size = len(head)
    while chunk := await file.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise HTTPException(
                413,
                f"the file is over the upload limit of {limit} bytes (TASKFLOW_MAX_UPLOAD_BYTES)",
            )
        chunks.append(chunk)
    data = b"".join(chunks)
    try:
        sha = await ctx.blobs.put(data)
    except BlobQuotaExceededError as exc:
        raise HTTPException(507, str(exc)) from None
    filename = _safe_filename(file.filename)
    payload: dict[str, Any] = {BLOB_FIELD: sha, "filename": filename}
    if issue_date:
        payload["issue_date"] = issue_date
    metadata: dict[str, Any] = {
        "filename": filename,
        "issue_date": issue_date,
        "file_size": size,
        "content_type": file.content_type or "application/pdf",
        "sha256": sha,
    }
    req = SubmitRequest(
        task_type="pdfxtract",
        payload=payload,
        priority=priority,
        max_retries=max_retries,
        idempotency_key=idempotency_key,
        metadata=metadata,
    )
    return await _submit(ctx, req, response)


@router.post(
    "/batch",
    status_code=201,
    response_model=BatchResponse,
    responses={
        207: {"model": BatchResponse, "description": "Some (or all) items were refused."},
        422: {"model": ValidationErrorResponse, "description": "The batch is malformed."},
    },
    summary="Submit many tasks at once",
)
async def submit_batch(req: BatchRequest, ctx: ContextDep, response: Response) -> BatchResponse:
    """Validate each item on its own and submit the valid ones atomically, in order.

    201 when every item was accepted; 207 when some were refused (each refused item says why,
    by ``index``). Each item may carry its own ``idempotency_key``.
    """
    limit = ctx.settings.max_batch_items
    if len(req.tasks) > limit:
        raise HTTPException(
            422,
            f"the batch has {len(req.tasks)} items; at most {limit} are allowed per request "
            "(TASKFLOW_MAX_BATCH_ITEMS): split it",
        )
    items: list[BatchItemResult] = []
    accepted: list[tuple[int, NewTask]] = []
    for index, raw in enumerate(req.tasks):
        try:
            unknown = unknown_fields(SubmitRequest, raw, ("tasks", index))
            if unknown:
                raise ItemError(unknown)
            item = SubmitRequest.model_validate(raw)
            accepted.append((index, await _prepare(ctx, item)))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            items.append(BatchItemResult(index=index, ok=False, error=_readable(errors)))
        except ItemError as exc:
            items.append(BatchItemResult(index=index, ok=False, error=str(exc)))
    submitted = await ctx.queue.submit_many([task for _, task in accepted]) if accepted else []
    if tracing.ENABLED:
        tracing.set_attributes({tracing.BATCH_ACCEPTED: len(accepted)})
    for (index, _), result in zip(accepted, submitted, strict=True):
        items.append(
            BatchItemResult(
                index=index,
                ok=True,
                task_id=result.task_id,
                state=result.state,  # type: ignore[arg-type]
                created=result.created,
            )
        )
    items.sort(key=lambda r: r.index)
    failed = len(req.tasks) - len(accepted)
    response.status_code = 201 if failed == 0 else 207
    return BatchResponse(
        accepted=len(accepted),
        failed=failed,
        created=sum(1 for s in submitted if s.created),
        items=items,
        detail=None if failed == 0 else f"{failed} of {len(req.tasks)} items were refused",
    )


@router.post(
    "/requeue-orphaned",
    response_model=RequeueResponse,
    summary="Repair tasks that sit in no queue matching their state",
)
async def requeue_orphaned(ctx: ContextDep) -> RequeueResponse:
    """Scan every task and requeue the ones no structure holds (expected: none)."""
    report = await ctx.queue.requeue_orphaned()
    found = int(report.get("found", 0))
    requeued = int(report.get("requeued", 0))
    errors = [str(e) for e in report.get("errors", [])]
    message = (
        "no orphaned task found"
        if found == 0
        else f"found {found} orphaned task(s), requeued {requeued}"
    )
    if errors:
        message += f"; {len(errors)} error(s)"
    return RequeueResponse(
        found=found,
        requeued=requeued,
        errors=errors,
        task_ids=[str(t) for t in report.get("task_ids", [])],
        message=message,
    )


# --------------------------------------------------------------------------- listing


async def _listing(ctx: ApiContext, query: ListingQuery) -> Listing:
    """Run the listing planner; a query it cannot answer is a 422 with its reason."""
    try:
        return await run_listing(ctx.queue, query, max_page_size=ctx.settings.max_page_size)
    except InvalidListing as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("", response_model=TaskList, summary="List tasks (full detail)")
async def list_tasks(ctx: ContextDep, query: ListingDep) -> TaskList:
    """Filter, sort and paginate tasks; each item is a full TaskDetail."""
    found = await _listing(ctx, query)
    records = zip(found.page.records, found.payloads, strict=True)
    return TaskList(tasks=[task_detail(r, p) for r, p in records], **found.page_fields())


@router.get("/summaries", response_model=TaskSummaryList, summary="List tasks (no content)")
async def list_summaries(ctx: ContextDep, query: ListingDep) -> TaskSummaryList:
    """Like the task list, without content or result: ``content_length`` and ``has_result``."""
    found = await _listing(ctx, query)
    records = zip(found.page.records, found.payloads, strict=True)
    return TaskSummaryList(tasks=[task_summary(r, p) for r, p in records], **found.page_fields())


# --------------------------------------------------------------------------- one task


async def _must_get(ctx: ApiContext, task_id: str) -> TaskRecord:
    record = await ctx.queue.get(task_id)
    if record is None:
        raise HTTPException(404, f"task {task_id} not found")
    return record


@router.post("/lookup", response_model=TaskLookup, summary="Many tasks at once")
async def lookup_tasks(body: TaskLookupRequest, ctx: ContextDep) -> TaskLookup:
    """Full detail of up to 1,000 tasks in one request (what a client waiting on many polls)."""
    ids = list(dict.fromkeys(body.task_ids))
    records = await ctx.queue.get_many(ids)
    found = [r for r in records if r is not None]
    payloads = await ctx.queue.payloads_many([r.id for r in found])
    details = {r.id: task_detail(r, p) for r, p in zip(found, payloads, strict=True)}
    gone = [i for i, r in zip(ids, records, strict=True) if r is None]
    if gone and ctx.history is not None:  # let go by the store, kept by the history
        recorded = await ctx.history.get_tasks(gone)
        details.update((i, TaskDetail.model_validate(t)) for i, t in recorded.items())
    return TaskLookup(
        tasks=[details[i] for i in ids if i in details],
        missing=[i for i in ids if i not in details],
    )


@router.post(
    "/states",
    response_model=TaskStates,
    summary="Where many tasks stand (no content, no result)",
)
async def task_states(body: TaskLookupRequest, ctx: ContextDep) -> TaskStates:
    """State, ``updated_at``, ``retry_count`` and ``progress`` of up to 1,000 tasks: what a
    client waiting on many tasks polls, at a fraction of ``/lookup``'s cost (a few fields of
    each task hash; neither the payload nor the result is read).

    Tasks come in the order asked, a repeated id once; unknown ids are listed in ``missing``.
    With history on, a task the store has let go is answered from PostgreSQL.
    """
    ids = list(dict.fromkeys(body.task_ids))
    views = await ctx.queue.states_many(ids)
    items = {v.id: task_state_item(v) for v in views if v is not None}
    gone = [i for i, v in zip(ids, views, strict=True) if v is None]
    if gone and ctx.history is not None:
        recorded = await ctx.history.get_states(gone)
        items.update((i, TaskStateItem.model_validate(t)) for i, t in recorded.items())
    return TaskStates(
        tasks=[items[i] for i in ids if i in items],
        missing=[i for i in ids if i not in items],
    )


@router.get("/{task_id}", response_model=TaskDetail, responses=NOT_FOUND, summary="One task")
async def get_task(task_id: TaskIdPath, ctx: ContextDep) -> TaskDetail:
    """The task's full detail (v1 TaskDetail plus progress, priority, worker...).

    With history on, a task the store no longer holds (expired, swept) is answered from
    PostgreSQL, with ``source: "history"``; 404 when neither has it.
    """
    record = await ctx.queue.get(task_id)
    if record is None:
        recorded = await _from_history(ctx, task_id)
        if recorded is None:
            raise HTTPException(404, f"task {task_id} not found")
        return recorded
    return task_detail(record, await ctx.queue.payload(task_id))


async def _from_history(ctx: ApiContext, task_id: str) -> TaskDetail | None:
    """The recorded task, when history is on and has it (503 when PostgreSQL does not answer)."""
    if ctx.history is None:
        return None
    found = await ctx.history.get_task(task_id)
    return TaskDetail.model_validate(found) if found is not None else None


@router.post(
    "/{task_id}/retry",
    response_model=RetryResponse,
    responses={
        **NOT_FOUND,
        400: {
            "model": ErrorResponse,
            "description": "Only FAILED, DLQ or CANCELLED tasks can be retried.",
        },
    },
    summary="Retry a failed, dead-lettered or cancelled task",
)
async def retry_task(
    task_id: TaskIdPath,
    ctx: ContextDep,
    body: Annotated[RetryRequest | None, Body()] = None,
) -> RetryResponse:
    """Send a DLQ, FAILED or CANCELLED task back to the retry queue as PENDING."""
    reset = body.reset_retry_count if body is not None else False
    try:
        record = await ctx.queue.retry(task_id, reset_retry_count=reset)
    except TaskNotFoundError:
        raise HTTPException(404, f"task {task_id} not found") from None
    except InvalidTransitionError as exc:
        raise HTTPException(
            400,
            f"task {task_id} is {exc.state}: only FAILED, DLQ or CANCELLED tasks can be retried",
        ) from None
    return RetryResponse(
        task_id=record.id,
        state=record.state,  # type: ignore[arg-type]
        retry_count=record.retry_count,
        message="task sent back to the retry queue"
        + (" with its retry count reset" if reset else ""),
    )


@router.post(
    "/{task_id}/cancel",
    response_model=CancelResponse,
    responses={
        **NOT_FOUND,
        202: {"model": CancelResponse, "description": "ACTIVE: the worker will stop it."},
        409: {"model": ErrorResponse, "description": "The task has already finished."},
    },
    summary="Cancel a task",
)
async def cancel_task(task_id: TaskIdPath, ctx: ContextDep, response: Response) -> CancelResponse:
    """PENDING, SCHEDULED and DLQ tasks are CANCELLED at once (200); an ACTIVE task is asked
    to stop and its worker cancels it at its next lease check (202, state still ACTIVE)."""
    try:
        record = await ctx.queue.cancel(task_id)
    except TaskNotFoundError:
        raise HTTPException(404, f"task {task_id} not found") from None
    except InvalidTransitionError as exc:
        raise HTTPException(
            409, f"task {task_id} is {exc.state} and can no longer be cancelled"
        ) from None
    if record.state == TaskState.ACTIVE:
        response.status_code = 202
        message = "cancel requested: the worker running the task will stop it"
    else:
        message = f"task is {record.state}"
    return CancelResponse(
        task_id=record.id,
        state=record.state,  # type: ignore[arg-type]
        cancel_requested=record.cancel_requested or record.state == TaskState.ACTIVE,
        message=message,
    )


@router.delete(
    "/{task_id}", response_model=DeleteResponse, responses=NOT_FOUND, summary="Delete a task"
)
async def delete_task(task_id: TaskIdPath, ctx: ContextDep) -> DeleteResponse:
    """Remove the task from every structure, whatever its state (an ACTIVE one included: its
    worker's later outcome is discarded)."""
    if not await ctx.queue.delete(task_id):
        raise HTTPException(404, f"task {task_id} not found")
    return DeleteResponse(task_id=task_id, message=f"task {task_id} deleted")


# --------------------------------------------------------------------------- progress stream


def _status_frame(record: TaskRecord) -> dict[str, Any]:
    updated = iso(record.updated_at)
    return {
        "type": "status",
        "task_id": record.id,
        "state": record.state,
        "progress": record.progress,
        "progress_message": printable_text(record.progress_message),
        "retry_count": record.retry_count,
        "error_type": printable_text(record.error_type),
        "last_error": printable_text(record.last_error),
        "cancel_requested": record.cancel_requested,
        "updated_at": updated.isoformat().replace("+00:00", "Z") if updated else None,
    }


def _fingerprint(record: TaskRecord) -> tuple[Any, ...]:
    return (
        record.state,
        record.progress,
        record.progress_message,
        record.retry_count,
        record.cancel_requested,
        record.updated_at,
    )


async def _task_frames(ctx: ApiContext, task_id: str, first: TaskRecord) -> AsyncIterator[bytes]:
    sub = ctx.hub.subscribe()
    try:
        # Read again after subscribing, so no change between the two reads is missed.
        record: TaskRecord | None = await ctx.queue.get(task_id) or first
        assert record is not None
        yield sse_frame(_status_frame(record), retry_ms=3000)
        seen = _fingerprint(record)
        # FAILED counts as terminal: no task rests there, and one that did would never move.
        while record.state not in TERMINAL_STATES:
            batch = await sub.get(HEARTBEAT_SECONDS)
            if sub.closed:
                yield sse_frame({"type": "end", "task_id": task_id, "reason": "server_stopping"})
                return
            if sub.lagged:
                sub.close()
                sub = ctx.hub.subscribe()
            elif batch and not any(e.task_id == task_id for e in batch):
                continue
            fresh = await ctx.queue.get(task_id)
            if fresh is None:
                yield sse_frame({"type": "end", "task_id": task_id, "reason": "deleted"})
                return
            record = fresh
            if _fingerprint(record) != seen:
                seen = _fingerprint(record)
                yield sse_frame(_status_frame(record))
            elif not batch:
                yield sse_comment()
        yield sse_frame(
            {"type": "end", "task_id": task_id, "reason": "finished", "state": record.state}
        )
    finally:
        sub.close()


@stream_router.get(
    "/{task_id}/stream",
    response_class=EventStreamResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "SSE: `status` frames as the task changes, then one `end` frame.",
        },
        **NOT_FOUND,
    },
    summary="Follow one task until it finishes (SSE)",
)
async def stream_task(task_id: TaskIdPath, ctx: ContextDep) -> EventStreamResponse:
    """Unnamed ``data:`` frames ``{type: "status", state, progress, ...}`` on every change, a
    ``: ping`` comment every 15 s, and a final ``{type: "end", reason}`` (finished, deleted or
    server_stopping) after which the server closes the stream."""
    record = await _must_get(ctx, task_id)
    return EventStreamResponse(_task_frames(ctx, task_id, record))
