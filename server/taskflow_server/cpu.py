"""A process pool for CPU-bound work (PDF parsing) with a hard time limit per call.

:class:`CpuPool` runs a picklable function in a worker process and awaits it without blocking
the event loop. It is ``size`` single-process :class:`~concurrent.futures.ProcessPoolExecutor`
slots rather than one executor of ``size`` workers, so that the process running a call is
known: when a call overruns its ``timeout`` exactly that process is killed (SIGKILL) and its
slot rebuilt, and the other calls in flight carry on. A hostile PDF therefore costs one worker
restart, never a stalled worker. A child that dies on its own (a crash in native code, the OOM
killer) surfaces as :class:`CpuWorkerCrashedError` and its slot is rebuilt too.

Processes start with ``forkserver`` where available (else ``spawn``), never ``fork``: the worker
runs an event loop with threads, and forking such a process copies locks in unknown states. The
modules a pool is told to ``preload`` are imported once in the fork server, so every process it
starts has them already (:class:`~taskflow_server.services.Services` preloads the PDF reader).

No worker process outlives its server: :meth:`CpuPool.shutdown` stops them (and
:func:`shutdown_all_pools` every pool of the process, also run at interpreter exit), and on Linux
each one asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), which covers a
server that is itself killed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from taskflow_server.errors import TaskflowError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_SHUTDOWN_WAIT = 2.0  # seconds idle workers get to exit on their own before SIGKILL


class CpuPoolError(TaskflowError, RuntimeError):
    """Base class of the pool's own failures."""


class CpuTimeoutError(CpuPoolError, TimeoutError):
    """A call ran past its time limit; its worker process was killed."""


class CpuWorkerCrashedError(CpuPoolError):
    """The worker process died while running a call (a crash, or it was killed)."""


class CpuOutOfMemoryError(CpuPoolError, MemoryError):
    """A call needed more memory than the pool's per-process cap allows."""


class CpuPoolClosedError(CpuPoolError):
    """The pool was shut down."""


def _context(preload: Sequence[str]) -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        if preload:
            # Process-wide, and read when the fork server starts (the first pool's first call).
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")


