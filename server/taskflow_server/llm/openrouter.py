"""The OpenRouter client: chat completions under the shared limiter and breaker, typed errors.

:class:`OpenRouterClient` sends ``POST /chat/completions`` through :meth:`RateLimiter.slot`,
reports every outcome to the :class:`CircuitBreaker` and to a metrics recorder, and turns every
failure into a :class:`UpstreamError` (a :class:`TaskError`). It never retries by itself: the
task queue owns retries, on the schedule of the error class.

Classification (pure functions, see ``classify_error`` and ``parse_chat_response``) reads the
HTTP status (or the numeric ``code`` of an error inside a 200 answer),
``error.metadata.error_type``, ``metadata.limit_source`` and ``finish_reason``, never the
message text to pick a class::

    429 / rate_limit_exceeded                  rate_limited  (Retry-After -> shared cool-down;
                                                 longer than upstream_max_wait -> a hold)
    402/403 limit_source in-flight budget      in_flight_budget (lowers the in-flight limit)
    402/403 limit_source key/workspace/guard.  key_limit     (a hold)
    402 / payment_required                     credits       (a hold)
    502, 503, 529, 500 / provider_*, server    unavailable
    408, 504, 524 / timeout, transport errors  timeout
    403 with moderation metadata,              content_filtered
      content_policy_violation, finish_reason content_filter
    401 / authentication                       auth
    400, 404, other 403 (region, permission)   invalid_request
    200 with an error (top level, choice or    as the same status would be (its numeric code),
      stream chunk)                              else by error_type, else bad_output
    200 with no choices or no content          empty_answer (a model warming up)

Two answers are handled inside one call, because a second request fixes them at once:
``finish_reason: length`` is asked again once with twice the ``max_tokens`` and is otherwise
returned with ``truncated=True``; a 402 that says the balance "can only afford N" tokens (the one
number read from a message: OpenRouter sends no field for it) is sent again once with
``max_tokens=N``, without placing a hold: it is about that request, not the account.

``Retry-After`` is read from the response headers or ``error.metadata.headers``, as seconds, an
HTTP date, epoch seconds or epoch milliseconds; ``X-RateLimit-Reset`` is the fallback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from taskflow_server.config import Settings
from taskflow_server.logs import demote_request_logs
from taskflow_server.observability import tracing
from taskflow_server.resilience.errors import (
    ErrorClass,
    NotSentError,
    TaskError,
    classify_exception,
    hold_class,
)

if TYPE_CHECKING:
    from taskflow_server.resilience.breaker import CircuitBreaker
    from taskflow_server.resilience.ratelimit import RateLimiter

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN_SECONDS = 10.0
"""Cool-down after a 429 that carries no ``Retry-After``."""

DEFAULT_IN_FLIGHT_SECONDS = 30.0
"""How long the in-flight limit stays lowered after an in-flight-budget 402 without Retry-After."""

MAX_GROWN_TOKENS = 32_768
"""A cut-off answer is asked again with twice its ``max_tokens``, at most this many."""

_AFFORD = re.compile(r"can only afford (\d+)")

_BY_ERROR_TYPE: dict[str, ErrorClass] = {
    "rate_limit_exceeded": ErrorClass.RATE_LIMITED,
    "provider_overloaded": ErrorClass.UNAVAILABLE,
    "provider_unavailable": ErrorClass.UNAVAILABLE,
    "server": ErrorClass.UNAVAILABLE,
    "timeout": ErrorClass.TIMEOUT,
    "authentication": ErrorClass.AUTH,
    "context_length_exceeded": ErrorClass.INVALID_REQUEST,
    "invalid_request": ErrorClass.INVALID_REQUEST,
    "content_policy_violation": ErrorClass.CONTENT_FILTERED,
    "moderation": ErrorClass.CONTENT_FILTERED,
}
_BY_STATUS: dict[int, ErrorClass] = {
    400: ErrorClass.INVALID_REQUEST,
    401: ErrorClass.AUTH,
    404: ErrorClass.INVALID_REQUEST,
    408: ErrorClass.TIMEOUT,
    429: ErrorClass.RATE_LIMITED,
    500: ErrorClass.UNAVAILABLE,
    502: ErrorClass.UNAVAILABLE,
    503: ErrorClass.UNAVAILABLE,
    504: ErrorClass.TIMEOUT,
    524: ErrorClass.TIMEOUT,
    529: ErrorClass.UNAVAILABLE,
}
_IN_FLIGHT_SOURCES = frozenset({"openrouter_in_flight_budget"})
_IN_FLIGHT_REASONS = frozenset({"in_flight_budget_exhausted"})
_CREDIT_SOURCES = frozenset({"openrouter_credits"})
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]+")


class UpstreamError(TaskError):
    """A classified OpenRouter failure.

    Attributes (besides :class:`TaskError`'s):
        status: the HTTP status (200 for errors inside a successful response; ``None`` for
            transport errors).
        error_type: ``error.metadata.error_type`` when the upstream sent one.
        metadata: ``error.metadata`` as sent.
        usage: token usage when the upstream reported it (a bad answer still costs tokens).
        affordable_tokens: for a 402 about one request, the ``max_tokens`` the balance covers.
        truncated: the answer was cut at ``max_tokens`` (``finish_reason: length``).
    """

    def __init__(
        self,
        error_class: ErrorClass | str,
        message: str,
        retry_after: float | None = None,
        *,
        status: int | None = None,
        error_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
        affordable_tokens: int | None = None,
        truncated: bool = False,
    ) -> None:
        super().__init__(error_class, message, retry_after)
        self.status = status
        self.error_type = error_type
        self.metadata = dict(metadata or {})
        self.usage = dict(usage or {})
        self.affordable_tokens = affordable_tokens
        self.truncated = truncated


@dataclass
class ChatResult:
    """One successful chat completion.

    Attributes:
        content: ``choices[0].message.content`` (text; a JSON string for schema requests).
        model: the model that served the request.
        provider: the upstream provider OpenRouter routed to.
        usage: ``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``cost`` and whatever
            else the upstream reported.
        finish_reason: normalised finish reason (``stop``, ``length``...).
        generation_id: the ``gen-...`` id (``X-Generation-Id``).
        parsed: the decoded JSON when a JSON schema was asked, else ``None``.
        truncated: the answer was cut at ``max_tokens`` even after asking again with more room.
    """

    content: str
    model: str
    provider: str | None
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    generation_id: str | None = None
    parsed: Any = None
    truncated: bool = False


class CallRecorder(Protocol):
    """Receives one record per upstream call (the monitor's daily metrics implement it)."""

    async def record_call(
        self,
        ok: bool,
        error_class: str | None,
        usage: dict[str, Any],
        *,
        status: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Count one call: success or its error class, and the tokens and cost it used;
        ``status`` is the HTTP status (``None``: no answer), ``seconds`` how long the request
        took (``None``: not sent)."""


# ----------------------------------------------------------------------------- pure parsing


def _delay_from_value(value: Any, now: float) -> float | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        try:
            return parsedate_to_datetime(text).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    if number >= 1e11:  # epoch milliseconds
        return number / 1000.0 - now
    if number >= 1e9:  # epoch seconds
        return number - now
    return number


def parse_retry_after(
    headers: Mapping[str, str] | None,
    metadata_headers: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> float | None:
    """Seconds to wait from ``Retry-After`` or ``X-RateLimit-Reset`` (``None`` when absent).

    Both the response headers and ``error.metadata.headers`` are read (response headers win);
    values may be delays in seconds, HTTP dates, epoch seconds or epoch milliseconds.
    """
    now = time.time() if now is None else now
    merged: dict[str, Any] = {}
    for source in (metadata_headers, headers):
        if source:
            merged.update({str(k).lower(): v for k, v in source.items()})
    for name in ("retry-after", "x-ratelimit-reset"):
        delay = _delay_from_value(merged.get(name), now)
        if delay is not None:
            return max(0.0, delay)
    return None


def _error_class(
    status: int | None, error_type: str | None, metadata: Mapping[str, Any]
) -> ErrorClass:
    source = metadata.get("limit_source")
    if source in _IN_FLIGHT_SOURCES or metadata.get("reason") in _IN_FLIGHT_REASONS:
        return ErrorClass.IN_FLIGHT_BUDGET
    if source and (status in (402, 403) or error_type == "payment_required"):
        # A spent limit: the account's credits, or a key's, workspace's or guardrail's budget.
        return ErrorClass.CREDITS if source in _CREDIT_SOURCES else ErrorClass.KEY_LIMIT
    if status == 402 or error_type == "payment_required":
        return ErrorClass.CREDITS
    if error_type and error_type in _BY_ERROR_TYPE:
        return _BY_ERROR_TYPE[error_type]
    if status == 403:
        # Moderation names its reasons; a 403 without them (region, permission) is about the
        # request and will not change by itself.
        moderated = "reasons" in metadata or "flagged_input" in metadata
        return ErrorClass.CONTENT_FILTERED if moderated else ErrorClass.INVALID_REQUEST
    if status is None:
        return ErrorClass.UNEXPECTED
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ErrorClass.UNAVAILABLE
    if status >= 400:
        return ErrorClass.INVALID_REQUEST
    return ErrorClass.UNEXPECTED


def _error_object(body: Any) -> dict[str, Any]:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return dict(error)
        if isinstance(error, str):
            return {"message": error}
    return {}


def classify_error(
    status: int, body: Any, headers: Mapping[str, str] | None = None, now: float | None = None
) -> UpstreamError:
    """The :class:`UpstreamError` for a non-2xx response (``body`` is the decoded JSON or text)."""
    error = _error_object(body)
    metadata = error.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
    error_type = metadata.get("error_type")
    error_type = str(error_type) if error_type else None
    meta_headers = metadata.get("headers")
    retry_after = parse_retry_after(
        headers, meta_headers if isinstance(meta_headers, Mapping) else None, now
    )
    message = str(error.get("message") or f"HTTP {status}")
    cls = _error_class(status, error_type, metadata)
    return UpstreamError(
        cls,
        f"OpenRouter {status}: {message}",
        retry_after,
        status=status,
        error_type=error_type,
        metadata=metadata,
        affordable_tokens=_affordable(message) if cls is ErrorClass.CREDITS else None,
    )


def _affordable(message: str) -> int | None:
    """The token count in OpenRouter's "can only afford N" 402 (it has no field of its own)."""
    match = _AFFORD.search(message)
    return int(match.group(1)) if match else None


def _numeric_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        code = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return code if 400 <= code <= 599 else None


def _in_answer_error(
    error: Mapping[str, Any], usage: Mapping[str, Any], now: float | None = None
) -> UpstreamError:
    """An error reported inside a 200 answer (top level, choice or stream chunk).

    It is classified like the HTTP status its numeric ``code`` names (a provider's 429 inside a
    200 is a rate limit, its 502 an outage), else by ``metadata.error_type``, else
    ``bad_output``.
    """
    metadata = error.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
    error_type = metadata.get("error_type")
    error_type = str(error_type) if error_type else None
    code = _numeric_code(error.get("code"))
    if code is not None or error_type == "payment_required" or metadata.get("limit_source"):
        cls = _error_class(code, error_type, metadata)
        if cls is ErrorClass.UNEXPECTED:
            cls = ErrorClass.BAD_OUTPUT
    else:
        cls = _BY_ERROR_TYPE.get(error_type or "", ErrorClass.BAD_OUTPUT)
    meta_headers = metadata.get("headers")
    retry_after = parse_retry_after(
        None, meta_headers if isinstance(meta_headers, Mapping) else None, now
    )
    message = str(error.get("message") or "error in the answer")
    return UpstreamError(
        cls,
        f"OpenRouter error in a 200 answer (code {error.get('code')}): {message}",
        retry_after,
        status=200,
        error_type=error_type,
        metadata=metadata,
        usage=usage,
        affordable_tokens=_affordable(message) if cls is ErrorClass.CREDITS else None,
    )


def _usage(raw: Any) -> dict[str, Any]:
    usage = dict(raw) if isinstance(raw, Mapping) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    usage["prompt_tokens"] = prompt
    usage["completion_tokens"] = completion
    usage["total_tokens"] = int(usage.get("total_tokens") or prompt + completion)
    usage["cost"] = float(usage.get("cost") or 0.0)
    return usage


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        texts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        return "".join(t for t in texts if isinstance(t, str))
    return None


def decode_json_content(content: str) -> Any:
    """Decode a JSON answer, tolerating a Markdown code fence around it; raises ``ValueError``."""
    match = _FENCE.match(content)
    return json.loads(match.group(1) if match else content)


def parse_chat_response(
    body: Any, headers: Mapping[str, str] | None = None, *, expect_json: bool = False
) -> ChatResult:
    """Turn a 200 chat-completion body into a :class:`ChatResult`, or raise :class:`UpstreamError`.

    Raises ``content_filtered`` for ``finish_reason: content_filter``, the class of an error
    inside the answer (see :func:`_in_answer_error`), ``empty_answer`` for no choices or no
    content, and ``bad_output`` for ``finish_reason: error`` or (``expect_json``) content that is
    not JSON. An answer cut at ``max_tokens`` comes back with ``truncated=True`` (JSON that the
    cut left undecodable raises ``bad_output`` with ``truncated=True``).
    """
    if not isinstance(body, Mapping):
        raise UpstreamError(ErrorClass.BAD_OUTPUT, "OpenRouter answered a non-object", status=200)
    usage = _usage(body.get("usage"))
    if isinstance(body.get("error"), Mapping):
        raise _in_answer_error(body["error"], usage)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise UpstreamError(
            ErrorClass.EMPTY_ANSWER,
            "OpenRouter answered no choices (the model may be warming up)",
            status=200,
            usage=usage,
        )
    choice = choices[0]
    finish_reason = choice.get("finish_reason")
    if isinstance(choice.get("error"), Mapping):
        raise _in_answer_error(choice["error"], usage)
    if finish_reason == "content_filter":
        raise UpstreamError(
            ErrorClass.CONTENT_FILTERED,
            "the answer was stopped by a content filter",
            status=200,
            usage=usage,
        )
    message = choice.get("message")
    content = _content_text(message.get("content") if isinstance(message, Mapping) else None)
    if finish_reason == "error":
        raise UpstreamError(
            ErrorClass.BAD_OUTPUT,
            "OpenRouter answered finish_reason error without saying why",
            status=200,
            usage=usage,
        )
    truncated = finish_reason == "length"
    if not content or not content.strip():
        if truncated:
            raise UpstreamError(
                ErrorClass.BAD_OUTPUT,
                "the answer was cut at max_tokens before any content (reasoning tokens count)",
                status=200,
                usage=usage,
                truncated=True,
            )
        raise UpstreamError(
            ErrorClass.EMPTY_ANSWER,
            f"OpenRouter answered no content (finish_reason {finish_reason}); "
            "the model may be warming up",
            status=200,
            usage=usage,
        )
    parsed: Any = None
    if expect_json:
        try:
            parsed = decode_json_content(content)
        except ValueError as exc:
            cut = " (the answer was cut at max_tokens)" if truncated else ""
            raise UpstreamError(
                ErrorClass.BAD_OUTPUT,
                f"the answer is not valid JSON{cut}: {exc}",
                status=200,
                usage=usage,
                truncated=truncated,
            ) from None
    generation_id = (headers or {}).get("x-generation-id") or body.get("id")
    return ChatResult(
        content=content,
        model=str(body.get("model") or ""),
        provider=str(body["provider"]) if body.get("provider") else None,
        usage=usage,
        finish_reason=str(finish_reason) if finish_reason else None,
        generation_id=str(generation_id) if generation_id else None,
        parsed=parsed,
        truncated=truncated,
    )


def build_response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``response_format`` for a JSON schema (strict); a ready ``response_format`` passes as is."""
    if schema.get("type") in ("json_schema", "json_object") and (
        "json_schema" in schema or schema.get("type") == "json_object"
    ):
        return dict(schema)
    name = _SCHEMA_NAME.sub("_", str(schema.get("title") or "result"))[:64] or "result"
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


# ----------------------------------------------------------------------------- the client


class OpenRouterClient:
    """Async OpenRouter client.

    Args:
        settings: key, base URL, default model and timeouts (``openrouter_*``).
        limiter: the shared :class:`RateLimiter`; every chat call holds one of its slots.
        breaker: the shared :class:`CircuitBreaker`; calls are refused while it is open and
            every outcome is recorded.
        metrics: a :class:`CallRecorder` told about every chat call.
        http: an ``httpx.AsyncClient`` to use (the client creates and owns one otherwise).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        limiter: RateLimiter | None = None,
        breaker: CircuitBreaker | None = None,
        metrics: CallRecorder | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.breaker = breaker
        self.metrics = metrics
        self.base_url = settings.openrouter_base_url.rstrip("/")
        demote_request_logs()  # httpx logs each request at INFO: one line per upstream call
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.openrouter_timeout, connect=settings.openrouter_connect_timeout
            ),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        )
        if tracing.ENABLED:
            tracing.instrument_http_client(self.http)

    def _headers(self) -> dict[str, str]:
        headers = {
            "X-Title": "AsyncTaskFlow",
            "HTTP-Referer": self.settings.openrouter_referer,
            "Content-Type": "application/json",
        }
        if self.settings.openrouter_api_key:
            headers["Authorization"] = f"Bearer {self.settings.openrouter_api_key}"
        return headers

    def build_chat_body(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: Mapping[str, Any] | None = None,
        models: Sequence[str] | None = None,
        plugins: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
    ) -> dict[str, Any]:
        """The JSON body of a chat-completion request."""
        body: dict[str, Any] = {
            "model": model or self.settings.openrouter_model,
            "messages": [dict(m) for m in messages],
        }
        if models:
            body["models"] = list(models)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if response_format is not None:
            body["response_format"] = build_response_format(response_format)
            body["provider"] = {"require_parameters": True}
        if plugins:
            body["plugins"] = [dict(p) for p in plugins]
        if stream:
            body["stream"] = True
        return body

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: Mapping[str, Any] | None = None,
        models: Sequence[str] | None = None,
        plugins: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
    ) -> ChatResult:
        """One chat completion; raises :class:`UpstreamError` (a ``TaskError``) on any failure.

        ``response_format`` is a JSON schema: the request asks for strict ``json_schema`` output
        with ``provider.require_parameters`` and the answer must decode as JSON (``parsed``).
        ``stream`` reads the answer as server-sent events (same result; mid-stream errors are
        classified like others).

        An answer cut at ``max_tokens`` is asked again once with twice the room, then returned
        with ``truncated=True``; a 402 that names the tokens the balance can afford is sent again
        once with that ``max_tokens``. ``usage`` adds up every request sent (all were paid).
        Raises :class:`NotSentError` without sending when LLM work is on hold or the breaker is
        open.
        """
        spent: dict[str, Any] = {}
        tokens = max_tokens
        grown = lowered = False
        while True:
            body = self.build_chat_body(
                messages,
                model=model,
                max_tokens=tokens,
                temperature=temperature,
                response_format=response_format,
                models=models,
                plugins=plugins,
                stream=stream,
            )
            try:
                result = await self._call(body, response_format is not None)
            except UpstreamError as exc:
                add_usage(spent, exc.usage)
                afford = exc.affordable_tokens
                if afford and not lowered and (tokens is None or afford < tokens):
                    log.info("openrouter: the balance affords %d tokens; asking again", afford)
                    tokens, lowered = afford, True
                    continue
                if exc.truncated and not grown and not lowered and tokens:
                    tokens, grown = min(tokens * 2, MAX_GROWN_TOKENS), True
                    continue
                exc.usage = spent
                raise
            add_usage(spent, result.usage)
            if result.truncated and not grown and not lowered and tokens:
                tokens, grown = min(tokens * 2, MAX_GROWN_TOKENS), True
                continue
            result.usage = spent
            if result.truncated:
                log.warning("openrouter answer cut at max_tokens=%s; kept as truncated", tokens)
            return result

    async def _refuse_if_paused(self) -> None:
        """Raise :class:`NotSentError` while the breaker is open (for an outage or a hold)."""
        if self.breaker is None:
            return
        status = await self.breaker.status()
        if status["state"] != "open":
            return
        hold = status.get("hold")
        if hold:
            raise NotSentError(
                hold_class(str(hold)),
                f"LLM work is on hold ({hold}); nothing was sent",
                status["seconds_to_half_open"],
            )
        raise NotSentError(
            ErrorClass.UNAVAILABLE,
            f"the {self.breaker.name} circuit breaker is open ({status['reason']})",
            status["seconds_to_half_open"],
        )

    async def _call(self, body: dict[str, Any], expect_json: bool) -> ChatResult:
        """Send one request under the breaker and the limiter, and do the bookkeeping."""
        if self.limiter is None:
            await self._refuse_if_paused()  # with a limiter, its acquire script does this
        sent: float | None = None  # when the request went out (for the latency metric)
        try:
            if self.limiter is not None:
                # The limiter reads the breaker when it grants: a hold placed while this call
                # waited for a slot or a token stops it there, before it takes a token.
                async with self.limiter.slot():
                    sent = time.perf_counter()
                    try:
                        result = await self._send(body, expect_json)
                    except UpstreamError as exc:
                        if exc.error_class is ErrorClass.RATE_LIMITED:
                            # Set the shared cool-down while this call still holds its slot:
                            # released first, the slot can go to a caller that sends before
                            # the cool-down exists and earns a second 429.
                            await _quietly(self._cool_down(exc))
                        raise
            else:
                sent = time.perf_counter()
                result = await self._send(body, expect_json)
        except NotSentError as exc:
            # The limiter gave up waiting: a wait that long is a hold for every worker, or the
            # task would come straight back and wait again. (A refusal because the breaker is
            # already open needs no new hold.)
            wait = exc.retry_after or 0.0
            if (
                self.breaker is not None
                and exc.error_class is ErrorClass.RATE_LIMITED
                and wait > self.settings.upstream_max_wait
            ):
                await _quietly(self._hold_unless_open(wait))
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = as_upstream_error(exc)
            await self._after_failure(error, _since(sent))
            if error is exc:
                raise
            raise error from exc
        await self._after_success(result, _since(sent))
        return result

    async def _hold_unless_open(self, seconds: float) -> None:
        assert self.breaker is not None
        if (await self.breaker.status())["state"] != "open":
            await self.breaker.hold("rate_limited", seconds)

    async def _cool_down(self, error: UpstreamError) -> None:
        """Pause every worker for a 429; a pause longer than a task should wait is a hold."""
        assert self.limiter is not None
        seconds = error.retry_after or DEFAULT_COOLDOWN_SECONDS
        await self.limiter.set_cooldown(seconds)
        if self.breaker is not None and seconds > self.settings.upstream_max_wait:
            await self.breaker.hold("rate_limited", seconds)

    async def _send(self, body: dict[str, Any], expect_json: bool) -> ChatResult:
        if not tracing.ENABLED:
            return await self._send_request(body, expect_json)
        # One client span per request sent: model, status, tokens and cost as attributes.
        with tracing.upstream_span(str(body.get("model", ""))) as call:
            try:
                result = await self._send_request(body, expect_json)
            except UpstreamError as exc:
                call.failed(exc.status, exc.error_class.value, exc.usage)
                raise
            except Exception as exc:
                call.failed(None, as_upstream_error(exc).error_class.value, {})
                raise
            call.answered(200, result.model, result.usage)
            return result

    async def _send_request(self, body: dict[str, Any], expect_json: bool) -> ChatResult:
        url = f"{self.base_url}/chat/completions"
        if body.get("stream"):
            async with self.http.stream("POST", url, json=body, headers=self._headers()) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise classify_error(resp.status_code, _json_or_text(resp), resp.headers)
                return await _read_stream(resp, expect_json)
        resp = await self.http.post(url, json=body, headers=self._headers())
        if resp.status_code != 200:
            raise classify_error(resp.status_code, _json_or_text(resp), resp.headers)
        try:
            decoded = resp.json()
        except ValueError:
            raise UpstreamError(
                ErrorClass.BAD_OUTPUT,
                "OpenRouter answered 200 with a body that is not JSON",
                status=200,
            ) from None
        return parse_chat_response(decoded, resp.headers, expect_json=expect_json)

    async def _after_success(self, result: ChatResult, seconds: float | None) -> None:
        if self.breaker is not None:
            await _quietly(self.breaker.record_success())
        if self.metrics is not None:
            await _quietly(
                self.metrics.record_call(True, None, result.usage, status=200, seconds=seconds)
            )

    async def _after_failure(self, error: UpstreamError, seconds: float | None) -> None:
        cls = error.error_class
        log.info("openrouter call failed: %s", error)
        if self.limiter is not None and cls is ErrorClass.IN_FLIGHT_BUDGET:
            await _quietly(
                self.limiter.reduce_in_flight(error.retry_after or DEFAULT_IN_FLIGHT_SECONDS)
            )
        if self.breaker is not None and not error.affordable_tokens:
            # A 402 that names what the balance affords is about this request (it is sent again
            # smaller), not a reason to hold every worker.
            await _quietly(self.breaker.record_failure(cls))
        if self.metrics is not None:
            await _quietly(
                self.metrics.record_call(
                    False, cls.value, error.usage, status=error.status, seconds=seconds
                )
            )

    async def _get(self, path: str) -> httpx.Response:
        return await self.http.get(f"{self.base_url}{path}", headers=self._headers())

    async def key_status(self) -> dict[str, Any]:
        """The key's ``data`` from ``GET /key`` (falls back to ``/auth/key`` on 404).

        Raises :class:`UpstreamError` (``auth`` for 401...) or a classified transport error.
        """
        try:
            resp = await self._get("/key")
            if resp.status_code == 404:
                resp = await self._get("/auth/key")
        except httpx.HTTPError as exc:
            raise as_upstream_error(exc) from exc
        if resp.status_code != 200:
            raise classify_error(resp.status_code, _json_or_text(resp), resp.headers)
        data = _json_or_text(resp)
        if not isinstance(data, Mapping) or not isinstance(data.get("data"), Mapping):
            raise UpstreamError(ErrorClass.BAD_OUTPUT, "unexpected /key answer", status=200)
        return dict(data["data"])

    async def credits(self) -> dict[str, Any] | None:
        """``GET /credits`` (``total_credits``, ``total_usage``).

        Returns ``None`` when the key is not a management key (403).
        """
        try:
            resp = await self._get("/credits")
        except httpx.HTTPError as exc:
            raise as_upstream_error(exc) from exc
        if resp.status_code == 403:
            return None
        if resp.status_code != 200:
            raise classify_error(resp.status_code, _json_or_text(resp), resp.headers)
        data = _json_or_text(resp)
        if not isinstance(data, Mapping) or not isinstance(data.get("data"), Mapping):
            raise UpstreamError(ErrorClass.BAD_OUTPUT, "unexpected /credits answer", status=200)
        return dict(data["data"])

    async def aclose(self) -> None:
        """Close the HTTP client (when this client created it)."""
        if self._owns_http:
            await self.http.aclose()


