"""A private event loop on a background thread, for sync callers that need a live feed.

A notebook kernel already runs a loop on its main thread, so sync code there cannot call
``asyncio.run``; and a live feed (the event stream behind a control panel) must keep running
while the user's cell returns. :class:`BackgroundLoop` owns one loop on a daemon thread:
``run(coro)`` blocks for a result, ``submit(coro)`` returns a ``concurrent.futures.Future``,
and :meth:`BackgroundLoop.feed` pumps an async iterator into a callback until stopped. Nothing
here touches the caller's loop or patches asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["BackgroundLoop", "Feed", "run_sync"]


class BackgroundLoop:
    """An asyncio loop running on its own daemon thread until :meth:`stop`.

    Usage::

        with BackgroundLoop() as loop:
            status = loop.run(async_client.queues())
    """

    def __init__(self, name: str = "taskflow-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (starts it when needed)."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            self.start()
        assert self._loop is not None
        return self._loop

    @property
    def running(self) -> bool:
        """True while the thread runs the loop."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> BackgroundLoop:
        """Start the thread and its loop (no-op when running)."""
        if self.running:
            return self
        self._ready.clear()
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a future the caller may wait on."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block until it returns (or raise its exception)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("BackgroundLoop.run() called from its own loop thread")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def feed(
        self,
        source: Callable[[], AsyncIterator[T]],
        on_item: Callable[[T], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Feed:
        """Pump ``source()`` into ``on_item`` (called on the loop thread) until the feed is
        stopped or the iterator ends; ``on_error`` gets the exception that ended it."""
        feed = Feed(self)
        feed._future = self.submit(_pump(source, on_item, on_error))
        return feed

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what runs on the loop, stop it and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = None
        self._thread = None

    def __enter__(self) -> BackgroundLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _pump(
    source: Callable[[], AsyncIterator[T]],
    on_item: Callable[[T], None],
    on_error: Callable[[BaseException], None] | None,
) -> None:
    iterator = source()
    try:
        async for item in iterator:
            on_item(item)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if on_error is None:
            raise
        on_error(exc)
    finally:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()


class Feed:
    """A running :meth:`BackgroundLoop.feed`; :meth:`stop` ends it."""

    def __init__(self, owner: BackgroundLoop) -> None:
        self._owner = owner
        self._future: concurrent.futures.Future[None] | None = None

    @property
    def running(self) -> bool:
        """True until the feed ends or is stopped."""
        return self._future is not None and not self._future.done()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the feed and wait (up to ``timeout``) for it to finish."""
        if self._future is None:
            return
        self._future.cancel()
        with contextlib.suppress(
            concurrent.futures.CancelledError, concurrent.futures.TimeoutError
        ):
            self._future.result(timeout)

    def exception(self) -> BaseException | None:
        """The exception that ended the feed, if any."""
        if self._future is None or not self._future.done() or self._future.cancelled():
            return None
        return self._future.exception()


def run_sync(awaitable: Awaitable[T], timeout: float | None = None) -> T:
    """Run an awaitable to completion from sync code: with ``asyncio.run`` when this thread has
    no running loop, else on a short-lived background loop (so it works inside a notebook)."""

    async def wrap() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(asyncio.wait_for(wrap(), timeout))
    with BackgroundLoop("taskflow-run-sync") as loop:
        return loop.run(wrap(), timeout)
