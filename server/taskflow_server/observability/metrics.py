"""Prometheus metrics, read from Redis at scrape time: the same numbers from every API process.

Two kinds of numbers make up ``GET /metrics``:

* **Totals** (counters and histograms) live in one Redis hash, ``Keys.metrics``, and are written
  by the code that changes what they count, in the same script or transaction: the task
  transition scripts (``store/scripts/_lib.lua``: ``metric``, ``attempt_ended``, ``claimed_after``,
  flushed with the state counters), the circuit breaker (``resilience/breaker.lua``) and the
  upstream call recorder (:func:`upstream_totals`, in the OpenRouter monitor's transaction). So a
  ``taskflow-worker`` that serves no HTTP is counted, and the hot path pays no extra round trip.
* **Gauges** are read when scraped (:func:`~taskflow_server.observability.scrape.read_snapshot`):
  queue lengths, tasks per state, breaker and limiter state, worker heartbeats, the event log's
  length, blob bytes and Redis memory.

Field layout of the totals hash (``|`` separates the metric from its label values; the free-text
label, a task type, comes last so it may contain ``|`` itself)::

    finished|<outcome>|<task_type>           taskflow_tasks_finished_total
    retries|<error_class>                    taskflow_task_retries_total
    dead_letters|<error_class>               taskflow_dead_letters_total
    breaker|<from>|<to>|<breaker>            taskflow_breaker_transitions_total
    upstream|<status>|<outcome>              taskflow_upstream_requests_total
    tokens|<kind>                            taskflow_upstream_tokens_total
    cost                                     taskflow_upstream_cost_usd_total
    duration|<b>|<outcome>|<task_type>       taskflow_task_duration_seconds
    wait|<b>|<task_type>                     taskflow_task_queue_wait_seconds
    latency|<b>|                             taskflow_upstream_latency_seconds

A histogram field's ``<b>`` is the index of its bucket in the metric's bounds (the first bound
the value does not exceed; ``len(bounds)`` is ``+Inf``) or ``s`` for the sum of the observations.
Buckets are stored per bucket, not cumulative, and there is no count field: :func:`render` adds
them up into the cumulative ``_bucket`` series and ``_count``. Bounds are fixed
(:data:`TASK_BUCKETS`, :data:`UPSTREAM_BUCKETS`); ``_lib.lua`` carries a copy of the first.

Prometheus collectors are synchronous and Redis is read asynchronously, so a scrape reads
everything first (``observability/scrape.py``, which may use the breaker and the limiter) into a
:class:`Snapshot` and then renders it (:func:`render`) through a throwaway
:class:`~prometheus_client.CollectorRegistry`; nothing is registered globally. This module
imports neither, so the LLM monitor can use :func:`upstream_totals`.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.asyncio.client import Pipeline

from taskflow_server.store.keys import PRIORITIES

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of the Prometheus text exposition format this module writes."""

TASK_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)  # fmt: skip
"""Upper bounds (seconds) of the task duration and queue wait histograms (``_lib.lua``'s
``BUCKETS``): from a no-op's milliseconds to an hour-long PDF."""

UPSTREAM_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Upper bounds (seconds) of the upstream request latency histogram."""

BREAKER_STATES: tuple[str, ...] = ("closed", "open", "half-open")
"""The values of ``taskflow_breaker_state``'s ``state`` label."""

QUEUE_PRIORITIES: tuple[str, ...] = (*PRIORITIES, "retry")
"""The values of ``taskflow_queue_depth``'s ``priority`` label (the pending lists)."""

SETS: tuple[str, ...] = ("scheduled", "dlq", "active")
"""The values of ``taskflow_queue_length``'s ``queue`` label (the sorted sets)."""


@dataclass(frozen=True)
class Total:
    """One counter or histogram kept in the totals hash.

    Attributes:
        name: the exported name (a counter's without ``_total``).
        help: the HELP text.
        labels: label names, in field order (the free-text one last).
        buckets: a histogram's bounds; ``None`` for a counter.
    """

    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None


