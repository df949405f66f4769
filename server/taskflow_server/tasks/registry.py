"""The task registry: which task types exist, what payload each takes, and how it runs.

A task type is an async handler ``(ctx, payload) -> result`` registered with :func:`task`::

    @task("demo.sleep", lane="local", payload=SleepPayload)
    async def sleep(ctx: TaskContext, payload: SleepPayload) -> dict[str, float]:
        await asyncio.sleep(payload.seconds)
        return {"slept": payload.seconds}

The payload model validates input at submit time (the API answers 422 with pydantic's message),
so a worker only ever sees payloads that parse. A handler signals a classified failure by raising
:class:`taskflow_server.resilience.errors.TaskError`; any other exception is ``unexpected``.
The result must be JSON-serialisable.

``lane`` says which upstream the task needs: ``llm`` tasks are not claimed while the LLM circuit
breaker is open; ``local`` tasks always are.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from taskflow_server.errors import TaskflowError

if TYPE_CHECKING:
    from taskflow_server.services import Services

P = TypeVar("P", bound=BaseModel)


@dataclass
class TaskContext:
    """What a running handler may use: its identity, shared services, progress, cancel and the
    parts of its work already paid for (:meth:`saved_parts`, :meth:`save_part`)."""

    task_id: str
    task_type: str
    attempt: int
    services: Services
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    _progress: Callable[[float, str], Awaitable[None]] | None = None
    _save_part: Callable[[str, Any], Awaitable[None]] | None = None
    _load_parts: Callable[[], Awaitable[dict[str, Any]]] | None = None
    _parts: dict[str, Any] | None = field(default=None, repr=False)

    async def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1) and a short message; visible in the task detail and events."""
        if self._progress is not None:
            await self._progress(min(1.0, max(0.0, float(fraction))), message)

    async def saved_parts(self) -> dict[str, Any]:
        """The parts earlier attempts of this task saved (name -> JSON value).

        Read from the store once per attempt, then cached (parts this attempt saves are added).
        Empty without a worker (a handler called directly). The handler decides whether a part
        still fits its input: parts carry whatever fingerprint it put in them.
        """
        if self._parts is None:
            self._parts = dict(await self._load_parts()) if self._load_parts is not None else {}
        return self._parts

    async def save_part(self, name: str, value: Any) -> None:
        """Keep ``value`` (JSON-serialisable) as finished part ``name`` of this task's work.

        Saved at once, so a retry after a later failure need not pay for it again. Nothing is
        kept once the lease is lost, without a worker, or while the store is unreachable.
        """
        if self._parts is not None:
            self._parts[name] = value
        if self._save_part is not None:
            await self._save_part(name, value)

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested; long handlers may check it between steps."""
        return self.cancel_event.is_set()


Handler = Callable[[TaskContext, Any], Awaitable[Any]]


@dataclass(frozen=True)
class TaskSpec(Generic[P]):
    """One registered task type."""

    name: str
    handler: Handler
    payload_model: type[P]
    lane: str = "local"
    time_limit: float | None = None
    description: str = ""

    def parse_payload(self, payload: Any) -> P:
        """Validate a raw payload; raises :class:`InvalidPayloadError` with a readable message."""
        try:
            return self.payload_model.model_validate(payload if payload is not None else {})
        except ValidationError as exc:
            raise InvalidPayloadError(self.name, exc) from None


class InvalidPayloadError(TaskflowError, ValueError):
    """A payload that does not match its task type's model."""

    def __init__(self, task_type: str, error: ValidationError) -> None:
        self.task_type = task_type
        self.errors = error.errors(include_url=False, include_context=False)
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in self.errors
        ]
        super().__init__(f"invalid payload for {task_type}: " + "; ".join(parts))


class UnknownTaskTypeError(TaskflowError, KeyError):
    """A task type nobody registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown task type {self.name!r}; known types: {', '.join(self.known)}"


_REGISTRY: dict[str, TaskSpec[Any]] = {}


def task(
    name: str,
    *,
    payload: type[BaseModel],
    lane: str = "local",
    time_limit: float | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``handler`` as task type ``name`` (a decorator)."""

    def register(handler: Handler) -> Handler:
        _REGISTRY[name] = TaskSpec(
            name=name,
            handler=handler,
            payload_model=payload,
            lane=lane,
            time_limit=time_limit,
            description=(handler.__doc__ or "").strip().splitlines()[0] if handler.__doc__ else "",
        )
        return handler

    return register


BUILTIN_MODULES = ("demo", "summarize", "pdfxtract")
"""Modules under ``taskflow_server.tasks`` that register the built-in task types."""


_loaded = False


def load_builtin_tasks() -> None:
    """Import the modules that register the built-in task types (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_MODULES:
        importlib.import_module(f"taskflow_server.tasks.{name}")


def load_task_modules(modules: str) -> None:
    """Import user task modules (comma-separated names) so their ``@task`` types register."""
    for name in (m.strip() for m in modules.split(",")):
        if name:
            importlib.import_module(name)


def get_spec(name: str) -> TaskSpec[Any]:
    """The spec of task type ``name``; raises :class:`UnknownTaskTypeError`."""
    load_builtin_tasks()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTaskTypeError(name, sorted(_REGISTRY)) from None
