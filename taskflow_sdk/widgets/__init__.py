"""Notebook widgets: the live :class:`ControlPanel` and a batch progress bar.

Install the notebook extra first (``pip install "asynctaskflow[notebook]"``). The pure parts
(:mod:`.state`, :mod:`.protocol`) import no widget library; :class:`ControlPanel` and
:func:`batch_progress_widget` load ipywidgets, anywidget and plotly when first used.

Usage::

    from taskflow_sdk import Client
    from taskflow_sdk.widgets import ControlPanel

    panel = ControlPanel(Client("http://127.0.0.1:8000"))
    panel            # displays; the feed runs until panel.stop()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow_sdk.widgets.state import Dirty, PanelState, Want

if TYPE_CHECKING:
    from taskflow_sdk.widgets.panel import ControlPanel
    from taskflow_sdk.widgets.progress import BatchProgress, batch_progress_widget

__all__ = [
    "BatchProgress",
    "ControlPanel",
    "Dirty",
    "PanelState",
    "Want",
    "batch_progress_widget",
]

_LAZY = {
    "ControlPanel": "taskflow_sdk.widgets.panel",
    "BatchProgress": "taskflow_sdk.widgets.progress",
    "batch_progress_widget": "taskflow_sdk.widgets.progress",
}


def __getattr__(name: str) -> Any:
    """Import the widget classes on first use (they need the notebook extra)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
