"""The LLM provider the tasks talk to: OpenRouter when a key is set, else the offline one.

Both satisfy :class:`LLMProvider`. :func:`make_provider` builds the right one for the settings:
the OpenRouter provider comes wired to the shared :class:`RateLimiter`, :class:`CircuitBreaker`
and :class:`OpenRouterMonitor` (its metrics recorder), and exposes them as ``client``,
``breaker``, ``limiter`` and ``monitor`` for the worker, the PDF task and the API, which reach
them through :attr:`taskflow_server.services.Services.openrouter` (typed; ``None`` offline).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

from taskflow_server.config import Settings
from taskflow_server.llm.monitor import OpenRouterMonitor
from taskflow_server.llm.offline import LABEL, summarize_text
from taskflow_server.llm.openrouter import OpenRouterClient
from taskflow_server.resilience.breaker import CircuitBreaker
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.resilience.ratelimit import RateLimiter, upstream_burst
from taskflow_server.store.keys import Keys

log = logging.getLogger(__name__)

OFFLINE_THREAD_CHARS = 50_000
"""Offline inputs longer than this are summarised in a thread, off the event loop."""


@dataclass
class SummaryResult:
    """A summary and where it came from.

    Attributes:
        summary: the summary text.
        provider: ``openrouter`` or ``offline``.
        model: the model that wrote it (``extractive`` for the offline provider).
        usage: tokens and cost (zeros offline).
        truncated: the model's answer was cut at ``max_tokens`` even with more room.
    """

    summary: str
    provider: str
    model: str
    usage: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False


class LLMProvider(Protocol):
    """What the tasks need from an LLM.

    Attributes:
        name: ``openrouter`` or ``offline``.
        model: the default model (``extractive`` offline).

    Providers may also have ``max_input_chars``, the longest text one ``summarize`` call should
    get (the summarize task chunks longer texts); both built-in providers do.
    """

    name: str
    model: str

    async def summarize(
        self, text: str, *, sentences: int = 3, language: str | None = None
    ) -> SummaryResult:
        """Summarise ``text`` in about ``sentences`` sentences, in ``language`` or the input's."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class OfflineProvider:
    """The dependency-free extractive provider (:mod:`taskflow_server.llm.offline`).

    ``language`` is accepted and ignored: the summary is made of the input's own sentences.
    """

    name = "offline"
    model = LABEL

    def __init__(
        self, *, max_input_chars: int = 10_000_000, monitor: OpenRouterMonitor | None = None
    ) -> None:
        self.max_input_chars = max_input_chars
        self.monitor = monitor

    async def summarize(
        self, text: str, *, sentences: int = 3, language: str | None = None
    ) -> SummaryResult:
        """Pick the ``sentences`` most central sentences of ``text``."""
        if len(text) > OFFLINE_THREAD_CHARS:
            summary = await asyncio.to_thread(summarize_text, text, sentences)
        else:
            summary = summarize_text(text, sentences)
        if not summary.strip():
            raise TaskError(ErrorClass.INVALID_INPUT, "the text has no sentences to summarise")
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}
        return SummaryResult(summary=summary, provider=self.name, model=self.model, usage=usage)

    async def aclose(self) -> None:
        """Nothing to release."""


def summary_messages(text: str, sentences: int, language: str | None) -> list[dict[str, Any]]:
    """The chat messages that ask for a summary of ``text``."""
    where = f"in {language}" if language else "in the same language as the text"
    system = (
        f"You write faithful summaries. Summarise the user's text in at most {sentences} "
        f"sentences, {where}. Keep names, numbers and dates exactly as written; add nothing "
        "that the text does not say. Reply with the summary only: no preamble, no list, no "
        "quotation marks."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


class OpenRouterProvider:
    """Summaries through OpenRouter chat completions.

    Attributes:
        model: the default model (``OPENROUTER_MODEL``).
        client: the :class:`OpenRouterClient` (limiter, breaker and monitor attached).
        breaker: the shared circuit breaker of the ``openrouter`` upstream.
        limiter: the shared rate limiter.
        monitor: the :class:`OpenRouterMonitor` (status and daily metrics).
    """

    name = "openrouter"

    def __init__(
        self,
        settings: Settings,
        client: OpenRouterClient,
        breaker: CircuitBreaker,
        limiter: RateLimiter,
        monitor: OpenRouterMonitor,
    ) -> None:
        self.settings = settings
        self.client = client
        self.breaker = breaker
        self.limiter = limiter
        self.monitor = monitor
        self.max_input_chars = settings.summarize_chunk_chars
        self.model = settings.openrouter_model

    async def summarize(
        self, text: str, *, sentences: int = 3, language: str | None = None
    ) -> SummaryResult:
        """Ask the model for a summary; raises ``TaskError`` on any upstream failure."""
        result = await self.client.chat(
            summary_messages(text, sentences, language),
            max_tokens=80 * sentences + 120,
            temperature=0.2,
        )
        summary = result.content.strip()
        return SummaryResult(
            summary=summary,
            provider=self.name,
            model=result.model or self.model,
            usage=result.usage,
            truncated=result.truncated,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


def make_provider(settings: Settings, redis: Redis, keys: Keys) -> LLMProvider:
    """The provider for these settings: OpenRouter (fully wired) with a key, else offline."""
    if settings.offline:
        log.info("no OPENROUTER_API_KEY: using the offline extractive summarizer")
        monitor = OpenRouterMonitor(redis, keys, settings, None)
        return OfflineProvider(monitor=monitor)
    breaker = CircuitBreaker(redis, keys, "openrouter", settings)
    rate = settings.parsed_rate_limit
    limiter = RateLimiter(
        redis,
        keys,
        "openrouter",
        rate,
        settings.max_in_flight,
        lease_seconds=settings.openrouter_timeout + 30.0,
        burst=upstream_burst(rate) if rate is not None else None,
        max_wait=settings.upstream_max_wait,
    )
    monitor = OpenRouterMonitor(redis, keys, settings, None)
    client = OpenRouterClient(settings, limiter=limiter, breaker=breaker, metrics=monitor)
    monitor.client = client
    log.info(
        "LLM provider: OpenRouter at %s, model %s, rate %s, max in flight %d",
        settings.openrouter_base_url,
        settings.openrouter_model,
        settings.rate_limit or "from the key / off",
        settings.max_in_flight,
    )
    return OpenRouterProvider(settings, client, breaker, limiter, monitor)
