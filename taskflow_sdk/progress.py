"""Progress display for long waits: a live widget under a Jupyter kernel, tqdm elsewhere.

``BatchRun.wait()`` and ``Client.wait(..., progress=True)`` both drive a :class:`Progress` over a
source that can say how many tasks there are, how many have finished and how many sit in each
state; the display is refreshed each time the caller learns something new. A source that also
has ``cost()`` (USD spent so far) and ``note()`` (e.g. ``held: budget $5.00 reached``) has them
shown too, with an ETA from the recent completion rate (:class:`RateMeter`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Progress", "ProgressSource", "RateMeter", "format_eta", "in_kernel", "status_text"]

RATE_WINDOW = 30.0
"""Seconds of recent completions the ETA is computed from."""
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
"""tqdm's layout: its own ETA is replaced by ours (in the postfix), which follows the recent
rate and says when the run is held instead of counting down."""


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


class RateMeter:
    """Completions per second over the last ``window`` seconds, and the ETA they give.

    Feed it ``add(done)`` after each poll; ``eta(remaining)`` is ``remaining / rate``, or
    ``None`` while nothing finished within the window (no rate to go by).
    """

    def __init__(
        self, window: float = RATE_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = float(window)
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, done: int, now: float | None = None) -> None:
        """Record that ``done`` tasks have finished at ``now`` (default: the clock)."""
        t = self.clock() if now is None else now
        if self.samples and done < self.samples[-1][1]:
            self.samples.clear()  # the count went back (tasks re-queued): start over
        self.samples.append((t, done))
        # Keep one sample at or before the window's start, so the span covers the window.
        while len(self.samples) > 2 and self.samples[1][0] <= t - self.window:
            self.samples.popleft()

    def rate(self) -> float | None:
        """Tasks finished per second over the window (``None`` before two samples)."""
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        if t1 <= t0:
            return None
        return (d1 - d0) / (t1 - t0)

    def eta(self, remaining: int) -> float | None:
        """Seconds until ``remaining`` more tasks finish at the current rate (``0`` when none
        remain; ``None`` when there is no rate yet)."""
        if remaining <= 0:
            return 0.0
        rate = self.rate()
        if not rate or rate <= 0:
            return None
        return remaining / rate


def format_eta(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def status_text(cost: float | None, eta: float | None, note: str | None) -> str:
    """The extra caption of a bar: ``$0.0123 spent · ETA 42 s`` (``note`` instead of the ETA
    when there is one: a held run has no ETA)."""
    parts = []
    if cost is not None:
        parts.append(f"${cost:,.4f} spent")
    if note:
        parts.append(note)
    elif eta is not None:
        parts.append(f"ETA {format_eta(eta)}")
    return " · ".join(parts)


class _Bar(Protocol):
    total: float | None

    def update(self, n: float = 1) -> bool | None: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...


def _optional(source: Any, name: str) -> Any:
    method = getattr(source, name, None)
    return method() if callable(method) else None


class Progress:
    """A progress display over ``source``: finished / total, the counts per state, the cost
    and an ETA from the recent completion rate.

    Under a Jupyter kernel with ipywidgets it shows the SDK's stacked bar widget; elsewhere a
    tqdm bar (which picks its own notebook or terminal form). Disabled, it does nothing. Call
    the object to refresh it and :meth:`close` when the wait ends.
    """

    def __init__(self, source: ProgressSource, *, enabled: bool = True, name: str = "wait") -> None:
        self.source = source
        self.bar: _Bar | None = None
        self.widget: Any = None
        self.shown = 0
        self.meter = RateMeter()
        if enabled and in_kernel():
            self.widget = _progress_widget(name)
        if enabled and self.widget is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=source.total(), unit="task", desc=name, bar_format=BAR_FORMAT)
        self()

    def __call__(self) -> None:
        """Redraw from the source's current counts."""
        if self.widget is None and self.bar is None:
            return
        total = self.source.total()
        done = self.source.done()
        self.meter.add(done)
        cost = _optional(self.source, "cost")
        note = _optional(self.source, "note")
        eta = self.meter.eta(total - done)
        counts = self.source.counts()
        if self.widget is not None:
            self.widget.update(counts, total=total, cost=cost, eta=eta, note=note)
        bar = self.bar
        if bar is None:
            return
        if bar.total != total:
            bar.total = total
        text = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        extra = status_text(cost, eta, note)
        bar.set_postfix_str(f"{text} {extra}" if extra else text, refresh=False)
        if done > self.shown:
            bar.update(done - self.shown)
            self.shown = done
        bar.refresh()

    def close(self) -> None:
        """Show the final state and release the display."""
        if self.widget is not None:
            self.widget.close(_optional(self.source, "note") or "done")
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
