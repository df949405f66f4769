"""Where a traced worker's time goes: an in-process no-op drain, tracing off and on in steps.

One :class:`~taskflow_server.worker.worker.Worker` (100 slots) drains ``--n`` ``demo.noop`` tasks
from a real Redis, in the same process, once per mode and round (modes interleaved):

* ``off``: tracing off (the shipped default);
* ``sampled_out``: tracing on with the ``always_off`` sampler: the plumbing alone (the stored
  traceparent, which the claim script returns with each task, and a non-recording span per
  attempt);
* ``recorded``: every attempt recorded into a ``BatchSpanProcessor`` whose exporter drops the
  batch (the SDK's span work, no encoding);
* ``encoded``: as ``recorded``, and the exporter encodes each batch to OTLP protobuf as the OTLP
  exporter does, in the processor's thread (everything but the HTTP request).

Usage::

    python benchmarks/bench_tracing.py --redis-url redis://127.0.0.1:6379/12 [--n 20000]
        [--rounds 3]

Prints tasks/s per mode and round, then the medians and their ratio to ``off``. Everything the
run writes lives under a fresh key prefix per drain, deleted after it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
import uuid
from collections.abc import Sequence

from bench_support import delete_prefix
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from redis.asyncio import Redis

from taskflow_server.config import Settings
from taskflow_server.observability import tracing
from taskflow_server.observability.tracing import _otel
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask
from taskflow_server.tasks.registry import load_builtin_tasks
from taskflow_server.worker.worker import Worker

log = logging.getLogger("bench_tracing")

MODES = ("off", "sampled_out", "recorded", "encoded")


class _Drop(SpanExporter):
    """Takes every batch and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Drop the batch."""
        return SpanExportResult.SUCCESS


class _Encode(SpanExporter):
    """Encodes every batch as an OTLP export request, then drops it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Encode the batch to protobuf bytes."""
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def _provider(mode: str) -> TracerProvider | None:
    if mode == "off":
        return None
    provider = TracerProvider(sampler=ALWAYS_OFF if mode == "sampled_out" else ALWAYS_ON)
    exporter = _Encode() if mode == "encoded" else _Drop()
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_export_batch_size=_otel.EXPORT_BATCH)
    )
    return provider


async def drain(redis_url: str, n: int, mode: str) -> float:
    """Tasks/s of one worker draining ``n`` no-ops under ``mode``."""
    provider = _provider(mode)
    if provider is not None:
        tracing.install(provider)
    prefix = f"benchtrace{uuid.uuid4().hex[:8]}"
    settings = Settings(_env_file=None, redis_url=redis_url, key_prefix=prefix)  # type: ignore[call-arg]
    redis = Redis.from_url(redis_url)
    try:
        queue = TaskQueue(redis, Keys(prefix), settings)
        await queue.load()
        for start in range(0, n, 1000):
            count = min(1000, n - start)
            await queue.submit_many([NewTask("demo.noop", {}) for _ in range(count)])
        worker = Worker(settings, redis, concurrency=100, worker_id="bench-tracing")
        started = time.perf_counter()
        run = asyncio.create_task(worker.run())
        while True:  # poll: the counter is the store's, as the queue benchmark reads it
            if (await queue.counts())["COMPLETED"] >= n:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        worker.request_stop()
        await run
    finally:
        await redis.aclose()
        delete_prefix(redis_url, prefix)
        if provider is not None:
            tracing.uninstall()
            provider.shutdown()
    return n / elapsed


async def main_async(redis_url: str, n: int, rounds: int) -> dict[str, list[float]]:
    """Every mode ``rounds`` times, interleaved; tasks/s by mode."""
    load_builtin_tasks()
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(rounds):
        for mode in MODES:
            rate = await drain(redis_url, n, mode)
            rates[mode].append(rate)
            log.info("round %d %-12s %8.0f tasks/s", i + 1, mode, rate)
    return rates


def main() -> None:
    """Parse the options, run, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TASKFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("taskflow_server").setLevel(logging.WARNING)
    rates = asyncio.run(main_async(args.redis_url, args.n, args.rounds))
    base = statistics.median(rates["off"])
    for mode in MODES:
        median = statistics.median(rates[mode])
        log.info(
            "%-12s median %8.0f tasks/s  %.2fx off  %+6.1f us per task",
            mode, median, median / base, (1 / median - 1 / base) * 1e6,
        )  # fmt: skip


if __name__ == "__main__":
    main()
