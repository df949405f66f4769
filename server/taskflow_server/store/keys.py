"""Every Redis key the system uses, in one place, under one hash tag.

All keys start with ``{<prefix>}:`` (``{taskflow}:`` by default): the braces make Redis Cluster
hash only the prefix, so every key lands in one slot and every Lua script may touch any of them.

Layout::

    {tf}:task:<id>            hash    what changes: state, timestamps, result, history, and
                                      'sid', the id of the task's entry in {tf}:submitted
    {tf}:submitted            stream  what was submitted, one entry per task: id, task_type,
                                      lane, priority, max_retries, idempotency_key, metadata,
                                      payload; the entry id is the creation time, so the stream
                                      is also the creation-time index (listing, pagination)
    {tf}:q:<lane>:<prio>      list    pending ids, FIFO; prio in high/default/low/retry
    {tf}:wake:<lane>          list    wake-up tokens for idle workers (capped, values are noise)
    {tf}:scheduled            zset    SCHEDULED ids by due time (ms)
    {tf}:active               zset    ACTIVE ids by lease expiry (ms)
    {tf}:dlq                  zset    DLQ ids by dead-letter time (ms)
    {tf}:finished             zset    COMPLETED/CANCELLED ids by finish time (retention sweep)
    {tf}:counts               hash    state -> number of tasks in that state
    {tf}:stats                hash    claim sequence and other running totals
    {tf}:metrics              hash    Prometheus counters and histogram buckets, written by the
                                      scripts that change what they count (field layout in
                                      observability/metrics.py)
    {tf}:events               stream  the event log: one entry per transition
    {tf}:parts:<id>           hash    work a task already paid for (a page's answer, a chunk's
                                      summary): part name -> JSON, written under the lease,
                                      kept across retries and the DLQ, deleted when the task
                                      completes, is cancelled or deleted (expires with results)
    {tf}:idem:<key>           string  idempotency key -> first task id
    {tf}:blob:<sha256>        string  uploaded file bytes (claim check); no expiry while a task
                                      refers to it, deleted with the last such task
    {tf}:blob_sizes           hash    sha256 -> bytes, one field per stored blob
    {tf}:blob_bytes           string  the sum of blob_sizes (the quota's running total)
    {tf}:blob_refs            hash    sha256 -> how many tasks refer to it (field gone at 0)
    {tf}:blob_orphans         zset    blobs no task refers to, by deletion time (ms)
    {tf}:worker:<id>          hash    worker heartbeat (expires)
    {tf}:workers              zset    worker ids by last heartbeat (ms)
    {tf}:breaker:<name>       hash    circuit breaker state for one upstream
    {tf}:rl:<name>:*          ...     shared rate limiter (bucket, in-flight leases, cool-down)
    {tf}:or:*                 ...     OpenRouter monitor cache and daily metrics

A "lane" groups task types by the upstream they need: ``llm`` tasks wait while the LLM breaker is
open, ``local`` tasks never do.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITIES: tuple[str, ...] = ("high", "default", "low")
"""Priorities, most urgent first."""

LANES: tuple[str, ...] = ("llm", "local")
"""Lanes: ``llm`` tasks need the upstream LLM; ``local`` tasks do not."""

QUEUE_NAMES: tuple[str, ...] = ("primary", "retry", "scheduled", "dlq", "active")
"""Names accepted by ``/queues/{name}/tasks``."""


@dataclass(frozen=True)
class Keys:
    """Builds every key under ``{prefix}``. One instance per store; cheap to create."""

    prefix: str = "taskflow"

    @property
    def tag(self) -> str:
        """The hash-tagged prefix every key starts with."""
        return "{" + self.prefix + "}"

    def task(self, task_id: str) -> str:
        """The task hash."""
        return f"{self.tag}:task:{task_id}"

    @property
    def task_prefix(self) -> str:
        """Prefix of task keys: a task's key is this plus its id (the audit scans ``prefix*``)."""
        return f"{self.tag}:task:"

    def parts(self, task_id: str) -> str:
        """The finished parts of a task (name -> JSON), kept so a retry redoes only the rest."""
        return f"{self.tag}:parts:{task_id}"

    def queue(self, lane: str, priority: str) -> str:
        """A pending list: ``priority`` is high/default/low or ``retry``."""
        return f"{self.tag}:q:{lane}:{priority}"

    def wake(self, lane: str) -> str:
        """The wake-up list idle workers block on for ``lane``."""
        return f"{self.tag}:wake:{lane}"

    def primary_queues(self, lane: str) -> list[str]:
        """The priority lists of one lane, most urgent first."""
        return [self.queue(lane, p) for p in PRIORITIES]

    def retry_queue(self, lane: str) -> str:
        """The retry list of one lane."""
        return self.queue(lane, "retry")

    @property
    def scheduled(self) -> str:
        """SCHEDULED ids by due time."""
        return f"{self.tag}:scheduled"

    @property
    def active(self) -> str:
        """ACTIVE ids by lease expiry."""
        return f"{self.tag}:active"

    @property
    def dlq(self) -> str:
        """DLQ ids by dead-letter time."""
        return f"{self.tag}:dlq"

    @property
    def finished(self) -> str:
        """COMPLETED and CANCELLED ids by finish time."""
        return f"{self.tag}:finished"

    @property
    def submitted(self) -> str:
        """What each task was submitted with, by creation time (one stream entry per task)."""
        return f"{self.tag}:submitted"

    @property
    def counts(self) -> str:
        """State counters."""
        return f"{self.tag}:counts"

    @property
    def stats(self) -> str:
        """Running totals (claim sequence)."""
        return f"{self.tag}:stats"

    @property
    def metrics(self) -> str:
        """Prometheus counters and histogram buckets (``<metric>|<labels>`` -> total)."""
        return f"{self.tag}:metrics"

    @property
    def events(self) -> str:
        """The event log stream."""
        return f"{self.tag}:events"

    def idempotency(self, key: str) -> str:
        """Idempotency key -> task id."""
        return f"{self.tag}:idem:{key}"

    def blob(self, sha256: str) -> str:
        """Uploaded file bytes."""
        return f"{self.tag}:blob:{sha256}"

    @property
    def blob_sizes(self) -> str:
        """Stored blobs: sha256 -> size in bytes."""
        return f"{self.tag}:blob_sizes"

    @property
    def blob_bytes(self) -> str:
        """The total size of the stored blobs."""
        return f"{self.tag}:blob_bytes"

    @property
    def blob_refs(self) -> str:
        """Blob reference counts: sha256 -> tasks that refer to it."""
        return f"{self.tag}:blob_refs"

    @property
    def blob_orphans(self) -> str:
        """Blobs no task refers to, by the time (ms) they are deleted."""
        return f"{self.tag}:blob_orphans"

    def worker(self, worker_id: str) -> str:
        """A worker's heartbeat hash."""
        return f"{self.tag}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """Worker ids by last heartbeat."""
        return f"{self.tag}:workers"

    def breaker(self, name: str) -> str:
        """Circuit breaker state for upstream ``name``."""
        return f"{self.tag}:breaker:{name}"

    def ratelimit(self, name: str, part: str) -> str:
        """A key of the shared rate limiter for upstream ``name`` (bucket, inflight, cooldown)."""
        return f"{self.tag}:rl:{name}:{part}"

    def openrouter(self, part: str) -> str:
        """A key of the OpenRouter monitor (state cache, metrics:<date>...)."""
        return f"{self.tag}:or:{part}"
