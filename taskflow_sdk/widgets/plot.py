"""A plotly chart as a small AnyWidget whose model holds the whole figure.

plotly's own ``FigureWidget`` syncs its traces only when it is built and sends every later
change as a one-off message, so a view opened afterwards (a page reload, a second ``display``)
draws the figure as it was first built; and every instance ships its own 5 MB bundle. Here a
:class:`Chart` holds its figure as one synced trait, ``spec`` (``{"data": [...], "layout":
{...}}``, plain JSON built by :mod:`.charts`): every view, however late, draws the current
figure at once with ``Plotly.react``. plotly.js itself travels once per kernel, in the one
:class:`PlotlyLibrary` model that every chart points to.

Nothing here imports plotly's Python package: the source is read from its package data, so
no thread of the panel ever triggers plotly's optional imports (pandas among them).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import traitlets

__all__ = ["Chart", "PlotlyLibrary", "plotly_library", "plotly_source"]

STATIC = Path(__file__).resolve().parent / "static"
"""Where the ESM files are."""


def plotly_source() -> str:
    """plotly.js as plotly's Python package ships it (read from its package data, without
    importing the package)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the control panel's charts need plotly: pip install 'asynctaskflow[notebook]'"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError("plotly is installed without its plotly.min.js")


class PlotlyLibrary(anywidget.AnyWidget):  # type: ignore[misc]
    """A model that is never displayed: it carries plotly.js to the front end, once."""

    _esm = "export default {};"
    source = traitlets.Unicode("").tag(sync=True)


_library: PlotlyLibrary | None = None
_library_lock = threading.Lock()


def plotly_library() -> PlotlyLibrary:
    """The kernel's one :class:`PlotlyLibrary` (made again if it was closed)."""
    global _library
    with _library_lock:
        if _library is None or getattr(_library, "comm", None) is None:
            _library = PlotlyLibrary(source=plotly_source())
        return _library


class Chart(anywidget.AnyWidget):  # type: ignore[misc]
    """A plotly figure whose model always holds the whole figure.

    Traits: ``spec`` (``{"data": [...], "layout": {...}}``, plotly's JSON) and ``library`` (the
    :class:`PlotlyLibrary`). Assign a new ``spec`` to redraw; :meth:`update` assigns only
    when something changed.
    """

    _esm = STATIC / "chart.js"
    spec = traitlets.Dict().tag(sync=True)
    library = traitlets.Instance(PlotlyLibrary).tag(sync=True, **ipywidgets.widget_serialization)

    def __init__(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(
            spec=spec or {"data": [], "layout": {}}, library=plotly_library(), **kwargs
        )

    def update(self, spec: dict[str, Any]) -> bool:
        """Show ``spec``; returns False (and sends nothing) when it is what is shown."""
        if spec == self.spec:
            return False
        self.spec = spec
        return True

    @property
    def data(self) -> list[dict[str, Any]]:
        """The traces shown (plotly's trace dicts)."""
        return list(self.spec.get("data", []))

    @property
    def layout(self) -> dict[str, Any]:
        """The layout shown."""
        return dict(self.spec.get("layout", {}))
