"""Helpers of the SDK suites: a live server with in-process workers, one adapter that drives
either client from async tests, a TCP proxy that can drop connections, and a driver that runs
flows against an in-memory handler (polling is ``support.eventually``)."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from support import delete_prefix, make_settings, serve_app
from taskflow_sdk import AsyncClient, Client, Event, Task
from taskflow_sdk._config import ClientConfig
from taskflow_sdk._flows import Gather, NextEvent, Send, Sleep
from taskflow_server.config import Settings
from taskflow_server.serve import build_app

TOKEN = "sdk-test-token-0123456789"


@dataclass
class LiveServer:
    """A running API + workers."""

    url: str
    settings: Settings


@contextlib.contextmanager
def run_server(
    redis_url: str, *, workers: int = 1, concurrency: int = 100, **overrides: Any
) -> Iterator[LiveServer]:
    """The real app (``create_app`` + in-process workers with ``concurrency`` slots each)
    under uvicorn in a thread, on its own key prefix; the keys are deleted afterwards."""
    prefix = f"tfsdk{uuid.uuid4().hex[:10]}"
    settings = make_settings(
        redis_url=redis_url,
        key_prefix=prefix,
        workers=workers,
        concurrency=concurrency,
        **overrides,
    )
    try:
        with serve_app(build_app(settings), name="sdk-api") as (url, _):
            yield LiveServer(url, settings)
    finally:
        delete_prefix(settings.redis_url or redis_url, prefix)


class Api:
    """One async interface over either client: ``await api("get", task)`` calls the async
    client directly and the sync one in a worker thread, so one test body covers both."""

    def __init__(self, client: Client | AsyncClient) -> None:
        self.client = client
        self.is_async = isinstance(client, AsyncClient)
        self.kind = "async" if self.is_async else "sync"

    async def __call__(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        # (not ``name``: ``client.batch(name=...)`` passes a keyword of that name through)
        method = operator.attrgetter(method_name)(self.client)
        if self.is_async:
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    async def list(self, **kwargs: Any) -> list[Task]:
        """``client.list(**kwargs).to_list()``."""
        pager = self.client.list(**kwargs)
        if self.is_async:
            return await pager.to_list()  # type: ignore[no-any-return,misc]
        return await asyncio.to_thread(pager.to_list)  # type: ignore[arg-type]

    async def list_frame(self, **kwargs: Any) -> Any:
        """``client.list(**kwargs).to_pandas()``."""
        pager = self.client.list(**kwargs)
        if self.is_async:
            return await pager.to_pandas()  # type: ignore[misc]
        return await asyncio.to_thread(pager.to_pandas)

    async def batch(self, **kwargs: Any) -> Any:
        """``client.batch(**kwargs)`` (awaited for the async client)."""
        return await self("batch", **kwargs)

    async def run(self, run: Any, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a method of a batch run of this client."""
        method = getattr(run, method_name)
        if self.is_async:
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    async def events(
        self,
        count: int,
        *,
        timeout: float = 20.0,
        on_open: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> tuple[list[Event], Any]:
        """Read ``count`` events from ``client.events(**kwargs)``; ``on_open`` runs (in a thread)
        once the stream is connected. Returns the events and the stream."""
        stream = self.client.events(**kwargs)
        got: list[Event] = []
        if self.is_async:

            async def read() -> None:
                async for event in stream:  # type: ignore[union-attr]
                    got.append(event)
                    if len(got) >= count:
                        return

            reader = asyncio.create_task(read())
            if on_open is not None:
                await asyncio.wait_for(stream.connected.wait(), timeout)  # type: ignore[union-attr]
                await asyncio.to_thread(on_open)
            try:
                await asyncio.wait_for(reader, timeout)
            finally:
                await stream.aclose()  # type: ignore[union-attr]
            return got, stream

        def read_sync() -> None:
            for event in stream:  # type: ignore[union-attr]
                got.append(event)
                if len(got) >= count:
                    return

        thread = threading.Thread(target=read_sync, daemon=True)
        thread.start()
        if on_open is not None:
            assert await asyncio.to_thread(stream.connected.wait, timeout)  # type: ignore[union-attr]
            await asyncio.to_thread(on_open)
        await asyncio.to_thread(thread.join, timeout)
        stream.close()  # type: ignore[union-attr]
        assert not thread.is_alive(), f"only {len(got)} of {count} events in {timeout} s"
        return got, stream

    async def close(self) -> None:
        """Close the client."""
        if self.is_async:
            await self.client.close()  # type: ignore[misc]
        else:
            self.client.close()


class DroppingProxy:
    """A loopback TCP proxy to ``target`` whose open connections can be cut at will."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = False
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._conns += [client, upstream]
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop_all(self) -> None:
        """Cut every open connection (both directions)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        """Stop accepting and cut everything."""
        self._stop = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.drop_all()


def make_api(kind: str, url: str, **kwargs: Any) -> Api:
    """An :class:`Api` over a new client of ``kind`` (``sync`` or ``async``)."""
    client: Client | AsyncClient
    client = Client(url, **kwargs) if kind == "sync" else AsyncClient(url, **kwargs)
    return Api(client)


def drive(
    flow: Any,
    handle: Callable[[httpx.Request], httpx.Response],
    config: ClientConfig,
    events: Callable[[float], Any] | None = None,
) -> Any:
    """Run a flow with ``handle`` as the transport (what a driver does, without httpx I/O);
    ``events`` answers its ``NextEvent`` actions. Sleeps are skipped."""
    outcome: Any = None
    while True:
        try:
            action = flow.send(outcome)
        except StopIteration as stop:
            return stop.value
        if isinstance(action, Send):
            kwargs = action.spec.build_kwargs(config)
            kwargs.pop("timeout")
            request = httpx.Request(**kwargs)
            response = handle(request)
            response.request = request
            outcome = response
        elif isinstance(action, Gather):
            results: list[Any] = []
            for sub in action.flows:
                try:
                    results.append(drive(sub, handle, config))
                except Exception as exc:
                    results.append(exc)
            outcome = results
        elif isinstance(action, NextEvent):
            assert events is not None, "the flow asked for an event"
            outcome = events(action.seconds)
        else:
            assert isinstance(action, Sleep)
            outcome = None