TOTALS: dict[str, Total] = {
    "finished": Total(
        "taskflow_tasks_finished",
        "Attempts that ended, by outcome (completed, failed = a retry was scheduled, dlq, "
        "cancelled, requeued = handed back unspent, lost = lease expired), and waiting tasks "
        "cancelled (outcome cancelled).",
        ("outcome", "task_type"),
    ),
    "retries": Total(
        "taskflow_task_retries", "Retries scheduled after a failed attempt.", ("error_class",)
    ),
    "dead_letters": Total(
        "taskflow_dead_letters",
        "Tasks dead-lettered (retries used up, a permanent error, or poison).",
        ("error_class",),
    ),
    "breaker": Total(
        "taskflow_breaker_transitions",
        "Circuit breaker state changes (open to open when the reason changes).",
        ("from_state", "to_state", "breaker"),
    ),
    "upstream": Total(
        "taskflow_upstream_requests",
        "Upstream (OpenRouter) requests by HTTP status ('none': no answer) and outcome "
        "('ok' or the error class).",
        ("status", "outcome"),
    ),
    "tokens": Total(
        "taskflow_upstream_tokens", "Tokens the upstream reported, by kind.", ("kind",)
    ),
    "cost": Total("taskflow_upstream_cost_usd", "Upstream cost the upstream reported, in USD."),
    "duration": Total(
        "taskflow_task_duration_seconds",
        "Duration of each attempt (claimed to ended), by outcome.",
        ("outcome", "task_type"),
        TASK_BUCKETS,
    ),
    "wait": Total(
        "taskflow_task_queue_wait_seconds",
        "Time a task waited PENDING before a worker claimed it (since it was submitted, or "
        "since it last became PENDING: a promoted retry, a requeue).",
        ("task_type",),
        TASK_BUCKETS,
    ),
    "latency": Total(
        "taskflow_upstream_latency_seconds",
        "Upstream request latency (sent to answered or failed).",
        (),
        UPSTREAM_BUCKETS,
    ),
}
"""Every total, by its field prefix in the totals hash."""


GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "taskflow_queue_depth": ("Pending tasks per lane and priority list.", ("lane", "priority")),
    "taskflow_queue_length": ("Tasks in the scheduled, dlq and active sets.", ("queue",)),
    "taskflow_tasks": ("Tasks per state (the store's counters).", ("state",)),
    "taskflow_breaker_state": ("1 for the breaker's current state, else 0.", ("breaker", "state")),
    "taskflow_breaker_held": (
        "1 while the breaker is open for a hold (credits, budget...).",
        ("breaker",),
    ),
    "taskflow_limiter_tokens": (
        "Tokens in the shared bucket (absent without a rate).",
        ("limiter",),
    ),
    "taskflow_limiter_capacity": ("The shared bucket's capacity.", ("limiter",)),
    "taskflow_limiter_cooldown_seconds": (
        "Seconds left in the shared 429 cool-down.",
        ("limiter",),
    ),
    "taskflow_limiter_in_flight": ("Upstream requests in flight, all workers.", ("limiter",)),
    "taskflow_limiter_max_in_flight": ("The in-flight limit in force.", ("limiter",)),
    "taskflow_workers_online": ("Workers with a live heartbeat.", ()),
    "taskflow_worker_slots": ("Concurrent task slots of the live workers.", ()),
    "taskflow_worker_slots_in_use": ("Slots running a task now.", ()),
    "taskflow_event_log_entries": ("Entries in the event log stream.", ()),
    "taskflow_blobs": ("Uploaded files stored.", ()),
    "taskflow_blob_bytes": ("Bytes of the uploaded files stored.", ()),
    "taskflow_redis_memory_bytes": ("Redis used_memory (INFO memory).", ()),
}
"""Every gauge: name -> (help, label names)."""


