"""cancel_and_wait: a background task whose first cancel goes unheard still stops."""

from __future__ import annotations

import asyncio

from taskflow_server.cancellation import cancel_and_wait


async def test_a_cancel_that_went_unheard_is_repeated() -> None:
    started = asyncio.Event()
    swallowed: list[int] = []

    async def stubborn() -> None:
        while True:
            try:
                started.set()
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not swallowed:
                    swallowed.append(1)  # as when wait_for drops a cancellation (gh-86296)
                    continue
                raise

    task = asyncio.create_task(stubborn())
    done = asyncio.create_task(asyncio.sleep(0))
    await started.wait()
    await done
    async with asyncio.timeout(5):
        await cancel_and_wait([task, done])
    assert task.cancelled() and swallowed == [1]
    assert done.done() and not done.cancelled()  # a finished task is left alone


async def test_a_task_that_fails_while_stopping_does_not_raise_here() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait([task])
    assert isinstance(task.exception(), RuntimeError)
