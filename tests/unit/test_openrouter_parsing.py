"""OpenRouter answers -> ChatResult or a classified UpstreamError (no network)."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from typing import Any

import pytest

from taskflow_server.llm.openrouter import (
    ChatResult,
    build_response_format,
    classify_error,
    parse_chat_response,
    parse_retry_after,
)
from taskflow_server.resilience.errors import ErrorClass, TaskError

NOW = 1_800_000_000.0


def body(code: int, message: str = "boom", **metadata: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata:
        error["metadata"] = metadata
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "metadata", "expected"),
    [
        (400, {"error_type": "invalid_request"}, ErrorClass.INVALID_REQUEST),
        (400, {"error_type": "context_length_exceeded"}, ErrorClass.INVALID_REQUEST),
        (400, {"error_type": "content_policy_violation"}, ErrorClass.CONTENT_FILTERED),
        (400, {}, ErrorClass.INVALID_REQUEST),
        (401, {}, ErrorClass.AUTH),
        (401, {"error_type": "authentication"}, ErrorClass.AUTH),
        (402, {"limit_source": "openrouter_credits"}, ErrorClass.CREDITS),
        (402, {"limit_source": "openrouter_key_limit"}, ErrorClass.KEY_LIMIT),
        (403, {"limit_source": "openrouter_key_limit"}, ErrorClass.KEY_LIMIT),
        (402, {"limit_source": "openrouter_in_flight_budget"}, ErrorClass.IN_FLIGHT_BUDGET),
        (402, {"reason": "in_flight_budget_exhausted"}, ErrorClass.IN_FLIGHT_BUDGET),
        (402, {}, ErrorClass.CREDITS),
        (403, {"reasons": ["hate"], "flagged_input": "x"}, ErrorClass.CONTENT_FILTERED),
        (403, {}, ErrorClass.INVALID_REQUEST),
        (403, {"error_type": "permission_denied"}, ErrorClass.INVALID_REQUEST),
        (404, {}, ErrorClass.INVALID_REQUEST),
        (408, {}, ErrorClass.TIMEOUT),
        (413, {}, ErrorClass.INVALID_REQUEST),
        (429, {}, ErrorClass.RATE_LIMITED),
        (429, {"error_type": "rate_limit_exceeded"}, ErrorClass.RATE_LIMITED),
        (500, {"error_type": "server"}, ErrorClass.UNAVAILABLE),
        (502, {"error_type": "provider_unavailable"}, ErrorClass.UNAVAILABLE),
        (503, {"error_type": "provider_overloaded"}, ErrorClass.UNAVAILABLE),
        (504, {"error_type": "timeout"}, ErrorClass.TIMEOUT),
        (504, {}, ErrorClass.TIMEOUT),
        (524, {}, ErrorClass.TIMEOUT),
        (529, {}, ErrorClass.UNAVAILABLE),
        (520, {}, ErrorClass.UNAVAILABLE),
        (418, {}, ErrorClass.INVALID_REQUEST),
    ],
)
def test_status_and_error_type_mapping(
    status: int, metadata: dict[str, Any], expected: ErrorClass
) -> None:
    err = classify_error(status, body(status, **metadata), {}, now=NOW)
    assert isinstance(err, TaskError)
    assert err.error_class is expected
    assert err.status == status


def test_messages_are_never_read() -> None:
    # v1 sent a persistent 429 "rate limit exceeded" to the DLQ by matching "limit exceeded".
    err = classify_error(429, body(429, "quota limit exceeded, unauthorized, not found"), {})
    assert err.error_class is ErrorClass.RATE_LIMITED
    err = classify_error(503, body(503, "invalid json unauthorized permission denied"), {})
    assert err.error_class is ErrorClass.UNAVAILABLE


def test_non_json_error_body() -> None:
    err = classify_error(502, "<html>Bad gateway</html>", {})
    assert err.error_class is ErrorClass.UNAVAILABLE
    assert "502" in err.message


@pytest.mark.parametrize(
    ("headers", "meta", "expected"),
    [
        ({"Retry-After": "7"}, None, 7.0),
        ({"retry-after": "0.5"}, None, 0.5),
        ({"Retry-After": str(int((NOW + 30) * 1000))}, None, 30.0),  # epoch ms
        ({"Retry-After": str(int(NOW + 12))}, None, 12.0),  # epoch seconds
        ({"Retry-After": formatdate(NOW + 20, usegmt=True)}, None, 20.0),  # HTTP date
        ({"X-RateLimit-Reset": str(int((NOW + 4) * 1000))}, None, 4.0),
        ({}, {"X-RateLimit-Reset": str(int((NOW + 9) * 1000))}, 9.0),
        ({}, {"Retry-After": "3"}, 3.0),
        ({"Retry-After": "2"}, {"Retry-After": "99"}, 2.0),  # the response header wins
        ({"Retry-After": str(int((NOW - 5) * 1000))}, None, 0.0),  # in the past
        ({}, None, None),
        ({"Retry-After": "soon"}, None, None),
    ],
)
def test_retry_after_forms(
    headers: dict[str, str], meta: dict[str, str] | None, expected: float | None
) -> None:
    got = parse_retry_after(headers, meta, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=0.01)


def test_retry_after_travels_in_the_error() -> None:
    headers = {"Retry-After": "5", "X-RateLimit-Remaining": "0"}
    err = classify_error(429, body(429, error_type="rate_limit_exceeded"), headers, now=NOW)
    assert err.retry_after == 5.0
    meta_headers = {"X-RateLimit-Reset": str(int((NOW + 8) * 1000))}
    err = classify_error(429, body(429, headers=meta_headers), {}, now=NOW)
    assert err.retry_after == pytest.approx(8.0, abs=0.01)


def ok_body(content: Any = "A summary.", **choice_extra: Any) -> dict[str, Any]:
    choice = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": content},
        **choice_extra,
    }
    return {
        "id": "gen-1",
        "model": "m/x",
        "provider": "P",
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.01},
    }


def test_parse_success() -> None:
    result = parse_chat_response(ok_body(), {"x-generation-id": "gen-1"})
    assert isinstance(result, ChatResult)
    assert result.content == "A summary."
    assert (result.model, result.provider, result.generation_id) == ("m/x", "P", "gen-1")
    assert result.usage["total_tokens"] == 15
    assert result.usage["cost"] == 0.01
    assert result.finish_reason == "stop"


def test_usage_defaults() -> None:
    raw = ok_body()
    raw["usage"] = {"prompt_tokens": 3, "completion_tokens": 4}
    result = parse_chat_response(raw)
    assert result.usage["total_tokens"] == 7 and result.usage["cost"] == 0.0


def test_choice_error_is_classed_by_its_numeric_code() -> None:
    raw = ok_body("", error={"code": 502, "message": "died"})
    raw["choices"][0]["finish_reason"] = "error"
    with pytest.raises(TaskError) as info:
        parse_chat_response(raw)
    assert info.value.error_class is ErrorClass.UNAVAILABLE
    assert info.value.usage["total_tokens"] == 15  # type: ignore[attr-defined]


def test_choice_error_without_type_or_code_is_bad_output() -> None:
    raw = ok_body("", error={"message": "something went wrong"})
    raw["choices"][0]["finish_reason"] = "error"
    with pytest.raises(TaskError) as info:
        parse_chat_response(raw)
    assert info.value.error_class is ErrorClass.BAD_OUTPUT


def test_choice_error_with_a_typed_error_type() -> None:
    error = {"code": 429, "message": "x", "metadata": {"error_type": "rate_limit_exceeded"}}
    with pytest.raises(TaskError) as info:
        parse_chat_response(ok_body("", error=error))
    assert info.value.error_class is ErrorClass.RATE_LIMITED


def test_content_filter_finish_reason() -> None:
    raw = ok_body("partial")
    raw["choices"][0]["finish_reason"] = "content_filter"
    with pytest.raises(TaskError) as info:
        parse_chat_response(raw)
    assert info.value.error_class is ErrorClass.CONTENT_FILTERED


@pytest.mark.parametrize("raw", [ok_body(""), ok_body(None), {"choices": []}])
def test_empty_answers_are_empty_answer(raw: Any) -> None:
    with pytest.raises(TaskError) as info:
        parse_chat_response(raw)
    assert info.value.error_class is ErrorClass.EMPTY_ANSWER


@pytest.mark.parametrize("raw", [[], "text"])
def test_malformed_answers_are_bad_output(raw: Any) -> None:
    with pytest.raises(TaskError) as info:
        parse_chat_response(raw)
    assert info.value.error_class is ErrorClass.BAD_OUTPUT


def test_a_cut_answer_is_returned_as_truncated() -> None:
    raw = ok_body("A summary that stops in the mid")
    raw["choices"][0]["finish_reason"] = "length"
    assert parse_chat_response(raw).truncated is True
    raw = ok_body('{"a": [1, 2')
    raw["choices"][0]["finish_reason"] = "length"
    with pytest.raises(TaskError) as info:
        parse_chat_response(raw, expect_json=True)
    assert info.value.error_class is ErrorClass.BAD_OUTPUT
    assert info.value.truncated is True  # type: ignore[attr-defined]


def test_json_answers() -> None:
    result = parse_chat_response(ok_body('{"a": 1}'), expect_json=True)
    assert result.parsed == {"a": 1}
    fenced = parse_chat_response(ok_body('```json\n{"a": [1, 2]}\n```'), expect_json=True)
    assert fenced.parsed == {"a": [1, 2]}
    with pytest.raises(TaskError) as info:
        parse_chat_response(ok_body('{"a": '), expect_json=True)
    assert info.value.error_class is ErrorClass.BAD_OUTPUT


def test_content_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]
    assert parse_chat_response(ok_body(parts)).content == "Hello world"


def test_response_format_is_strict_json_schema() -> None:
    schema = {"title": "Page result!", "type": "object", "properties": {"a": {"type": "string"}}}
    fmt = build_response_format(schema)
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == schema
    assert fmt["json_schema"]["name"] == "Page_result_"
    ready = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    assert build_response_format(ready) == ready
    json.dumps(fmt)


# Shapes with no public capture to copy (so no fixture): built here from the documented rule
# that an error inside a 200 carries the HTTP status it stands for in its numeric ``code``.


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (429, ErrorClass.RATE_LIMITED),
        ("502", ErrorClass.UNAVAILABLE),
        (503, ErrorClass.UNAVAILABLE),
        (408, ErrorClass.TIMEOUT),
        (400, ErrorClass.INVALID_REQUEST),
        ("not-a-code", ErrorClass.BAD_OUTPUT),
        (True, ErrorClass.BAD_OUTPUT),
    ],
)
def test_top_level_error_in_a_200_is_classed_by_its_code(code: Any, expected: ErrorClass) -> None:
    raw = {"error": {"code": code, "message": "Provider returned error"}}
    with pytest.raises(TaskError) as info:
        parse_chat_response(raw)
    assert info.value.error_class is expected


def test_a_provider_429_inside_a_200_reads_its_metadata_headers() -> None:
    reset = str(int((time.time() + 25) * 1000))  # parse_chat_response reads the clock
    error = {"code": 429, "message": "x", "metadata": {"headers": {"X-RateLimit-Reset": reset}}}
    with pytest.raises(TaskError) as info:
        parse_chat_response({"error": error})
    assert info.value.error_class is ErrorClass.RATE_LIMITED
    assert info.value.retry_after == pytest.approx(25.0, abs=2.0)


def test_a_cloudflare_524_page_is_a_timeout() -> None:
    err = classify_error(524, "<!DOCTYPE html><title>A timeout occurred</title>", {})
    assert err.error_class is ErrorClass.TIMEOUT


def test_an_affordable_402_names_its_tokens_and_a_spent_one_does_not() -> None:
    afford = "This request requires more credits, or fewer max_tokens. You requested up to 4096"
    err = classify_error(402, body(402, f"{afford} tokens, but can only afford 222."), {})
    assert (err.error_class, err.affordable_tokens) == (ErrorClass.CREDITS, 222)
    spent = classify_error(402, body(402, f"{afford} tokens, but can only afford 0."), {})
    assert spent.error_class is ErrorClass.CREDITS and not spent.affordable_tokens
