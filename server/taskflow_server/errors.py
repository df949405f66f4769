"""The root of the server's own exceptions: every one derives from :class:`TaskflowError`.

``except TaskflowError`` catches whatever the server raised on purpose, and nothing that came
from a library or a bug. Where callers (or the standard library) catch a builtin family, an
error keeps that builtin as a second base (``InvalidPayloadError`` is a ``ValueError``,
``CpuTimeoutError`` a ``TimeoutError``...). The tree::

    TaskflowError
    ├── TaskError                      resilience/errors.py: a classified failure of an attempt
    │   ├── NotSentError               the upstream call was never sent (a hold, an open
    │   │                              breaker, a wait past upstream_max_wait)
    │   └── UpstreamError              llm/openrouter.py: a classified OpenRouter failure
    ├── InvalidPayloadError            tasks/registry.py: a payload its model refuses (ValueError)
    ├── UnknownTaskTypeError           tasks/registry.py: a task type nobody registered (KeyError)
    ├── FanOutStopped                  tasks/_fanout.py: a signal, not a failure: the fan-out
    │                                  stopped while this job waited for a slot
    ├── CpuPoolError                   cpu.py: the CPU pool's own failures (RuntimeError)
    │   ├── CpuTimeoutError            a call ran past its limit (TimeoutError)
    │   ├── CpuOutOfMemoryError        a call hit the per-process memory cap (MemoryError)
    │   ├── CpuWorkerCrashedError      the process running a call died
    │   └── CpuPoolClosedError         the pool was shut down
    ├── PdfError                       pdf/reader.py: an unusable PDF (ValueError)
    │   ├── NotAPdfError
    │   ├── EncryptedPdfError
    │   ├── CorruptPdfError
    │   └── PdfLimitError
    ├── ConfigError                    settings a server must not start with (or an extra
    │                                  it needs that is not installed) (ValueError)
    ├── StoreError                     store/queue.py: the store refused an operation
    │   ├── TaskNotFoundError          no task with that id
    │   └── InvalidTransitionError     the task's state does not allow the operation
    ├── BlobQuotaExceededError         store/blobs.py: uploads would pass max_blob_bytes
    └── ItemError                      api/routers/tasks.py: a submit item refused (ValueError)

The API's refusals are ``HTTPException`` subclasses (``api/limits.py``, ``api/body.py``): they are
answers to a client, turned into 4xx responses by FastAPI, not errors of the server.
"""

from __future__ import annotations


class TaskflowError(Exception):
    """The base class of every exception the server raises on purpose."""


class ConfigError(TaskflowError, ValueError):
    """Settings that must not be used to start a server, or an extra they need is missing."""