def as_upstream_error(exc: BaseException) -> UpstreamError:
    """Any exception as an :class:`UpstreamError` (classified by ``classify_exception``)."""
    if isinstance(exc, UpstreamError):
        return exc
    error = classify_exception(exc)
    return UpstreamError(error.error_class, error.message, error.retry_after)


def add_usage(total: dict[str, Any], usage: Mapping[str, Any]) -> None:
    """Add the numeric fields of ``usage`` into ``total`` (nested dicts too; flags such as
    ``is_byok`` are not amounts and are left out). Shared by the client and the tasks."""
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, Mapping):
            add_usage(total.setdefault(key, {}), value)


def _json_or_text(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _since(started: float | None) -> float | None:
    """Seconds since ``started`` (a ``perf_counter`` reading), ``None`` when unset."""
    return None if started is None else time.perf_counter() - started


async def _quietly(awaitable: Any) -> None:
    """Await bookkeeping (breaker, limiter, metrics) without letting its failure hide the call's."""
    try:
        await awaitable
    except Exception:
        log.warning("openrouter bookkeeping failed", exc_info=True)


async def _read_stream(resp: httpx.Response, expect_json: bool) -> ChatResult:
    """Assemble a streamed answer; SSE comments are skipped, an error chunk raises."""
    parts: list[str] = []
    usage: dict[str, Any] = {}
    model = provider = finish_reason = generation_id = None
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank lines and ": OPENROUTER PROCESSING" comments
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamError(
                ErrorClass.BAD_OUTPUT, "a stream chunk is not JSON", status=200
            ) from None
        if not isinstance(chunk, Mapping):
            continue
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
        if isinstance(chunk.get("error"), Mapping):
            raise _in_answer_error(chunk["error"], usage)
        model = chunk.get("model") or model
        provider = chunk.get("provider") or provider
        generation_id = chunk.get("id") or generation_id
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, Mapping):
                continue
            if isinstance(choice.get("error"), Mapping):
                raise _in_answer_error(choice["error"], usage)
            delta = choice.get("delta")
            if isinstance(delta, Mapping) and isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            finish_reason = choice.get("finish_reason") or finish_reason
    body = {
        "id": generation_id,
        "model": model,
        "provider": provider,
        "usage": usage,
        "choices": [
            {
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": "".join(parts)},
            }
        ],
    }
    return parse_chat_response(body, resp.headers, expect_json=expect_json)
