"""The panel's small AnyWidgets: they only declare traits; their ESM and CSS live in ``static/``.

Each widget syncs :data:`~taskflow_sdk.widgets.protocol.MESSAGES` as ``_messages``, so the
JavaScript sends the message types Python expects without spelling them itself. Messages from
the front end go to :meth:`handle_message`, which tests call directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from taskflow_sdk.widgets.protocol import (
    MESSAGES,
    MSG_BREAKER_OPEN,
    MSG_BREAKER_RESET,
    MSG_TABLE_ACTION,
)

__all__ = ["BreakerLamp", "DataTable"]

STATIC = Path(__file__).resolve().parent / "static"
"""Where the ESM and CSS files are."""


class _Widget(anywidget.AnyWidget):  # type: ignore[misc]
    """Common base: the synced message names and the custom-message hook."""

    _messages = traitlets.Dict(MESSAGES).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_custom_msg)

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict):
            self.handle_message(content)

    def handle_message(self, content: dict[str, Any]) -> None:
        """React to one message from the front end (subclasses override)."""


class BreakerLamp(_Widget):
    """The circuit breaker as a lamp: closed (green), half-open (amber), open (red).

    Traits: ``state``, ``failure_count``, ``half_open_at_ms`` (epoch ms, 0 when unknown: the
    front end counts down to it), ``reason``, ``held``, ``hold`` (the reason of a hold on LLM
    work, ``""`` for none) and ``hold_until_ms`` (epoch ms when it lifts, 0 when unknown: the
    front end counts down), ``busy`` (disables the buttons while an action runs). ``on_open``
    and ``on_reset`` are called when the buttons are clicked.
    """

    _esm = STATIC / "lamp.js"
    _css = STATIC / "lamp.css"

    state = traitlets.Unicode("unknown").tag(sync=True)
    failure_count = traitlets.Int(0).tag(sync=True)
    half_open_at_ms = traitlets.Float(0.0).tag(sync=True)
    reason = traitlets.Unicode("").tag(sync=True)
    held = traitlets.Bool(False).tag(sync=True)
    hold = traitlets.Unicode("").tag(sync=True)
    hold_until_ms = traitlets.Float(0.0).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        on_open: Callable[[], None] | None = None,
        on_reset: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.on_open = on_open
        self.on_reset = on_reset

    def handle_message(self, content: dict[str, Any]) -> None:
        """Open or Reset was clicked."""
        kind = content.get("type")
        if kind == MSG_BREAKER_OPEN and self.on_open is not None:
            self.on_open()
        elif kind == MSG_BREAKER_RESET and self.on_reset is not None:
            self.on_reset()


class DataTable(_Widget):
    """A table with optional per-row and bulk buttons.

    Traits: ``title``, ``columns`` (``[{key, label}]``), ``rows`` (dicts), ``key`` (the column
    that identifies a row), ``row_actions`` and ``bulk_actions`` (``[{name, label}]``),
    ``total`` (rows that exist, when more than shown), ``empty_text``. A click calls
    ``on_action(action, ids)``; a bulk button sends the checked rows, or every row when none is
    checked, and its text says which: ``Retry selected (2)`` or ``Retry all (7)`` (a bulk
    action's ``label`` is the verb alone).
    """

    _esm = STATIC / "table.js"
    _css = STATIC / "table.css"

    title = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    key = traitlets.Unicode("id").tag(sync=True)
    row_actions = traitlets.List(traitlets.Dict()).tag(sync=True)
    bulk_actions = traitlets.List(traitlets.Dict()).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    empty_text = traitlets.Unicode("nothing to show").tag(sync=True)

    def __init__(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        on_action: Callable[[str, list[str]], None] | None = None,
        row_actions: Sequence[tuple[str, str]] = (),
        bulk_actions: Sequence[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            columns=[{"key": k, "label": label} for k, label in columns],
            row_actions=[{"name": n, "label": label} for n, label in row_actions],
            bulk_actions=[{"name": n, "label": label} for n, label in bulk_actions],
            **kwargs,
        )
        self.on_action = on_action

    def handle_message(self, content: dict[str, Any]) -> None:
        """A row or bulk button was clicked."""
        if content.get("type") != MSG_TABLE_ACTION or self.on_action is None:
            return
        action = str(content.get("action", ""))
        ids = [str(i) for i in content.get("ids") or []]
        allowed = {a["name"] for a in (*self.row_actions, *self.bulk_actions)}
        if action in allowed and ids:
            self.on_action(action, ids)
