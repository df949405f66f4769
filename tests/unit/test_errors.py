"""Error classes, retry schedules and exception classification (pure functions)."""

from __future__ import annotations

import pickle
import random

import httpx
import pytest

from taskflow_server.resilience.errors import (
    MAX_RETRY_AFTER_SECONDS,
    POLICIES,
    ErrorClass,
    NotSentError,
    TaskError,
    classify_exception,
    counts_for_breaker,
    hands_back,
    hold_reason,
    retry_delay,
)

SCHEDULES = {
    ErrorClass.RATE_LIMITED: [60, 120, 300],
    ErrorClass.CREDITS: [300, 600, 1800],
    ErrorClass.KEY_LIMIT: [300, 600, 1800],
    ErrorClass.BUDGET: [300, 600, 1800],
    ErrorClass.EMPTY_ANSWER: [30, 60, 120],
    ErrorClass.UNAVAILABLE: [5, 10, 30, 60, 120],
    ErrorClass.TIMEOUT: [2, 5, 10, 30, 60],
    ErrorClass.UNEXPECTED: [5, 15, 60],
}


class FixedRandom(random.Random):
    """A Random whose ``random()`` always returns one value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_every_class_has_a_policy() -> None:
    assert set(POLICIES) == set(ErrorClass)
    assert {c.value for c in ErrorClass} == {
        "rate_limited",
        "credits",
        "key_limit",
        "budget",
        "in_flight_budget",
        "unavailable",
        "timeout",
        "content_filtered",
        "invalid_request",
        "auth",
        "invalid_input",
        "bad_output",
        "empty_answer",
        "unexpected",
    }


@pytest.mark.parametrize("cls", list(SCHEDULES))
def test_schedule_without_jitter_then_last_repeats(cls: ErrorClass) -> None:
    no_jitter = FixedRandom(0.0)
    schedule = SCHEDULES[cls]
    got = [retry_delay(cls, n, rng=no_jitter) for n in range(len(schedule) + 3)]
    assert got == [float(x) for x in schedule] + [float(schedule[-1])] * 3


@pytest.mark.parametrize("cls", list(SCHEDULES))
def test_jitter_stays_within_ten_percent_and_varies(cls: ErrorClass) -> None:
    rng = random.Random(42)
    base = SCHEDULES[cls][0]
    delays = [retry_delay(cls, 0, rng=rng) for _ in range(200)]
    assert all(d is not None and base <= d <= base * 1.1 for d in delays)
    assert len(set(delays)) > 100
    assert retry_delay(cls, 0, rng=FixedRandom(0.999999)) == pytest.approx(base * 1.1, rel=1e-4)


def test_same_seed_same_delays() -> None:
    a = [retry_delay("timeout", n, rng=random.Random(7)) for n in range(5)]
    b = [retry_delay("timeout", n, rng=random.Random(7)) for n in range(5)]
    assert a == b


@pytest.mark.parametrize(
    "cls",
    [
        ErrorClass.CONTENT_FILTERED,
        ErrorClass.INVALID_REQUEST,
        ErrorClass.AUTH,
        ErrorClass.INVALID_INPUT,
    ],
)
def test_permanent_classes_never_retry(cls: ErrorClass) -> None:
    assert retry_delay(cls, 0) is None
    assert retry_delay(cls, 0, retry_after=5) is None
    assert not TaskError(cls, "x").retryable


def test_bad_output_gets_two_quick_retries_then_dlq() -> None:
    rng = FixedRandom(0.0)
    assert retry_delay("bad_output", 0, rng=rng) == 2.0
    assert retry_delay("bad_output", 1, rng=rng) == 2.0
    assert retry_delay("bad_output", 2, rng=rng) is None
    assert retry_delay("bad_output", 5, rng=rng) is None


def test_retry_after_is_honoured_and_capped() -> None:
    rng = FixedRandom(0.0)
    assert retry_delay("rate_limited", 0, retry_after=7.5, rng=rng) == 7.5
    assert retry_delay("rate_limited", 2, retry_after=0.25, rng=rng) == 0.25
    assert retry_delay("in_flight_budget", 0, retry_after=3, rng=rng) == 3.0
    assert retry_delay("unavailable", 0, retry_after=42, rng=rng) == 42.0
    capped = retry_delay("rate_limited", 0, retry_after=10 * MAX_RETRY_AFTER_SECONDS, rng=rng)
    assert capped == MAX_RETRY_AFTER_SECONDS
    # Retry-After gets jitter on top, never less than asked.
    assert retry_delay("rate_limited", 0, retry_after=10, rng=FixedRandom(0.5)) == 10.5


def test_retry_after_ignored_by_classes_with_a_fixed_schedule() -> None:
    rng = FixedRandom(0.0)
    assert retry_delay("credits", 0, retry_after=1, rng=rng) == 300.0
    assert retry_delay("timeout", 0, retry_after=1, rng=rng) == 2.0


def test_in_flight_budget_without_retry_after_uses_short_schedule() -> None:
    assert retry_delay("in_flight_budget", 0, rng=FixedRandom(0.0)) == 2.0


def test_negative_attempt_is_no_retry() -> None:
    assert retry_delay("timeout", -1) is None


def test_breaker_predicates() -> None:
    counting = {c for c in ErrorClass if counts_for_breaker(c)}
    assert counting == {ErrorClass.UNAVAILABLE, ErrorClass.TIMEOUT}
    assert counts_for_breaker("timeout") and not counts_for_breaker("rate_limited")


def test_holds_and_hand_backs() -> None:
    holds = {c: hold_reason(c) for c in ErrorClass if hold_reason(c)}
    assert holds == {
        ErrorClass.CREDITS: "credits",
        ErrorClass.KEY_LIMIT: "key_limit",
        ErrorClass.BUDGET: "budget",
    }
    handed = {c for c in ErrorClass if hands_back(c)}
    assert handed == set(holds) | {
        ErrorClass.UNAVAILABLE,
        ErrorClass.TIMEOUT,
        ErrorClass.RATE_LIMITED,
    }


def test_not_sent_is_a_task_error_that_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(NotSentError("rate_limited", "held", retry_after=4.0)))
    assert isinstance(err, NotSentError) and isinstance(err, TaskError)
    assert (err.error_class, err.retry_after) == (ErrorClass.RATE_LIMITED, 4.0)


def test_task_error_fields() -> None:
    err = TaskError("rate_limited", "slow down", retry_after=3.0)
    assert err.error_class is ErrorClass.RATE_LIMITED
    assert err.message == "slow down"
    assert err.retry_after == 3.0
    assert "rate_limited" in str(err)
    assert err.retryable
    with pytest.raises(ValueError):
        TaskError("no_such_class", "x")


def test_classify_exception() -> None:
    original = TaskError(ErrorClass.AUTH, "bad key")
    assert classify_exception(original) is original
    request = httpx.Request("GET", "http://127.0.0.1/")
    for exc in (
        httpx.ReadTimeout("slow", request=request),
        httpx.ConnectError("refused", request=request),
        httpx.RemoteProtocolError("eof", request=request),
        TimeoutError(),
    ):
        assert classify_exception(exc).error_class is ErrorClass.TIMEOUT
    for exc in (ValueError("boom"), KeyError("k"), RuntimeError()):
        err = classify_exception(exc)
        assert err.error_class is ErrorClass.UNEXPECTED
        assert type(exc).__name__ in err.message
    assert retry_delay("unexpected", 0, rng=FixedRandom(0.0)) == 5.0


def test_task_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(TaskError("invalid_input", "not a PDF", retry_after=1.5)))
    assert isinstance(err, TaskError)
    assert (err.error_class, err.message, err.retry_after) == (
        ErrorClass.INVALID_INPUT,
        "not a PDF",
        1.5,
    )
