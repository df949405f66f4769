"""Error classes, retry schedules and the classification of unknown exceptions (pure, no I/O).

Every failure a task can meet is one :class:`ErrorClass`. The class decides three things, all
kept here as data: whether the task is retried and after how long (:data:`POLICIES`, read by
:func:`retry_delay`), whether the failure counts towards opening the upstream's circuit breaker
(:func:`counts_for_breaker`) and whether it is a **hold** (:func:`hold_reason`).

A hold is a condition that only time or money fixes: the account's credits are spent
(``credits``), a key, workspace or guardrail limit is reached (``key_limit``), our own daily
budget is reached (``budget``), or the upstream asked us to wait longer than a task should
(``rate_limited`` with a long cool-down). A hold stops every worker from claiming LLM tasks (it
is kept in the circuit breaker's hash, see ``breaker.py``); the task that met it goes back to its
queue without spending a retry, and nothing is dead-lettered because of it.

A handler raises :class:`TaskError` with a class; anything else it raises is classified by
:func:`classify_exception` (transport timeouts and connection errors are ``timeout``, the rest is
``unexpected``). Classification never looks at message text.

Schedules (seconds; every delay gets +0-10 % jitter; the last delay repeats until the task's own
``max_retries`` runs out; ``None`` means no retry, straight to the DLQ)::

    rate_limited      Retry-After, else 60, 120, 300 (used only when no cool-down is in force)
    credits           300, 600, 1800 (used only when no hold is in force)
    key_limit         300, 600, 1800 (likewise)
    budget            300, 600, 1800 (likewise)
    in_flight_budget  Retry-After, else 2, 5, 10, 30
    unavailable       Retry-After, else 5, 10, 30, 60, 120
    timeout           2, 5, 10, 30, 60
    bad_output        2, 2, then the DLQ (two quick retries)
    empty_answer      30, 60, 120 (no content: the model may be warming up)
    unexpected        5, 15, 60
    content_filtered, invalid_request, auth, invalid_input: none
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from taskflow_server.errors import TaskflowError

MAX_RETRY_AFTER_SECONDS = 3600.0
"""An upstream's ``Retry-After`` is honoured up to this many seconds (one hour)."""

JITTER_FRACTION = 0.10
"""Every delay is stretched by a random 0 to 10 %, so retries of one burst spread out."""


class ErrorClass(StrEnum):
    """Why an attempt failed; decides the retry schedule and the breaker's reaction."""

    RATE_LIMITED = "rate_limited"
    """The upstream answered 429; every worker pauses for the shared cool-down (a long one is a
    hold)."""
    CREDITS = "credits"
    """402: the account ran out of credits; a hold."""
    KEY_LIMIT = "key_limit"
    """402/403 with a key, workspace or guardrail ``limit_source``: that limit is spent; a hold."""
    BUDGET = "budget"
    """Our own daily budget (``TASKFLOW_BUDGET_USD``) is spent; a hold."""
    IN_FLIGHT_BUDGET = "in_flight_budget"
    """402 with ``limit_source`` in-flight budget: too much concurrent spend, retry soon."""
    UNAVAILABLE = "unavailable"
    """502/503 (and other 5xx): the upstream or its provider is down; counts for the breaker."""
    TIMEOUT = "timeout"
    """408/504, connect and read errors; counts for the breaker."""
    CONTENT_FILTERED = "content_filtered"
    """403 moderation or ``finish_reason: content_filter``; never retried."""
    INVALID_REQUEST = "invalid_request"
    """400/404 and other client errors: the request itself is wrong; never retried."""
    AUTH = "auth"
    """401: the API key is missing, wrong or disabled; never retried."""
    INVALID_INPUT = "invalid_input"
    """The task's input is unusable (not a PDF, empty or oversized text); never retried."""
    BAD_OUTPUT = "bad_output"
    """The model answered something unusable (bad JSON, an untyped error); 2 quick retries."""
    EMPTY_ANSWER = "empty_answer"
    """A 200 with no content or no choices (a model warming up); retried after 30 s and more."""
    UNEXPECTED = "unexpected"
    """An exception nobody classified (a bug or an unknown failure)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How one error class is retried.

    Attributes:
        delays: the schedule in seconds, indexed by the retries already used; the last repeats.
            Empty means never retry.
        max_attempts: a class-specific cap on retries (``None`` = only the task's own cap).
        honour_retry_after: use the upstream's ``Retry-After`` instead of the schedule when given.
    """

    delays: tuple[float, ...]
    max_attempts: int | None = None
    honour_retry_after: bool = False

    @property
    def retryable(self) -> bool:
        """True when this class is ever retried."""
        return bool(self.delays)


POLICIES: dict[ErrorClass, RetryPolicy] = {
    ErrorClass.RATE_LIMITED: RetryPolicy((60, 120, 300), honour_retry_after=True),
    ErrorClass.CREDITS: RetryPolicy((300, 600, 1800)),
    ErrorClass.KEY_LIMIT: RetryPolicy((300, 600, 1800)),
    ErrorClass.BUDGET: RetryPolicy((300, 600, 1800)),
    ErrorClass.IN_FLIGHT_BUDGET: RetryPolicy((2, 5, 10, 30), honour_retry_after=True),
    ErrorClass.UNAVAILABLE: RetryPolicy((5, 10, 30, 60, 120), honour_retry_after=True),
    ErrorClass.TIMEOUT: RetryPolicy((2, 5, 10, 30, 60)),
    ErrorClass.CONTENT_FILTERED: RetryPolicy(()),
    ErrorClass.INVALID_REQUEST: RetryPolicy(()),
    ErrorClass.AUTH: RetryPolicy(()),
    ErrorClass.INVALID_INPUT: RetryPolicy(()),
    ErrorClass.BAD_OUTPUT: RetryPolicy((2, 2), max_attempts=2),
    ErrorClass.EMPTY_ANSWER: RetryPolicy((30, 60, 120)),
    ErrorClass.UNEXPECTED: RetryPolicy((5, 15, 60)),
}
"""The retry policy of every error class (the table in the module docstring)."""