def exported_names() -> set[str]:
    """Every sample name the collector may write (``_total``, ``_bucket``, ``_sum``, ``_count``
    included): what a dashboard or an alert may refer to."""
    names = set(GAUGES)
    for total in TOTALS.values():
        if total.buckets is None:
            names.add(total.name + "_total")
        else:
            names.update(total.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def bucket_index(bounds: tuple[float, ...], seconds: float) -> int:
    """The bucket a value falls in: the index of the first bound it does not exceed."""
    return bisect.bisect_left(bounds, seconds)


def upstream_totals(
    pipe: Pipeline,
    key: str,
    *,
    status: int | None,
    outcome: str,
    seconds: float | None,
    usage: Mapping[str, Any],
) -> None:
    """Queue the commands that add one upstream request to the totals hash ``key`` on ``pipe``
    (the caller's transaction: no round trip of its own)."""
    pipe.hincrby(key, f"upstream|{status if status is not None else 'none'}|{outcome}", 1)
    if seconds is not None:
        seconds = max(0.0, seconds)
        pipe.hincrby(key, f"latency|{bucket_index(UPSTREAM_BUCKETS, seconds)}|", 1)
        pipe.hincrbyfloat(key, "latency|s|", seconds)
    for kind in ("prompt", "completion"):
        count = _number(usage.get(f"{kind}_tokens"))
        if count >= 1:
            pipe.hincrby(key, f"tokens|{kind}", int(count))
    cost = _number(usage.get("cost"))
    if cost > 0:
        pipe.hincrbyfloat(key, "cost", cost)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
        return 0.0
    try:
        number = float(value)
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


# ----------------------------------------------------------------------------- the snapshot


@dataclass
class Snapshot:
    """Everything one scrape shows, read from Redis (``scrape.read_snapshot``).

    Attributes:
        totals: the totals hash, field -> value.
        states: tasks per state.
        depths: pending list lengths by (lane, priority).
        sets: scheduled / dlq / active set sizes.
        breakers: breaker name -> its status (``CircuitBreaker.status()``).
        limiter: the limiter's status (``RateLimiter.status()``), or ``None``.
        workers: per live worker, (concurrency, tasks running).
        events: the event log's length.
        blobs: stored uploads; blob_bytes: their bytes.
        redis_memory: ``used_memory``, or ``None`` when the store does not report it.
    """

    totals: dict[str, float] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    depths: dict[tuple[str, str], int] = field(default_factory=dict)
    sets: dict[str, int] = field(default_factory=dict)
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    limiter: dict[str, Any] | None = None
    workers: list[tuple[int, int]] = field(default_factory=list)
    events: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    redis_memory: int | None = None


# ----------------------------------------------------------------------------- rendering


def _split(rest: str, n: int) -> list[str] | None:
    """``n`` label values from the tail of a field (the last keeps any further ``|``)."""
    if n == 0:
        return [] if rest == "" else None
    values = rest.split("|", n - 1)
    return values if len(values) == n else None


def total_families(totals: Mapping[str, float]) -> Iterator[Metric]:
    """The counter and histogram families of a totals hash (see the module docstring)."""
    counters: dict[str, dict[tuple[str, ...], float]] = {}
    hist_buckets: dict[str, dict[tuple[str, ...], list[float]]] = {}
    hist_sums: dict[str, dict[tuple[str, ...], float]] = {}
    for raw_field, value in totals.items():
        prefix, _, rest = raw_field.partition("|")
        spec = TOTALS.get(prefix)
        if spec is None:
            continue
        if spec.buckets is None:
            values = _split(rest, len(spec.labels))
            if values is not None:
                by = counters.setdefault(prefix, {})
                by[tuple(values)] = by.get(tuple(values), 0.0) + value
            continue
        bucket, _, labels = rest.partition("|")
        values = _split(labels, len(spec.labels))
        if values is None:
            continue
        key = tuple(values)
        if bucket == "s":
            hist_sums.setdefault(prefix, {})[key] = value
        elif bucket.isdigit() and int(bucket) <= len(spec.buckets):
            counts = hist_buckets.setdefault(prefix, {}).setdefault(
                key, [0.0] * (len(spec.buckets) + 1)
            )
            counts[int(bucket)] += value
    for prefix, spec in TOTALS.items():
        if spec.buckets is None:
            counter = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
            for key, value in sorted(counters.get(prefix, {}).items()):
                counter.add_metric(list(key), value)
            yield counter
            continue
        histogram = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
        sums = hist_sums.get(prefix, {})
        for key, counts in sorted(hist_buckets.get(prefix, {}).items()):
            bounds = [str(float(b)) for b in spec.buckets] + ["+Inf"]
            running, cumulative = 0.0, []
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, running))
            histogram.add_metric(list(key), cumulative, sum_value=sums.get(key, 0.0))
        yield histogram


