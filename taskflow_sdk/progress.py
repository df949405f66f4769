"""Progress display for long waits: a live widget under a Jupyter kernel, tqdm elsewhere.

``BatchRun.wait()`` and ``Client.wait(..., progress=True)`` both drive a :class:`Progress` over a
source that can say how many tasks there are, how many have finished and how many sit in each
state; the display is refreshed each time the caller learns something new.
"""

from __future__ import annotations

from typing import Any, Protocol


class ProgressSource(Protocol):
    """What a progress display reads: task counts per state, finished and total."""

    def counts(self) -> dict[str, int]:
        """Tasks per state."""
        ...

    def done(self) -> int:
        """Tasks that have finished."""
        ...

    def total(self) -> int:
        """Tasks in all."""
        ...


class _Bar(Protocol):
    total: float | None

    def update(self, n: float = 1) -> bool | None: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...


class Progress:
    """A progress display over ``source``: finished / total, the counts per state, an ETA.

    Under a Jupyter kernel with ipywidgets it shows the SDK's stacked bar widget; elsewhere a
    tqdm bar (which picks its own notebook or terminal form). Disabled, it does nothing. Call
    the object to refresh it and :meth:`close` when the wait ends.
    """

    def __init__(self, source: ProgressSource, *, enabled: bool = True, name: str = "wait") -> None:
        self.source = source
        self.bar: _Bar | None = None
        self.widget: Any = None
        self.shown = 0
        if enabled and in_kernel():
            self.widget = _progress_widget(name)
        if enabled and self.widget is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=source.total(), unit="task", desc=name)
        self()

    def __call__(self) -> None:
        """Redraw from the source's current counts."""
        if self.widget is not None:
            self.widget.update(self.source.counts(), total=self.source.total())
        bar = self.bar
        if bar is None:
            return
        total = self.source.total()
        if bar.total != total:
            bar.total = total
        done = self.source.done()
        if done > self.shown:
            bar.update(done - self.shown)
            self.shown = done
        counts = self.source.counts()
        bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), refresh=False)
        bar.refresh()

    def close(self) -> None:
        """Show the final state and release the display."""
        if self.widget is not None:
            self.widget.close("done")
        if self.bar is not None:
            self.bar.close()


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where a live widget beats a text bar)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _progress_widget(name: str) -> Any:
    """The notebook progress widget, displayed; ``None`` without ipywidgets."""
    try:
        from IPython.display import display

        from taskflow_sdk.widgets.progress import batch_progress_widget
    except ImportError:
        return None
    view = batch_progress_widget(name=name)
    display(view)  # type: ignore[no-untyped-call]
    return view
