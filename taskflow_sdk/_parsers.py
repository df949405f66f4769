"""Response parsers: an ``httpx.Response`` that succeeded in, a model of :mod:`.models` out.

Each is the ``parse`` argument of :func:`~taskflow_sdk._flows.request_flow`. A body that is not
JSON raises :class:`~taskflow_sdk.TaskflowError` naming the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from taskflow_sdk.errors import TaskflowError, foreign_answer
from taskflow_sdk.models import BreakerStatus, Task, TaskList, TaskStatus

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "json_body",
    "parse_breaker",
    "parse_ids",
    "parse_lookup",
    "parse_states",
    "parse_submitted",
    "parse_task_list",
    "parser",
]

SUBMIT_FIELDS = ("task_type", "priority", "max_retries")
"""What a submit answer says about the task beyond its id and state (an older server sends
none of them: :func:`parse_submitted` then takes them from the request)."""

_TASKS = TypeAdapter(list[Task])
_STATUSES = TypeAdapter(list[TaskStatus])
_IDS = TypeAdapter(list[str])


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body; an answer that is not JSON raises
    :class:`~taskflow_sdk.TaskflowError` (saying there is no AsyncTaskFlow server at the base
    URL when its content type is not JSON either, see :func:`~taskflow_sdk.errors.foreign_answer`,
    without the body)."""
    foreign = foreign_answer(response)
    if foreign is not None:
        raise TaskflowError(foreign)
    try:
        return response.json()
    except ValueError as exc:
        raise TaskflowError(
            f"{response.request.method} {response.request.url.path}: the server answered "
            f"{response.status_code} with a body that is not JSON"
        ) from exc


def parser(model: type[M]) -> Callable[[httpx.Response], M]:
    """A response parser into ``model``."""

    def parse(response: httpx.Response) -> M:
        return model.model_validate(json_body(response))

    return parse


def parse_submitted(response: httpx.Response, sent: Mapping[str, Any]) -> Task:
    """A submit answer (``{task_id, state, created, task_type, priority, max_retries}``).

    A field the server did not send is taken from ``sent`` (what the request said) when the
    answer is a new task, so ``submit(max_retries=1)`` never shows the model's default
    instead; for a matched idempotency key only the server knows the earlier task's fields.
    """
    data = json_body(response)
    if isinstance(data, dict) and data.get("created") is not False:
        missing = {k: sent[k] for k in SUBMIT_FIELDS if data.get(k) is None and k in sent}
        data = {**data, **missing}
    return Task.model_validate(data)


def parse_ids(response: httpx.Response) -> list[str]:
    """A JSON list of task ids."""
    return _IDS.validate_python(json_body(response))


def parse_task_list(response: httpx.Response) -> TaskList:
    """A page (``{tasks, page, ...}``) or a bare list of tasks (the DLQ route)."""
    data = json_body(response)
    if isinstance(data, list):
        tasks = _TASKS.validate_python(data)
        n = len(tasks)
        return TaskList(tasks=tasks, page=1, page_size=n, total_items=n, total_pages=1 if n else 0)
    return TaskList.model_validate(data)


def parse_breaker(response: httpx.Response) -> BreakerStatus:
    """The breaker from an action's answer (``breaker``) or the workers view."""
    data = json_body(response)
    breaker = data.get("breaker") if isinstance(data, dict) else None
    if breaker is None and isinstance(data, dict):
        breaker = data.get("circuit_breaker", data)
    status = BreakerStatus.model_validate(breaker or {})
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        status.message = data["message"]
    return status


def _missing(data: Any) -> list[str]:
    return [str(i) for i in data.get("missing", [])]


def parse_lookup(response: httpx.Response) -> tuple[list[Task], list[str]]:
    """``POST /api/v1/tasks/lookup``: the tasks found (full detail) and the ids not found."""
    data = json_body(response)
    return _TASKS.validate_python(data.get("tasks", [])), _missing(data)


def parse_states(response: httpx.Response) -> tuple[list[TaskStatus], list[str]]:
    """``POST /api/v1/tasks/states``: the tasks found (state only) and the ids not found."""
    data = json_body(response)
    return _STATUSES.validate_python(data.get("tasks", [])), _missing(data)
