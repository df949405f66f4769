"""Drivers: what runs flows (see :mod:`taskflow_sdk._flows`), as a protocol and over httpx.

:class:`SyncDriver` and :class:`AsyncDriver` say what a driver offers (its config, its request
builder, ``run(flow)`` and a streaming send); batches and event streams depend on these
protocols only, not on the clients.

:class:`HttpxDriver` (behind :class:`~taskflow_sdk.Client`) performs each action in turn with
an ``httpx.Client`` and ``time.sleep``; :class:`AsyncHttpxDriver` (behind
:class:`~taskflow_sdk.AsyncClient`) with an ``httpx.AsyncClient`` and ``asyncio.sleep``, and
runs the flows of a :class:`~taskflow_sdk._flows.Gather` concurrently. This is the only code of
the SDK that sends requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import httpx

from taskflow_sdk._config import ClientConfig
from taskflow_sdk._flows import Flow, Gather, NextEvent, RequestSpec, Send
from taskflow_sdk._requests import Requests

T = TypeVar("T")

__all__ = [
    "GATHER_CONCURRENCY",
    "AsyncDriver",
    "AsyncEventSource",
    "AsyncHttpxDriver",
    "EventSource",
    "HttpxDriver",
    "SyncDriver",
]

GATHER_CONCURRENCY = 32
"""Flows one ``Gather`` of the async driver keeps in flight (e.g. lookups of a polling round)."""


# --------------------------------------------------------------------------- protocols


EventSource = Callable[[float], Any]
"""How a sync driver answers :class:`~taskflow_sdk._flows.NextEvent`: called with the seconds
to wait at most."""
AsyncEventSource = Callable[[float], Awaitable[Any]]
"""How an async driver answers :class:`~taskflow_sdk._flows.NextEvent`."""


class SyncDriver(Protocol):
    """What runs flows synchronously: the config, the request builder, ``run`` and a way to
    open a streaming response (for event streams)."""

    @property
    def config(self) -> ClientConfig:
        """The client's settings."""
        ...

    @property
    def requests(self) -> Requests:
        """The flows of every API operation for :attr:`config`."""
        ...

    def run(self, flow: Flow[T], events: EventSource | None = None) -> T:
        """Drive ``flow`` to its end; ``events`` answers its :class:`NextEvent` actions."""
        ...

    def open_stream(self, spec: RequestSpec) -> httpx.Response:
        """Send ``spec`` and return the response with its body unread (the caller closes it);
        raises ``httpx.TransportError``."""
        ...


class AsyncDriver(Protocol):
    """What runs flows on asyncio: :class:`SyncDriver` with coroutines."""

    @property
    def config(self) -> ClientConfig:
        """The client's settings."""
        ...

    @property
    def requests(self) -> Requests:
        """The flows of every API operation for :attr:`config`."""
        ...

    async def run(self, flow: Flow[T], events: AsyncEventSource | None = None) -> T:
        """Drive ``flow`` to its end; ``events`` answers its :class:`NextEvent` actions."""
        ...

    async def open_stream(self, spec: RequestSpec) -> httpx.Response:
        """Send ``spec`` and return the response with its body unread (the caller closes it);
        raises ``httpx.TransportError``."""
        ...


# --------------------------------------------------------------------------- httpx


def _no_events(action: NextEvent) -> Any:
    raise TypeError(f"this flow asked for an event ({action!r}) but was run without a source")


class HttpxDriver:
    """Runs flows on an ``httpx.Client`` (a :class:`SyncDriver`)."""

    def __init__(self, http: httpx.Client, config: ClientConfig) -> None:
        self.http = http
        self.config = config
        self.requests = Requests(config)

    def run(self, flow: Flow[T], events: EventSource | None = None) -> T:
        """Drive ``flow`` to its end and return its result (its exceptions propagate)."""
        outcome: Any = None
        while True:
            try:
                action = flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)
            if isinstance(action, Send):
                request = self.http.build_request(**action.spec.build_kwargs(self.config))
                try:
                    outcome = self.http.send(request)
                except httpx.TransportError as exc:
                    outcome = exc
            elif isinstance(action, Gather):
                results: list[Any] = []
                for sub in action.flows:
                    try:
                        results.append(self.run(sub))
                    except Exception as exc:
                        results.append(exc)
                outcome = results
            elif isinstance(action, NextEvent):
                outcome = events(action.seconds) if events is not None else _no_events(action)
            else:
                time.sleep(action.seconds)
                outcome = None

    def open_stream(self, spec: RequestSpec) -> httpx.Response:
        """Send ``spec`` with the body left unread (the caller closes the response)."""
        request = self.http.build_request(**spec.build_kwargs(self.config))
        return self.http.send(request, stream=True)


class AsyncHttpxDriver:
    """Runs flows on an ``httpx.AsyncClient`` (an :class:`AsyncDriver`).

    Requests that upload files are built in a worker thread, so reading the files does not
    block the event loop.
    """

    def __init__(self, http: httpx.AsyncClient, config: ClientConfig) -> None:
        self.http = http
        self.config = config
        self.requests = Requests(config)

    async def _build(self, spec: RequestSpec) -> httpx.Request:
        if spec.files:
            kwargs = await asyncio.to_thread(spec.build_kwargs, self.config)
        else:
            kwargs = spec.build_kwargs(self.config)
        return self.http.build_request(**kwargs)

    async def run(self, flow: Flow[T], events: AsyncEventSource | None = None) -> T:
        """Drive ``flow`` to its end and return its result (its exceptions propagate)."""
        outcome: Any = None
        while True:
            try:
                action = flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)
            if isinstance(action, Send):
                request = await self._build(action.spec)
                try:
                    outcome = await self.http.send(request)
                except httpx.TransportError as exc:
                    outcome = exc
            elif isinstance(action, Gather):
                outcome = await self.gather(action.flows)
            elif isinstance(action, NextEvent):
                if events is None:
                    _no_events(action)
                else:
                    outcome = await events(action.seconds)
            else:
                await asyncio.sleep(action.seconds)
                outcome = None

    async def gather(self, flows: Sequence[Flow[Any]]) -> list[Any]:
        """Run ``flows`` with at most :data:`GATHER_CONCURRENCY` in flight; their results in
        order, an exception object in place of each one that raised."""
        limit = asyncio.Semaphore(GATHER_CONCURRENCY)

        async def one(flow: Flow[Any]) -> Any:
            async with limit:
                try:
                    return await self.run(flow)
                except Exception as exc:
                    return exc

        return list(await asyncio.gather(*(one(f) for f in flows)))

    async def open_stream(self, spec: RequestSpec) -> httpx.Response:
        """Send ``spec`` with the body left unread (the caller closes the response)."""
        return await self.http.send(await self._build(spec), stream=True)
