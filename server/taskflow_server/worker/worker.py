"""The asyncio worker: claim tasks in batches, run them under leases, report outcomes.

One ``Worker`` runs up to ``concurrency`` tasks at once in one event loop. Around the handlers it
keeps five small loops:

* claim: takes up to ``free slots`` tasks in one script call, as soon as a slot frees; claims
  run one at a time, so the slots that free while one is in flight are refilled together by
  the next (batching without waiting: a deliberate pause here cost the 0.2 s sleep benchmark
  ~2 ms per wave and the no-op drain ~15 %). When there is nothing to take it blocks on the
  lane's wake-up list (pushed by every submit), so an idle worker picks up a new task within
  milliseconds without polling;
* flush: completions are buffered and written in one script call per batch (this batching, not a
  faster Redis, is what carries a worker past one-call-per-task throughput);
* leases: every ``lease_extend_every`` seconds (one by default), one script call extends the
  leases of all running tasks and reports the ones that were lost (reaped, deleted) or asked to
  cancel;
* heartbeat: the ``worker`` hash with a TTL, read by ``/api/v1/workers``;
* holds: every ``hold_check_seconds`` the OpenRouter monitor is asked to lift a hold whose
  cause is gone (a key limit raised, credits bought, the budget raised);
* scheduler: promotes due retries, reaps expired leases, sweeps old results (see scheduler.py).

A handler's failure is classified (``resilience/errors.py``) and the store schedules a retry or
dead-letters it. An LLM-lane task whose call was never sent (``NotSentError``: a hold, an open
breaker, a wait longer than ``upstream_max_wait``), or whose failure the upstream's pause has
taken over (an outage with the breaker open, a 429 with the shared cool-down running, a spent
limit with its hold placed), is handed back to the front of its queue without using a retry, so
neither an outage nor a spent limit can push work into the DLQ.

Graceful stop (SIGTERM/SIGINT): stop claiming, let running tasks finish for ``grace_seconds``,
then hand the rest back to the front of their queues, flush, and remove the heartbeat.

Every state change this worker makes is one log line carrying ``json_fields`` (task id, type,
state, attempt, error class): a failed attempt at INFO, as always; a completion, a cancel and a
hand-back at INFO with JSON logs and at DEBUG with text logs (thousands of completions a second
would drown a terminal). With tracing on (``observability/tracing``) each attempt runs in a
span whose parent is the submit's stored ``traceparent`` (the claim script returns it with the
task); with tracing off nothing of it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from taskflow_server.cancellation import cancel_and_wait
from taskflow_server.config import Settings
from taskflow_server.logs import json_fields
from taskflow_server.observability import tracing
from taskflow_server.resilience.errors import (
    ErrorClass,
    NotSentError,
    TaskError,
    classify_exception,
    hands_back,
    retry_delay,
)
from taskflow_server.services import Services, build_services
from taskflow_server.store.connection import REDIS_DOWN_ERRORS
from taskflow_server.store.keys import LANES
from taskflow_server.store.queue import CANCEL_REQUESTED, LOST, TaskQueue
from taskflow_server.store.records import Claim
from taskflow_server.tasks.registry import (
    InvalidPayloadError,
    TaskContext,
    UnknownTaskTypeError,
    get_spec,
    load_builtin_tasks,
    load_task_modules,
)
from taskflow_server.worker.scheduler import Scheduler

if TYPE_CHECKING:
    from taskflow_server.llm.monitor import OpenRouterMonitor

log = logging.getLogger(__name__)

_STOP_WRITE_SECONDS = 3.0
_WAKE_BLOCK_SECONDS = 1.0
_OUTCOMES = {"SCHEDULED": "retry", "DLQ": "dlq", "PENDING": "requeue", "CANCELLED": "cancel"}
"""How an attempt ended, by the state the fail script left the task in."""


@dataclass
class _Running:
    claim: Claim
    task: asyncio.Task[None]
    ctx: TaskContext
    stop_reason: str | None = None  # lost | cancel | shutdown | timeout
    limit: float = 0.0
    time_limit: asyncio.TimerHandle | None = None


@dataclass
class WorkerStats:
    """Counters a worker reports in its heartbeat."""

    started: float = field(default_factory=time.time)
    completed: int = 0
    failed: int = 0


class Worker:
    """Runs tasks from the shared store.

    Args:
        settings: lease length, concurrency, claim batch, grace period, time limits...
        redis: an async Redis client shared with the services.
        concurrency: task slots (default ``settings.concurrency``).
        worker_id: a stable name (default ``<host>-<pid>-<random>``).
        services: the shared services (built from ``settings`` when omitted).
        run_scheduler: also promote retries and reap expired leases (safe in every worker).
    """

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        services: Services | None = None,
        run_scheduler: bool = True,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.concurrency = concurrency or settings.concurrency
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self._owns_services = services is None
        self.services = services or build_services(settings, redis)
        self.queue = TaskQueue(redis, self.services.keys, settings)
        self.stats = WorkerStats()
        self._scheduler = Scheduler(self.queue, settings) if run_scheduler else None
        self._running: dict[str, _Running] = {}
        self._done: list[tuple[str, str, Any]] = []
        self._flush_wanted = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stop = asyncio.Event()
        self._claim_seq = 0
        self._loops: list[asyncio.Task[None]] = []
        self._claim_task: asyncio.Task[None] | None = None
        # Completions, cancels and hand-backs: one line each for log pipelines, quiet in text.
        self._change_level = logging.INFO if settings.json_logs else logging.DEBUG

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until :meth:`request_stop` (or a signal) is seen, then stop gracefully."""
        load_builtin_tasks()  # import handlers now, not on the first task
        load_task_modules(self.settings.task_modules)
        await self.queue.load()
        await self._open_connections()
        log.info(
            "worker %s started: concurrency=%d, lanes=%s, provider=%s",
            self.id,
            self.concurrency,
            ",".join(LANES),
            self._provider_name(),
        )
        self._loops = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self._lease_loop(), name="leases"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]
        upstream = self.services.openrouter
        if upstream is not None:
            self._loops.append(asyncio.create_task(self._hold_loop(upstream.monitor), name="holds"))
        if self._scheduler is not None:
            self._loops.append(asyncio.create_task(self._scheduler.run(), name="scheduler"))
        self._claim_task = asyncio.create_task(self._claim_loop(), name="claim")
        await self._stop.wait()
        await self._shutdown()

    async def _open_connections(self) -> None:
        """Open the pool's connections up front.

        The pool opens connections lazily, so the first wave of tasks after start-up would pay
        for up to ``redis_max_connections`` TCP connects and handshakes on its completion path
        (measured: the first wave of 100 sleepers ended ~12 ms later than the next ones).
        """
        count = min(self.settings.redis_max_connections, self.concurrency)
        with contextlib.suppress(*REDIS_DOWN_ERRORS):
            await asyncio.gather(*(self.redis.ping() for _ in range(count)))

    def request_stop(self) -> None:
        """Ask the worker to stop: it stops claiming and drains (safe from a signal handler)."""
        self._stop.set()

    @property
    def active_count(self) -> int:
        """Tasks running right now."""
        return len(self._running)

    async def _shutdown(self) -> None:
        if self._claim_task is not None:
            await cancel_and_wait([self._claim_task])
            with contextlib.suppress(asyncio.CancelledError):
                await self._claim_task
        running = [r.task for r in self._running.values()]
        if running:
            log.info(
                "worker %s stopping: waiting up to %.1f s for %d running task(s)",
                self.id,
                self.settings.grace_seconds,
                len(running),
            )
            await asyncio.wait(running, timeout=self.settings.grace_seconds)
        left = list(self._running.values())
        for r in left:
            r.stop_reason = "shutdown"
            r.task.cancel()
        if left:
            await asyncio.gather(*(r.task for r in left), return_exceptions=True)
            log.info("worker %s handed %d task(s) back to the queue", self.id, len(left))
        await self._flush()
        await cancel_and_wait(self._loops)
        await asyncio.gather(*self._loops, return_exceptions=True)
        with contextlib.suppress(*REDIS_DOWN_ERRORS):
            await self.queue.forget_worker(self.id)
        if self._owns_services:
            await self.services.aclose()
        log.info(
            "worker %s stopped: completed=%d failed=%d",
            self.id,
            self.stats.completed,
            self.stats.failed,
        )

    # ------------------------------------------------------------------ claiming

    def _provider_name(self) -> str:
        return "offline" if self.settings.offline else "openrouter"

    async def _lane_limits(self) -> dict[str, int | None]:
        """Claim limits per lane: the LLM lane follows the circuit breaker."""
        limits: dict[str, int | None] = dict.fromkeys(LANES)
        upstream = self.services.openrouter
        if upstream is not None:
            limits["llm"] = await upstream.breaker.allowance()
        return limits

    async def _claim_loop(self) -> None:
        backoff = 0.2
        down_since: float | None = None
        while not self._stop.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                lanes = await self._lane_limits()
                self._claim_seq += 1
                token = f"{self.id}:{self._claim_seq}"
                claims = await self.queue.claim(
                    self.id, token, min(free, self.settings.claim_batch), lanes
                )
                backoff = 0.2
                if down_since is not None:
                    log.info(
                        "worker %s reconnected to redis after %.1f s; claiming again",
                        self.id,
                        time.monotonic() - down_since,
                    )
                    down_since = None
            except REDIS_DOWN_ERRORS as exc:
                if down_since is None:
                    down_since = time.monotonic()
                log.warning(
                    "worker %s cannot reach redis (%s); retrying in %.1f s",
                    self.id,
                    exc.__class__.__name__,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for claim in claims:
                self._start(claim, claim.traceparent if tracing.ENABLED else None)
            if lanes.get("llm") == 1 and not any(
                self._lane_of(c.task_type) == "llm" for c in claims
            ):
                await self._release_probe()
            if not claims:
                await self._wait_for_work(lanes)

    @staticmethod
    def _lane_of(task_type: str) -> str:
        try:
            return get_spec(task_type).lane
        except UnknownTaskTypeError:
            return "local"

    async def _release_probe(self) -> None:
        """Hand back a half-open probe this claim found no LLM task for."""
        upstream = self.services.openrouter
        if upstream is not None:
            with contextlib.suppress(*REDIS_DOWN_ERRORS):
                await upstream.breaker.release_probe()

    async def _wait_for_work(self, lanes: dict[str, int | None]) -> None:
        """Block until a submit or promotion pushes a wake-up token (or a second passes)."""
        wake_keys = [self.services.keys.wake(lane) for lane, limit in lanes.items() if limit != 0]
        if not wake_keys:
            await asyncio.sleep(_WAKE_BLOCK_SECONDS)
            return
        try:
            await self.redis.blpop(wake_keys, timeout=_WAKE_BLOCK_SECONDS)
        except REDIS_DOWN_ERRORS:
            await asyncio.sleep(_WAKE_BLOCK_SECONDS)

    def _start(self, claim: Claim, traceparent: str | None = None) -> None:
        ctx = TaskContext(
            task_id=claim.task_id,
            task_type=claim.task_type,
            attempt=claim.retry_count,
            services=self.services,
        )

        async def report(fraction: float, message: str) -> None:
            with contextlib.suppress(*REDIS_DOWN_ERRORS):
                await self.queue.progress(claim.task_id, claim.token, fraction, message)

        async def save_part(name: str, value: Any) -> None:
            with contextlib.suppress(*REDIS_DOWN_ERRORS):
                await self.queue.save_part(claim.task_id, claim.token, name, value)

        async def load_parts() -> dict[str, Any]:
            return await self.queue.parts(claim.task_id)

        ctx._progress = report
        ctx._save_part = save_part
        ctx._load_parts = load_parts
        run = (
            self._execute_traced(claim, ctx, traceparent)
            if tracing.ENABLED
            else self._execute(claim, ctx)
        )
        task = asyncio.create_task(run, name=f"task:{claim.task_id}")
        self._running[claim.task_id] = _Running(claim, task, ctx)

    # ------------------------------------------------------------------ running

    async def _execute_traced(
        self, claim: Claim, ctx: TaskContext, traceparent: str | None
    ) -> None:
        with tracing.attempt_span(
            traceparent,
            claim.task_id,
            claim.task_type,
            claim.retry_count + 1,
            self._lane_of(claim.task_type),
        ):
            await self._execute(claim, ctx)

    def _state_changed(
        self,
        claim: Claim,
        level: int,
        outcome: str,
        state: str,
        error_class: str = "",
        message: str = "",
    ) -> None:
        """Log one state change of a task (and put it on the attempt span when tracing)."""
        if tracing.ENABLED:
            tracing.end_attempt(outcome, state, error_class or None, message)
        if not log.isEnabledFor(level):
            return
        attempt = claim.retry_count + 1
        if error_class:
            text = "task %s (%s) attempt %d failed: %s: %s -> %s"
            args: tuple[object, ...] = (error_class, message, state)
        else:
            text, args = "task %s (%s) attempt %d: %s -> %s", (outcome, state)
        log.log(
            level,
            text,
            claim.task_id,
            claim.task_type,
            attempt,
            *args,
            extra=json_fields(
                task_id=claim.task_id,
                task_type=claim.task_type,
                state=state,
                outcome=outcome,
                attempt=attempt,
                error_class=error_class or None,
            ),
        )

    async def _execute(self, claim: Claim, ctx: TaskContext) -> None:
        error: TaskError | None = None
        try:
            try:
                spec = get_spec(claim.task_type)
                payload = spec.parse_payload(claim.payload)
            except UnknownTaskTypeError as exc:
                raise TaskError(ErrorClass.INVALID_REQUEST, str(exc)) from None
            except InvalidPayloadError as exc:
                raise TaskError(ErrorClass.INVALID_INPUT, str(exc)) from None
            limit = min(
                spec.time_limit or self.settings.task_time_limit, self.settings.task_time_limit
            )
            self._arm_time_limit(claim.task_id, limit)
            result = await spec.handler(ctx, payload)
            self._done.append((claim.task_id, claim.token, result))
            self._flush_wanted.set()
            self.stats.completed += 1
            self._state_changed(claim, self._change_level, "completed", "COMPLETED")
            return
        except asyncio.CancelledError:
            running = self._running.get(claim.task_id)
            reason = running.stop_reason if running else None
            if reason is None:
                raise
            if reason == "timeout" and running is not None:
                error = TaskError(
                    ErrorClass.TIMEOUT,
                    f"task exceeded its time limit of {running.limit:g} s",
                )
            else:
                await self._after_stop(claim, reason)
                return
        except Exception as exc:
            error = classify_exception(exc)
            if error.error_class == ErrorClass.UNEXPECTED:
                log.exception("task %s (%s) raised", claim.task_id, claim.task_type)
        finally:
            done = self._running.pop(claim.task_id, None)
            if done is not None and done.time_limit is not None:
                done.time_limit.cancel()
            self._slot_free.set()
        if error is not None:
            self.stats.failed += 1
            await self._report_failure(claim, error)

    def _arm_time_limit(self, task_id: str, limit: float) -> None:
        """Cancel the task's handler once it has run ``limit`` seconds.

        One loop timer per task, cancelled when the task ends: what ``asyncio.timeout`` does,
        without its context-manager machinery on every task's path (~5 us each, which a wave
        of 100 short tasks pays in series).
        """
        running = self._running.get(task_id)
        if running is not None:
            running.limit = limit
            loop = asyncio.get_running_loop()
            running.time_limit = loop.call_later(limit, self._time_up, running)

    @staticmethod
    def _time_up(running: _Running) -> None:
        if running.stop_reason is None and not running.task.done():
            running.stop_reason = "timeout"
            running.task.cancel()

    async def _after_stop(self, claim: Claim, reason: str) -> None:
        if reason == "lost":
            log.warning("task %s lost its lease; dropping this attempt", claim.task_id)
            if tracing.ENABLED:
                tracing.end_attempt("lost", None, None, "")
            return
        mode = "cancel" if reason == "cancel" else "requeue"
        message = "cancelled on request" if reason == "cancel" else "handed back: worker stopping"
        await self._write_failure(claim, mode, "", message, 0.0, self._change_level)

    async def _report_failure(self, claim: Claim, error: TaskError) -> None:
        cls = error.error_class
        mode = "retry"
        delay = retry_delay(cls, claim.retry_count, error.retry_after)
        if isinstance(error, NotSentError):
            mode = "requeue"  # nothing was sent: nothing to count against the task
        elif delay is None:
            mode = "dlq"
        elif hands_back(cls) and await self._upstream_paused(claim):
            # The breaker, a hold or the cool-down has taken this over for every worker: wait
            # PENDING, do not use a retry.
            mode = "requeue"
        await self._write_failure(claim, mode, cls.value, error.message, delay or 0.0)

    async def _upstream_paused(self, claim: Claim) -> bool:
        """True when the LLM upstream is paused for every worker: the breaker is open (an
        outage or a hold) or the shared 429 cool-down is running."""
        upstream = self.services.openrouter
        if upstream is None or self._lane_of(claim.task_type) != "llm":
            return False
        try:
            if await upstream.breaker.is_open():
                return True
            return await upstream.limiter.cooldown_remaining() > 0
        except REDIS_DOWN_ERRORS:
            return False

    async def _write_failure(
        self,
        claim: Claim,
        mode: str,
        error_type: str,
        message: str,
        delay: float,
        level: int = logging.INFO,
    ) -> None:
        """Write an outcome, riding out a short Redis outage (the lease covers longer ones),
        and log the state change at ``level``.

        While stopping, it gives up after a few seconds: the reaper requeues the task when its
        lease expires, and a stop must not hang for a lease per task when Redis is gone.
        """
        patience = self.settings.lease_seconds
        if self._stop.is_set():
            patience = min(patience, _STOP_WRITE_SECONDS)
        deadline = time.monotonic() + patience
        while True:
            try:
                outcome = await self.queue.fail(
                    claim.task_id,
                    claim.token,
                    mode=mode,
                    error_type=error_type,
                    message=message,
                    delay_seconds=delay,
                )
                if outcome.startswith("stale:"):
                    log.info("task %s outcome dropped: lease no longer ours", claim.task_id)
                    if tracing.ENABLED:
                        tracing.end_attempt("lost", None, error_type or None, message)
                    return
                how = _OUTCOMES.get(outcome, mode)
                self._state_changed(claim, level, how, outcome, error_type, message)
                return
            except REDIS_DOWN_ERRORS:
                if time.monotonic() > deadline:
                    log.error(
                        "task %s (%s) outcome %s lost to a redis outage; the reaper will "
                        "requeue it",
                        claim.task_id,
                        claim.task_type,
                        f"{mode} ({error_type}: {message})" if error_type else mode,
                    )
                    return
                await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ background loops

    async def _flush(self) -> None:
        while self._done:
            batch, self._done = self._done, []
            try:
                await self.queue.complete_many(batch)
            except REDIS_DOWN_ERRORS as exc:
                log.warning("cannot write %d completion(s) (%s); retrying", len(batch), exc)
                self._done = batch + self._done
                await asyncio.sleep(0.5)
                if self._stop.is_set() and self._claim_task is not None and self._claim_task.done():
                    # On shutdown give up after the lease time; the reaper requeues them.
                    return

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            await self._flush()

    async def _lease_loop(self) -> None:
        last_extend = 0.0
        every = self.settings.lease_extend_seconds
        while True:
            await asyncio.sleep(every)
            running = list(self._running.values())
            if not running:
                continue
            now = time.monotonic()
            # The same call delivers cancel requests: a cancel lands within one period.
            try:
                answers = await self.queue.extend(
                    [(r.claim.task_id, r.claim.token) for r in running],
                    self.settings.lease_seconds,
                )
                last_extend = now
            except REDIS_DOWN_ERRORS as exc:
                log.warning(
                    "cannot extend leases (%s); %.0f s since the last extension",
                    exc,
                    now - last_extend,
                )
                continue
            for r, answer in zip(running, answers, strict=True):
                if answer == LOST and r.stop_reason is None:
                    r.stop_reason = "lost"
                    r.task.cancel()
                elif answer == CANCEL_REQUESTED and r.stop_reason is None:
                    r.stop_reason = "cancel"
                    r.ctx.cancel_event.set()
                    r.task.cancel()

    async def _hold_loop(self, monitor: OpenRouterMonitor) -> None:
        """Ask the monitor, now and then, whether the hold in force can be lifted."""
        while True:
            await asyncio.sleep(self.settings.hold_check_seconds)
            try:
                await monitor.check_holds()
            except REDIS_DOWN_ERRORS as exc:
                log.warning("hold check failed (%s)", exc.__class__.__name__)
            except Exception:  # an upstream hiccup must not end the loop
                log.warning("hold check failed", exc_info=True)

    async def _heartbeat_loop(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        while True:
            try:
                await self.queue.heartbeat(
                    self.id,
                    {
                        "host": host,
                        "pid": pid,
                        "started": f"{self.stats.started:.3f}",
                        "concurrency": self.concurrency,
                        "active": len(self._running),
                        "completed": self.stats.completed,
                        "failed": self.stats.failed,
                        "provider": self._provider_name(),
                        "active_tasks": json.dumps(list(self._running)[:50]),
                    },
                )
            except REDIS_DOWN_ERRORS as exc:
                log.warning("heartbeat failed (%s)", exc.__class__.__name__)
            await asyncio.sleep(self.settings.heartbeat_seconds)
