"""One vocabulary of task states: the server's TaskState agrees with the SDK, the API schema, the
store's constants and the Lua scripts."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from taskflow_sdk.models import TaskState as SdkTaskState
from taskflow_server.api import schemas
from taskflow_server.api.app import create_app
from taskflow_server.config import Settings
from taskflow_server.states import STATES, TERMINAL_STATES, TaskState
from taskflow_server.store import audit
from taskflow_server.store.queue import SCRIPTS_DIR
from taskflow_server.store.records import TaskStateView

_STATE_IN_LUA = (
    r"transition\([^\n]*?'([A-Z]+)'",  # a transition's old or new state
    r"[~=]= '([A-Z]+)'",  # a state compared
    r"history\(\w+, '([A-Z]+)'\)",  # a state recorded in the history only
    r"count\('([A-Z]+)'",  # a state counter
    r"'state', '([A-Z]+)'",  # a state written
    r"\bnew = '([A-Z]+)'",  # a state chosen
)


def test_server_and_sdk_states_have_the_same_values_in_the_same_order() -> None:
    assert [s.value for s in TaskState] == [s.value for s in SdkTaskState]
    assert list(STATES) == list(TaskState)


def test_server_and_sdk_terminal_sets_agree() -> None:
    sdk_terminal = {s.value for s in SdkTaskState if s.is_terminal}
    assert {s.value for s in TERMINAL_STATES} == sdk_terminal
    assert sdk_terminal == {"COMPLETED", "FAILED", "DLQ", "CANCELLED"}
    for state in TaskState:
        assert (state in TERMINAL_STATES) is SdkTaskState(state.value).is_terminal, state


def test_states_are_their_strings() -> None:
    """A state read from Redis (a plain str) compares, hashes and formats as the member."""
    assert TaskState("DLQ") is TaskState.DLQ
    assert "DLQ" in TERMINAL_STATES and "ACTIVE" not in TERMINAL_STATES
    homes: dict[str, int] = {TaskState.PENDING: 1}
    assert homes["PENDING"] == 1
    assert f"{TaskState.CANCELLED}" == str(TaskState.CANCELLED) == "CANCELLED"
    with pytest.raises(ValueError):
        TaskState("pending")


def test_schemas_use_the_one_enum_and_openapi_lists_every_value() -> None:
    assert schemas.TaskState is TaskState
    spec = create_app(Settings(_env_file=None, redis_url="redis://unused")).openapi()  # type: ignore[call-arg]
    assert spec["components"]["schemas"]["TaskState"]["enum"] == [s.value for s in TaskState]
    assert list(schemas.StateCounts.model_fields) == [s.value for s in TaskState]


def test_every_resting_state_has_a_home_and_failed_has_none() -> None:
    """The audit knows where each state rests; FAILED is never one (a task never rests there)."""
    homes = audit._WHERE_STATE_LIVES
    assert set(homes) == set(TaskState) - {TaskState.FAILED}


def test_lua_scripts_use_only_known_states() -> None:
    used: set[str] = set()
    for script in SCRIPTS_DIR.glob("*.lua"):
        text = script.read_text()
        for pattern in _STATE_IN_LUA:
            used.update(re.findall(pattern, text))
    assert used == set(STATES)


def test_retry_accepts_every_terminal_state_but_completed() -> None:
    """``retry.lua`` takes FAILED as well: a FAILED task is terminal, never stuck."""
    text = (Path(SCRIPTS_DIR) / "retry.lua").read_text()
    accepted = set(re.findall(r"state ~= '([A-Z]+)'", text))
    assert accepted == TERMINAL_STATES - {TaskState.COMPLETED}


def test_state_view_fields_are_a_subset_of_the_detail() -> None:
    """The polling view shows fields the full detail also has (the same names)."""
    view_fields = {f.name for f in fields(TaskStateView)} - {"id"}
    assert view_fields <= set(schemas.TaskDetail.model_fields)
    assert set(schemas.TaskStateItem.model_fields) == view_fields | {"task_id"}