def _die_with_parent() -> None:
    """Make this worker process exit as soon as the server that started it is gone.

    Two mechanisms, because the process that forked a worker is not always the server:

    * with ``forkserver`` the OS parent is the fork server, which itself stays alive as long
      as any worker does (each holds its "alive" pipe): a worker would never see it die. The
      server is the worker's *multiprocessing* parent, whose sentinel pipe closes when it
      exits, even on SIGKILL; a daemon thread waits on it and ends the process;
    * on Linux, ``PR_SET_PDEATHSIG`` asks the kernel for SIGKILL when the OS parent dies (the
      server itself with ``spawn``), with no thread needed.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_when_gone, args=(parent,), name="watch-server", daemon=True
        ).start()
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(_KILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the OS parent died before prctl: the signal will never come
        os._exit(1)


def _exit_when_gone(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # returns when the server's end of the sentinel pipe is closed
    os._exit(1)


def _init_worker(limit_bytes: int | None) -> None:
    """Worker-process initializer: die with the parent, then cap the memory."""
    _die_with_parent()
    _cap_memory(limit_bytes)


def _cap_memory(limit_bytes: int | None) -> None:
    """Cap the address space of this process, so a decompression bomb fails with MemoryError
    in this process instead of exhausting the machine."""
    if limit_bytes is None:
        return
    try:
        import resource
    except ImportError:  # not on this platform: the time limit still applies
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


@dataclass
class _Slot:
    """One single-process executor and the pid of its worker (known after the first call)."""

    executor: ProcessPoolExecutor
    pid: int | None = None


class CpuPool:
    """``size`` worker processes that run functions with a hard time limit.

    Args:
        size: the number of worker processes (and of calls that run at once; more wait).
        start_timeout: how long a new worker process may take to start.
        memory_limit_mb: cap on each worker process's address space (``None``: no cap); a call
            that needs more raises :class:`CpuOutOfMemoryError`.
        preload: modules to import once in the fork server, before any worker process starts
            (where ``forkserver`` exists), so that calls into them do not pay for the import.
    """

    def __init__(
        self,
        size: int,
        *,
        start_timeout: float = 60.0,
        memory_limit_mb: int | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        if size < 1:
            raise ValueError("a CpuPool needs at least one process")
        self.size = size
        self.memory_limit_mb = memory_limit_mb
        self.start_timeout = start_timeout
        self._ctx = _context(preload)
        self._idle: list[_Slot] = []
        self._busy: list[_Slot] = []
        self._free: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.restarts = 0
        """How many worker processes were replaced after a timeout or a crash."""
        _POOLS.add(self)

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:
            self._free = asyncio.Semaphore(self.size - len(self._busy))
            self._loop = loop
        return self._free

    async def _start_slot(self) -> _Slot:
        limit = None if self.memory_limit_mb is None else self.memory_limit_mb * 1024 * 1024
        slot = _Slot(
            ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._ctx,
                initializer=_init_worker,
                initargs=(limit,),
            )
        )
        self._busy.append(slot)
        try:
            pid_future = slot.executor.submit(os.getpid)
            slot.pid = await asyncio.wait_for(asyncio.wrap_future(pid_future), self.start_timeout)
        except (TimeoutError, BrokenProcessPool, OSError) as exc:
            self._retire(slot)
            raise CpuWorkerCrashedError(f"a CPU worker process failed to start: {exc!r}") from None
        return slot

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Run ``fn(*args)`` in a worker process and return its result.

        Raises :class:`CpuTimeoutError` after ``timeout`` seconds (the worker is killed),
        :class:`CpuWorkerCrashedError` if the worker died, :class:`CpuOutOfMemoryError` past the
        memory cap, :class:`CpuPoolClosedError` after :meth:`shutdown`; an exception raised by
        ``fn`` itself is re-raised unchanged. ``fn``, its arguments and its result must be
        picklable.
        """
        if self._closed:
            raise CpuPoolClosedError("the CPU pool is shut down")
        name = getattr(fn, "__qualname__", "call")
        async with self._semaphore():
            if self._idle:
                slot = self._idle.pop()
                self._busy.append(slot)
            else:
                slot = await self._start_slot()
            healthy = False
            try:
                future: Future[T] = slot.executor.submit(fn, *args)
                try:
                    result = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
                except TimeoutError:
                    self._kill(slot)
                    raise CpuTimeoutError(
                        f"{name} ran past its {timeout:g} s limit; the worker process was stopped"
                    ) from None
                except BrokenProcessPool:
                    raise CpuWorkerCrashedError(
                        f"the worker process died while running {name} (a crash or out of memory)"
                    ) from None
                except MemoryError:
                    raise CpuOutOfMemoryError(
                        f"{name} needed more than the {self.memory_limit_mb} MB memory cap"
                    ) from None
                healthy = True
                return result
            except BaseException as exc:
                # An exception raised by fn itself leaves the worker healthy.
                healthy = healthy or not isinstance(
                    exc, CpuPoolError | BrokenProcessPool | MemoryError | asyncio.CancelledError
                )
                if isinstance(exc, asyncio.CancelledError):
                    self._kill(slot)
                raise
            finally:
                if slot in self._busy:
                    self._busy.remove(slot)
                if healthy and not self._closed:
                    self._idle.append(slot)
                else:
                    self._retire(slot)

    def _kill(self, slot: _Slot) -> None:
        if slot.pid is None:
            return
        try:
            os.kill(slot.pid, _KILL)
        except ProcessLookupError:
            pass
        except OSError:
            logger.exception("could not stop CPU worker %s", slot.pid)

    def _retire(self, slot: _Slot) -> None:
        if slot in self._busy:
            self._busy.remove(slot)
        self._kill(slot)
        slot.executor.shutdown(wait=False, cancel_futures=True)
        if not self._closed:
            self.restarts += 1
            logger.warning("CPU worker %s stopped; a new one starts on demand", slot.pid)

    def shutdown(self, wait: float = _SHUTDOWN_WAIT) -> None:
        """Stop every worker process (running calls are killed); idempotent.

        Idle workers are asked to exit and get ``wait`` seconds to do so; then every worker
        still there is SIGKILLed, so none is left behind when the process exits.
        """
        self._closed = True
        slots = [*self._idle, *self._busy]
        for slot in self._busy:
            self._kill(slot)
        for slot in slots:
            slot.executor.shutdown(wait=False, cancel_futures=True)
        self._idle.clear()
        self._busy.clear()
        pids = [slot.pid for slot in slots if slot.pid is not None]
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _alive(pid)]
            if pids:
                time.sleep(0.02)
        for slot in slots:
            if slot.pid in pids:
                self._kill(slot)


_POOLS: weakref.WeakSet[CpuPool] = weakref.WeakSet()


def _alive(pid: int) -> bool:
    """Whether a process with this pid still exists (a worker is the forkserver's child, not
    ours, so it cannot be waited for; the forkserver reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def shutdown_all_pools() -> None:
    """Shut down every :class:`CpuPool` of this process (each server exit path calls this)."""
    for pool in list(_POOLS):
        with contextlib.suppress(Exception):
            pool.shutdown()


atexit.register(shutdown_all_pools)
