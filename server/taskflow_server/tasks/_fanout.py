"""Run a task's paid calls side by side, and stop cleanly when one fails.

A task that sends many calls at once (the pages of a PDF, the chunks of a long text) runs each
call under :meth:`FanOut.slot`, a few at a time. When one job fails, the attempt is over:

- jobs still **waiting** for a slot never send (``slot`` stops them: :class:`FanOutStopped`);
- jobs already **sending** finish, so the answers that are being paid for are kept (each job
  saves its own part as soon as it has it);
- then :meth:`FanOut.gather` raises the first error, and a retry redoes only what is missing.

Cancelling ``gather`` (a cancel request, the time limit) still cancels every job at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import TypeVar

from taskflow_server.errors import TaskflowError

T = TypeVar("T")


class FanOutStopped(TaskflowError):
    """Raised by :meth:`FanOut.slot` in a job that got its slot after another job failed.

    A signal, not a failure of its own: :meth:`FanOut.gather` raises the first job's error.
    """


class FanOut:
    """At most ``limit`` jobs inside :meth:`slot` at once; the first failure stops the rest.

    Args:
        limit: how many jobs may hold a slot (send a call) at the same time.
    """

    def __init__(self, limit: int) -> None:
        self._gate = asyncio.Semaphore(max(1, limit))
        self._error: BaseException | None = None

    @property
    def stopped(self) -> bool:
        """True once a job failed: jobs should send nothing more."""
        return self._error is not None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` slots; raises :class:`FanOutStopped` when the fan-out stopped
        while this job waited."""
        async with self._gate:
            if self._error is not None:
                raise FanOutStopped
            yield

    async def _guard(self, job: Awaitable[T]) -> T:
        try:
            return await job
        except FanOutStopped:
            raise
        except Exception as exc:
            if self._error is None:
                self._error = exc  # before this job's slot opens for a waiting one
            raise

    async def gather(self, jobs: Iterable[Awaitable[T]]) -> list[T]:
        """Run ``jobs`` concurrently and return their results in order.

        When one raises, the jobs waiting for a slot stop, those holding one finish, and then
        the first error is raised.
        """
        results = await asyncio.gather(*(self._guard(job) for job in jobs), return_exceptions=True)
        if self._error is not None:
            raise self._error
        out: list[T] = []
        for value in results:
            if isinstance(value, BaseException):  # a job cancelled on its own
                raise value
            out.append(value)
        return out
