"""Housekeeping every worker runs: promote due retries, reap expired leases, sweep old results.

Each step is one atomic script, so any number of workers may run this loop at once: two
promoters never move the same task twice and two reapers never requeue the same lease twice.
The periods are jittered so many workers spread their calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from taskflow_server.config import Settings
from taskflow_server.store.connection import REDIS_DOWN_ERRORS
from taskflow_server.store.queue import TaskQueue

log = logging.getLogger(__name__)

_SWEEP_EVERY = 60.0

_jitter = random.Random()
"""The scheduler's own generator: library code leaves the global ``random`` state (which users
and test frameworks seed) alone."""


class Scheduler:
    """Runs the three housekeeping steps on their periods until cancelled."""

    def __init__(self, queue: TaskQueue, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings

    async def tick(self, now: float, due: dict[str, float]) -> None:
        """Run every step whose time has come (``due`` maps step -> next run time)."""
        if now >= due["promote"]:
            while await self.queue.promote_due(limit=100) >= 100:
                pass  # a backlog of due retries: keep going in batches of 100
            due["promote"] = now + self.settings.scheduler_every
        if now >= due["reap"]:
            requeued, dead = await self.queue.reap_expired(limit=200)
            if requeued or dead:
                log.warning(
                    "reaper: requeued %d task(s) whose lease expired, dead-lettered %d as poison",
                    requeued,
                    dead,
                )
            due["reap"] = now + self.settings.reaper_every * _jitter.uniform(0.8, 1.2)
        if now >= due["sweep"]:
            swept = batch = await self.queue.sweep_finished()
            for _ in range(20):  # a backlog (e.g. the recorder's short TTL): more, in batches
                if batch < 500:
                    break
                batch = await self.queue.sweep_finished()
                swept += batch
            if swept:
                log.info("retention: deleted %d finished task(s)", swept)
            due["sweep"] = now + _SWEEP_EVERY * _jitter.uniform(0.8, 1.2)

    async def run(self) -> None:
        """Loop forever (cancel to stop); Redis outages are logged and ridden out."""
        due = {"promote": 0.0, "reap": 0.0, "sweep": 0.0}
        period = min(self.settings.scheduler_every, self.settings.reaper_every)
        while True:
            try:
                await self.tick(time.monotonic(), due)
            except REDIS_DOWN_ERRORS as exc:
                log.warning("scheduler: redis unavailable (%s)", exc.__class__.__name__)
            await asyncio.sleep(period * _jitter.uniform(0.9, 1.1))
