"""Request and response models of the HTTP API.

The shapes follow the AsyncTaskFlow v1 API (the React dashboard reads them unchanged): upper-case
states, ISO 8601 timestamps in UTC with a ``Z``, ``result`` as a string with the structured value
beside it in ``result_data``. Everything here is plain pydantic; the routers fill these models from
store records with :mod:`taskflow_server.api.views`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from taskflow_server.states import TaskState as TaskState  # the models' state type, re-exported

Priority = Literal["high", "default", "low"]
"""Task priorities, most urgent first."""

QueueName = Literal["primary", "retry", "scheduled", "dlq", "active"]
"""Queues that ``GET /api/v1/queues/{name}/tasks`` can list."""

SortField = Literal[
    "created_at", "updated_at", "completed_at", "state", "task_type", "priority", "retry_count"
]
"""Fields the task list can be sorted by."""

IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Printable ASCII without spaces; a repeated key returns the first task.",
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- errors


class ErrorResponse(BaseModel):
    """Every error: ``detail`` says what went wrong and, for a 4xx, what to fix."""

    detail: str = Field(description="What went wrong and, for a 4xx, what to fix.")


class ValidationIssue(BaseModel):
    """One problem with the input (pydantic's error shape)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """A 422: a message, or one entry per invalid field."""

    detail: str | list[ValidationIssue]


# --------------------------------------------------------------------------- submit


class SummarizeRequest(_Model):
    """``POST /api/v1/tasks/summarize/``: the text to summarize (v1 body ``{content}``)."""

    content: str = Field(min_length=1, description="The text to summarize.")
    priority: Priority = "default"
    max_retries: int | None = Field(default=None, ge=0, le=100)
    idempotency_key: IdempotencyKey | None = None


class SubmitRequest(_Model):
    """``POST /api/v1/tasks``: any registered task type with its payload."""

    task_type: str = Field(min_length=1, max_length=100, examples=["summarize"])
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = "default"
    max_retries: int | None = Field(default=None, ge=0, le=100)
    idempotency_key: IdempotencyKey | None = None
    metadata: dict[str, Any] | None = None


class TaskCreated(BaseModel):
    """A submitted task: ``created`` is False when an idempotency key matched an earlier task
    (the other fields are then that task's)."""

    task_id: str
    state: TaskState
    created: bool = True
    task_type: str | None = None
    priority: str | None = None
    max_retries: int | None = Field(
        default=None, description="Retries the task is allowed (the server default if not given)."
    )


class BatchRequest(_Model):
    """``POST /api/v1/tasks/batch``: many submits, each validated on its own."""

    tasks: list[
        Annotated[
            Any,
            WithJsonSchema({"$ref": "#/components/schemas/SubmitRequest"}),
        ]
    ] = Field(
        min_length=1,
        description="Items shaped like the body of POST /api/v1/tasks; each is validated on "
        "its own, so one bad item does not refuse the others.",
    )


class BatchItemResult(BaseModel):
    """The outcome of one batch item, by its position in the request."""

    index: int
    ok: bool
    task_id: str | None = None
    state: TaskState | None = None
    created: bool | None = None
    error: str | None = Field(default=None, description="Why the item was refused.")


class BatchResponse(BaseModel):
    """The outcome of a batch: accepted items are submitted, refused ones say why."""

    accepted: int
    failed: int
    created: int = Field(description="Accepted items that made a new task (the others matched).")
    items: list[BatchItemResult]
    detail: str | None = None


# --------------------------------------------------------------------------- task views


class StateChange(BaseModel):
    """One entry of a task's state history."""

    state: str
    timestamp: datetime


class TaskDetail(BaseModel):
    """A task as the v1 API shows it, plus the fields this server adds.

    ``result`` is a string (the summary text for summarize, JSON text otherwise); the structured
    value is in ``result_data``. ``content`` is the input text for summarize and a short
    description for other types (never the PDF itself).
    """

    task_id: str
    state: TaskState
    task_type: str
    priority: Priority
    lane: str
    content: str | None
    result: str | None
    result_data: Any = None
    retry_count: int
    max_retries: int
    last_error: str | None
    error_type: str | None
    retry_after: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    scheduled_at: datetime | None
    dlq_at: datetime | None
    worker_id: str | None
    progress: float
    progress_message: str | None
    error_history: list[dict[str, Any]]
    state_history: list[StateChange]
    idempotency_key: str | None
    metadata: dict[str, Any]
    cancel_requested: bool
    lost_leases: int
    error: str | None = Field(
        default=None,
        description="Set when the stored task could not be read in full: which fields show a "
        "placeholder instead, and why. Null for an intact task.",
    )
    source: Literal["store", "history"] = Field(
        default="store",
        description="Where the answer comes from: the task store (Redis), or the PostgreSQL "
        "history once the store no longer holds the task.",
    )
    result_ref: str | None = Field(
        default=None,
        description="History only: where a result too large to record was (result is null).",
    )
    usage: dict[str, Any] | None = Field(
        default=None,
        description="History only: provider, model, tokens, cost_usd and attempts as recorded.",
    )


class TaskSummary(BaseModel):
    """A row of ``GET /api/v1/tasks/summaries/``: no content, no result."""

    task_id: str
    state: TaskState
    task_type: str
    priority: Priority
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    retry_count: int
    max_retries: int
    last_error: str | None
    error_type: str | None
    progress: float
    content_length: int = Field(description="Characters of text, or bytes of an uploaded file.")
    has_result: bool
    error: str | None = Field(
        default=None,
        description="Set when the stored task could not be read in full: which fields show a "
        "placeholder instead, and why. Null for an intact task.",
    )


class TaskListBase(BaseModel):
    """Pagination fields shared by both list routes (``page`` is 1-based)."""

    page: int
    page_size: int
    total_items: int
    total_pages: int = Field(description="ceil(total_items / page_size); 0 when empty.")
    status: str | None = Field(default=None, description="The state filter, echoed (v1).")
    scan_limited: bool = Field(
        default=False,
        description="True when a filter had to stop scanning at the scan bound: totals then "
        "cover only the most recent tasks within the date range.",
    )


class TaskList(TaskListBase):
    """``GET /api/v1/tasks/``."""

    tasks: list[TaskDetail]


class TaskSummaryList(TaskListBase):
    """``GET /api/v1/tasks/summaries/``."""

    tasks: list[TaskSummary]


class RetryRequest(_Model):
    """Optional body of ``POST /api/v1/tasks/{id}/retry``."""

    reset_retry_count: bool = False


class RetryResponse(BaseModel):
    """A task sent back to the retry queue."""

    task_id: str
    state: TaskState
    retry_count: int
    message: str


class CancelResponse(BaseModel):
    """The state after a cancel: CANCELLED, or ACTIVE with ``cancel_requested`` (202)."""

    task_id: str
    state: TaskState
    cancel_requested: bool
    message: str


class DeleteResponse(BaseModel):
    """A deleted task."""

    task_id: str
    message: str


class RequeueResponse(BaseModel):
    """What ``requeue-orphaned`` repaired (with leases it should find nothing)."""

    found: int
    requeued: int
    errors: list[str]
    task_ids: list[str] = Field(default_factory=list)
    message: str


# --------------------------------------------------------------------------- queues


class PriorityDepths(BaseModel):
    """Primary queue depth per priority."""

    high: int
    default: int
    low: int


class QueueDepthsModel(BaseModel):
    """Queue depths; ``primary`` is the sum over priorities (a number, as in v1)."""

    primary: int
    retry: int
    scheduled: int
    dlq: int
    active: int
    primary_by_priority: PriorityDepths


class StateCounts(BaseModel):
    """Tasks per state, from the counters the store keeps."""

    model_config = ConfigDict(populate_by_name=True)

    PENDING: int = 0
    ACTIVE: int = 0
    SCHEDULED: int = 0
    COMPLETED: int = 0
    FAILED: int = 0
    DLQ: int = 0
    CANCELLED: int = 0


class BlobUsageModel(BaseModel):
    """Uploaded files held in the store, and their quota."""

    count: int = Field(description="Stored files (each stored once, by sha256).")
    bytes: int = Field(description="Their total size.")
    max_bytes: int = Field(description="The quota on that total (max_blob_bytes).")


class QueueStatus(BaseModel):
    """``GET /api/v1/queues/status``."""

    queues: QueueDepthsModel
    states: StateCounts
    retry_ratio: float = Field(
        description="The share of claims that prefer the retry queue when both queues wait."
    )
    blobs: BlobUsageModel = Field(description="Uploaded files held in the store (not in v1).")


# --------------------------------------------------------------------------- workers


class BreakerView(BaseModel):
    """A circuit breaker as the v1 dashboard reads it (``state``: closed, half-open, open)."""

    state: str
    fail_count: int = 0
    success_count: int = 0
    note: str | None = None
    hold: str | None = Field(
        default=None, description="Why LLM work is on hold (credits, key_limit, budget, ...)."
    )


class WorkerDetail(BaseModel):
    """One worker, from its heartbeat."""

    worker_id: str
    worker_name: str
    status: Literal["healthy", "stale"]
    circuit_breaker: BreakerView
    last_heartbeat: float | None = Field(description="Epoch seconds of the last heartbeat.")
    heartbeat_age: float | None = Field(description="Seconds since the last heartbeat.")
    active: int = 0
    completed: int = 0
    failed: int = 0
    concurrency: int = 0
    host: str | None = None
    pid: int | None = None
    started: float | None = None
    active_tasks: list[Any] = Field(default_factory=list)


class WorkersStatus(BaseModel):
    """``GET /api/v1/workers/`` (always 200 when the store answers)."""

    overall_status: Literal["healthy", "degraded"]
    total_workers: int
    healthy_workers: int
    stale_workers: int
    circuit_breaker_states: dict[str, int]
    circuit_breaker: dict[str, Any] | None = Field(
        default=None, description="The shared breaker's full status, when available."
    )
    worker_details: list[WorkerDetail]
    timestamp: datetime
    error: str | None = None


class BreakerActionResult(BaseModel):
    """How one worker sees the shared breaker after the action."""

    worker_id: str
    status: Literal["success"]
    state: str


class BreakerAction(BaseModel):
    """Result of opening or resetting the shared breaker: every worker reads it from Redis."""

    message: str
    successful_workers: int
    successful_resets: int | None = None
    successful_opens: int | None = None
    breaker: dict[str, Any]
    results: list[BreakerActionResult]
    timestamp: datetime


class OpenBreakerRequest(_Model):
    """Optional body of ``POST /api/v1/workers/open-circuit-breaker``."""

    reason: str = Field(default="opened by an operator through the API", max_length=500)


# --------------------------------------------------------------------------- health


class ComponentStatus(BaseModel):
    """One component of ``/health`` (only the fields that apply are set)."""

    status: str
    latency_ms: float | None = None
    error: str | None = None
    total: int | None = None
    healthy: int | None = None
    stale: int | None = None


class HealthStatus(BaseModel):
    """``GET /health``: always 200; ``status`` says whether everything works."""

    status: Literal["healthy", "unhealthy"]
    components: dict[str, ComponentStatus]
    note: str
    timestamp: datetime


class SimpleStatus(BaseModel):
    """``/live`` and ``/ready``."""

    status: str
    detail: str | None = None


class ServiceInfo(BaseModel):
    """``GET /``: what this server is and where to look next."""

    name: str
    version: str
    docs: str
    openapi: str
    health: str
    auth_required: bool
    offline: bool


# --------------------------------------------------------------------------- openrouter


class HoldView(BaseModel):
    """A hold: LLM work stopped for a reason only time or money fixes; nothing is lost."""

    reason: str = Field(description="credits, key_limit, budget or rate_limited.")
    since: float | None = Field(default=None, description="When it began (epoch seconds).")
    until: float | None = Field(
        default=None, description="When it ends by itself (epoch seconds); null: when lifted."
    )
    seconds_left: float | None = None
    message: str = ""


class BudgetView(BaseModel):
    """Today's (UTC) upstream cost against the daily budget."""

    daily_usd: float | None = Field(description="The daily budget; null: no cap.")
    spent_today_usd: float
    remaining_usd: float | None = None
    held: bool = Field(default=False, description="A budget hold is in force.")


class BudgetUpdate(BaseModel):
    """``PUT /api/v1/openrouter/budget``: the new daily budget for every process."""

    model_config = ConfigDict(extra="forbid")

    daily_usd: float | None = Field(
        ge=0, le=1_000_000, description="US dollars per UTC day; null removes the cap."
    )


class OpenRouterStatus(BaseModel):
    """``GET /api/v1/openrouter/status`` (v1 fields; the monitor may add more).

    ``status``: active, api_key_missing, api_key_invalid, credits_exhausted, rate_limited, error.
    ``hold`` says why LLM work is stopped (and until when); ``budget`` is today's cost against
    the daily budget.
    """

    model_config = ConfigDict(extra="allow")

    status: str
    message: str | None = None
    balance: float | None = None
    usage_today: float | None = None
    usage_month: float | None = None
    last_check: str | None = None
    error_details: Any = None
    consecutive_failures: int | None = None
    circuit_breaker_open: bool | None = None
    cache_hit: bool | None = None
    hold: HoldView | None = None
    budget: BudgetView | None = None


class OpenRouterMetrics(BaseModel):
    """``GET /api/v1/openrouter/metrics``: per-day counters (``metrics`` keyed by date)."""

    model_config = ConfigDict(extra="allow")

    metrics: dict[str, dict[str, Any]]
    days: int
    generated_at: str | None = None


class TaskLookupRequest(BaseModel):
    """Many task ids to read at once."""

    task_ids: list[str] = Field(min_length=1, max_length=1000, description="Up to 1,000 ids.")


class TaskLookup(BaseModel):
    """The tasks found (in the order asked) and the ids that do not exist."""

    tasks: list[TaskDetail]
    missing: list[str]


class TaskStateItem(BaseModel):
    """Where one task stands: what a client waiting on many tasks polls for."""

    task_id: str
    state: TaskState
    updated_at: datetime = Field(description="The last transition or progress report.")
    retry_count: int
    progress: float = Field(description="0.0 to 1.0, as the worker last reported it.")


class TaskStates(BaseModel):
    """``POST /api/v1/tasks/states``: the tasks found (in the order asked), no content or
    result, and the ids that do not exist."""

    tasks: list[TaskStateItem]
    missing: list[str]


class BlobInfo(BaseModel):
    """An uploaded file the server holds."""

    sha256: str
    size: int


# --------------------------------------------------------------------------- history


class HistoryTask(BaseModel):
    """One recorded task of ``GET /api/v1/history`` (no input, no result)."""

    task_id: str
    task_type: str
    lane: str
    priority: str
    state: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    duration_seconds: float | None = Field(description="finished_at - started_at, when both.")
    attempts: int
    retry_count: int
    max_retries: int
    error_class: str | None
    error_message: str | None
    provider: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    idempotency_key: str | None
    batch: str | None
    metadata: dict[str, Any]


class HistoryPageModel(BaseModel):
    """``GET /api/v1/history``: a page of recorded tasks, newest first."""

    tasks: list[HistoryTask]
    next_cursor: str | None = Field(
        description="Send it as ``cursor`` (with the same filters) for the next page; null on "
        "the last page."
    )
    limit: int = Field(description="The page size used (the request's, capped at max_page_size).")
    source: Literal["history"] = "history"


class HistoryBucket(BaseModel):
    """One time bucket of ``GET /api/v1/history/stats``."""

    start: datetime = Field(description="The bucket's first moment (UTC).")
    tasks: int
    states: dict[str, int] = Field(description="Tasks per state (their last recorded state).")
    failures: dict[str, int] = Field(
        description="DLQ and FAILED tasks per error class ('unknown' when none was recorded)."
    )
    timed: int = Field(description="Tasks with both a start and a finish time.")
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int


class HistoryStatsModel(BaseModel):
    """``GET /api/v1/history/stats``: one entry per bucket, oldest first, zeros where empty."""

    bucket: Literal["day", "hour"]
    time_field: Literal["created", "finished"]
    since: datetime | None
    until: datetime | None
    buckets: list[HistoryBucket]
    source: Literal["history"] = "history"