_TIMEOUT_EXCEPTIONS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    TimeoutError,
)
_BREAKER_COUNTS = frozenset({ErrorClass.UNAVAILABLE, ErrorClass.TIMEOUT})
_HOLDS: dict[ErrorClass, str] = {
    ErrorClass.CREDITS: "credits",
    ErrorClass.KEY_LIMIT: "key_limit",
    ErrorClass.BUDGET: "budget",
}

HOLD_REASONS: tuple[str, ...] = ("credits", "key_limit", "budget", "rate_limited")
"""Every reason a hold can have (``rate_limited``: a cool-down longer than a task should wait)."""


class TaskError(TaskflowError):
    """A classified failure of one attempt.

    Raised by handlers and by the LLM client; the worker turns it into a retry (SCHEDULED) or a
    dead letter (DLQ) with :func:`retry_delay`.

    Attributes:
        error_class: the :class:`ErrorClass`.
        message: a human-readable explanation (shown in the task's ``last_error``).
        retry_after: the upstream's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self, error_class: ErrorClass | str, message: str, retry_after: float | None = None
    ) -> None:
        self.error_class = ErrorClass(error_class)
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{self.error_class}: {message}")

    @property
    def retryable(self) -> bool:
        """True when this error's class is ever retried."""
        return POLICIES[self.error_class].retryable

    def __reduce__(self) -> tuple[Any, tuple[str, str, float | None]]:
        # Rebuild from the fields, so the error survives pickling (process pools).
        return (self.__class__, (self.error_class.value, self.message, self.retry_after))

    def __repr__(self) -> str:
        return (
            f"TaskError({self.error_class.value!r}, {self.message!r}, "
            f"retry_after={self.retry_after!r})"
        )


class NotSentError(TaskError):
    """The call was never sent: the upstream is paused for everyone (a hold, an open breaker, a
    cool-down or a queue for tokens longer than ``upstream_max_wait``).

    Nothing was paid and nothing failed, so the worker hands the task back to the front of its
    queue without spending a retry.
    """


def retry_delay(
    error_class: ErrorClass | str,
    attempt: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before retry number ``attempt + 1``, or ``None`` to dead-letter now.

    ``attempt`` is the number of retries already used (0 for the first failure). The delay is
    the schedule's entry for ``attempt`` (the last entry repeats), or the upstream's
    ``retry_after`` (capped at :data:`MAX_RETRY_AFTER_SECONDS`) for classes that honour it,
    stretched by a random 0-10 % from ``rng`` (the module's generator when ``None``).
    """
    policy = POLICIES[ErrorClass(error_class)]
    if not policy.retryable or attempt < 0:
        return None
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return None
    if policy.honour_retry_after and retry_after is not None and retry_after >= 0:
        base = min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
    else:
        base = float(policy.delays[min(attempt, len(policy.delays) - 1)])
    jitter = (rng or random).random() * JITTER_FRACTION
    return base * (1.0 + jitter)


def counts_for_breaker(error_class: ErrorClass | str) -> bool:
    """True for failures that say the upstream is unhealthy (``unavailable``, ``timeout``)."""
    return ErrorClass(error_class) in _BREAKER_COUNTS


def hold_reason(error_class: ErrorClass | str) -> str | None:
    """The hold a failure of this class places (``credits``, ``key_limit``, ``budget``), or
    ``None``. A long ``rate_limited`` cool-down is a hold too, but that depends on its length,
    so the LLM client decides it."""
    return _HOLDS.get(ErrorClass(error_class))


def hold_class(reason: str) -> ErrorClass:
    """The error class a task that met the hold ``reason`` reports (``unavailable`` when the
    reason is not a hold's)."""
    for cls, held in _HOLDS.items():
        if held == reason:
            return cls
    return ErrorClass.RATE_LIMITED if reason == "rate_limited" else ErrorClass.UNAVAILABLE


def hands_back(error_class: ErrorClass | str) -> bool:
    """True for classes whose task goes back to its queue without spending a retry while the
    upstream is paused for everyone (a hold, an open breaker or a shared cool-down)."""
    cls = ErrorClass(error_class)
    return cls in _HOLDS or cls in _BREAKER_COUNTS or cls is ErrorClass.RATE_LIMITED


def classify_exception(exc: BaseException) -> TaskError:
    """Turn any exception into a :class:`TaskError` (a ``TaskError`` passes through unchanged).

    httpx timeouts, network errors (connect, read, write) and remote protocol errors, and the
    builtin ``TimeoutError``, are ``timeout``; everything else is ``unexpected``.
    """
    if isinstance(exc, TaskError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, _TIMEOUT_EXCEPTIONS):
        return TaskError(ErrorClass.TIMEOUT, f"{name}: {exc}" if str(exc) else name)
    return TaskError(ErrorClass.UNEXPECTED, f"{name}: {exc}" if str(exc) else name)
