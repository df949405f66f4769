"""AsyncTaskFlow SDK: submit LLM tasks, follow them, collect results as DataFrames.

::

    from taskflow_sdk import Client

    with Client() as client:                       # TASKFLOW_URL, TASKFLOW_API_TOKEN
        task = client.summarize("A long text ...")
        done = client.wait(task, timeout=60)
        print(done.summary)

:class:`AsyncClient` has the same methods as coroutines. ``client.batch(folder=...)`` runs a
whole archive (:class:`BatchRun`). Errors derive from :class:`TaskflowError` (see
:mod:`taskflow_sdk.errors`).
"""

from taskflow_sdk._config import DEFAULT_TIMEOUT, USE_CLIENT_DEFAULT
from taskflow_sdk.async_client import AsyncClient, AsyncTaskPager
from taskflow_sdk.batch import AsyncBatchRun, BatchRun
from taskflow_sdk.client import Client, TaskPager
from taskflow_sdk.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FileChangedError,
    HistoryDisabledError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    TaskFailed,
    TaskflowError,
    TaskTimeout,
    UnprocessableEntityError,
)
from taskflow_sdk.events import AsyncEventStream, EventStream
from taskflow_sdk.models import (
    BatchItem,
    BatchSubmitResult,
    BreakerStatus,
    Budget,
    Event,
    Health,
    HistoryStats,
    HistoryTask,
    Hold,
    Metrics,
    OpenRouterStatus,
    QueueStatus,
    RequeueReport,
    Task,
    TaskList,
    TaskState,
    TaskStatus,
    Worker,
    WorkerList,
)

__version__ = "0.1.0"
"""The SDK's version (the distribution's)."""

__all__ = [
    "DEFAULT_TIMEOUT",
    "USE_CLIENT_DEFAULT",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncBatchRun",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncTaskPager",
    "AuthenticationError",
    "BadRequestError",
    "BatchItem",
    "BatchRun",
    "BatchSubmitResult",
    "BreakerStatus",
    "Budget",
    "Client",
    "ConflictError",
    "Event",
    "EventStream",
    "FileChangedError",
    "Health",
    "HistoryDisabledError",
    "HistoryStats",
    "HistoryTask",
    "Hold",
    "InternalServerError",
    "Metrics",
    "NotFoundError",
    "OpenRouterStatus",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QueueStatus",
    "RateLimitError",
    "RequeueReport",
    "ServiceUnavailableError",
    "Task",
    "TaskFailed",
    "TaskList",
    "TaskPager",
    "TaskState",
    "TaskStatus",
    "TaskTimeout",
    "TaskflowError",
    "UnprocessableEntityError",
    "Worker",
    "WorkerList",
    "__version__",
]