def _gauge(name: str) -> GaugeMetricFamily:
    help_text, labels = GAUGES[name]
    return GaugeMetricFamily(name, help_text, labels=labels)


def gauge_families(snap: Snapshot) -> Iterator[Metric]:
    """The gauge families of a snapshot."""
    depth = _gauge("taskflow_queue_depth")
    for (lane, prio), n in snap.depths.items():
        depth.add_metric([lane, prio], n)
    yield depth
    length = _gauge("taskflow_queue_length")
    for name, n in snap.sets.items():
        length.add_metric([name], n)
    yield length
    states = _gauge("taskflow_tasks")
    for state, n in snap.states.items():
        states.add_metric([state], n)
    yield states
    bstate, held = _gauge("taskflow_breaker_state"), _gauge("taskflow_breaker_held")
    for name, status in snap.breakers.items():
        for state in BREAKER_STATES:
            bstate.add_metric([name, state], 1.0 if status.get("state") == state else 0.0)
        held.add_metric([name], 1.0 if status.get("hold") else 0.0)
    yield bstate
    yield held
    yield from _limiter_families(snap.limiter)
    yield _single("taskflow_workers_online", len(snap.workers))
    yield _single("taskflow_worker_slots", sum(c for c, _ in snap.workers))
    yield _single("taskflow_worker_slots_in_use", sum(a for _, a in snap.workers))
    yield _single("taskflow_event_log_entries", snap.events)
    yield _single("taskflow_blobs", snap.blobs)
    yield _single("taskflow_blob_bytes", snap.blob_bytes)
    if snap.redis_memory is not None:
        yield _single("taskflow_redis_memory_bytes", snap.redis_memory)


def _single(name: str, value: float) -> GaugeMetricFamily:
    gauge = _gauge(name)
    gauge.add_metric([], value)
    return gauge


def _limiter_families(status: Mapping[str, Any] | None) -> Iterable[Metric]:
    if status is None:
        return []
    name = str(status.get("name", "openrouter"))
    out: list[Metric] = []
    for metric, key in (
        ("taskflow_limiter_tokens", "tokens"),
        ("taskflow_limiter_capacity", "capacity"),
        ("taskflow_limiter_cooldown_seconds", "cooldown_remaining"),
        ("taskflow_limiter_in_flight", "in_flight"),
        ("taskflow_limiter_max_in_flight", "max_in_flight"),
    ):
        value = status.get(key)
        if value is None:
            continue
        gauge = _gauge(metric)
        gauge.add_metric([name], float(value))
        out.append(gauge)
    return out


class SnapshotCollector(Collector):
    """A collector that yields the families of one :class:`Snapshot` (read beforehand)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterable[Metric]:
        """The totals, then the gauges."""
        yield from total_families(self.snap.totals)
        yield from gauge_families(self.snap)


def render(snap: Snapshot) -> bytes:
    """The Prometheus text exposition of a snapshot (a throwaway registry; nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return generate_latest(registry)
