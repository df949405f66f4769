"""Stopping background tasks reliably.

One ``cancel()`` can go unheard: on Python 3.11 ``asyncio.wait_for`` drops a cancellation that
lands just as the awaited operation completes (CPython gh-86296), and redis-py wraps every
socket write in ``wait_for`` when a socket timeout is set (its default since 8.0). A background
loop that talks to Redis and whose cancellation was dropped runs forever, and whatever awaits
it (a worker's stop, a request's exit, the API's shutdown) hangs with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again while one runs on.

    The tasks' own exceptions (and their CancelledError) are not raised here.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
