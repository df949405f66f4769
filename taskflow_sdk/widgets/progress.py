"""A live progress bar for a batch, for notebooks (the terminal gets tqdm).

The SDK's ``BatchRun`` calls :func:`batch_progress_widget` when it runs under a kernel, displays
the result and calls :meth:`BatchProgress.update` whenever it learns more::

    view = batch_progress_widget(run)
    display(view)
    view.update({"COMPLETED": 12, "DLQ": 1, "ACTIVE": 4, "PENDING": 23}, total=40,
                cost=0.0123, eta=42.0)
    view.close("done")

The bar is one ``ipywidgets.HTML`` (a stacked bar: completed, failed, active, waiting) so it
needs no JavaScript of its own; the control panel shows one per watched batch.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from taskflow_sdk.batch import HELD
from taskflow_sdk.models import TaskState
from taskflow_sdk.progress import format_eta
from taskflow_sdk.widgets.protocol import FAILED_STATES, FINISHED_STATES

__all__ = ["BatchProgress", "batch_progress_widget", "progress_html"]

_SEGMENTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("completed", (TaskState.COMPLETED.value,), "#2e7d32"),
    ("failed", FAILED_STATES, "#c62828"),
    ("active", (TaskState.ACTIVE.value,), "#42a5f5"),
    ("retrying", (TaskState.SCHEDULED.value,), "#8e24aa"),
    ("held", (HELD,), "#f9a825"),
)
"""(label, the states it counts, colour) of each segment of the bar; ``HELD`` is the batch
run's count of tasks its budget holds back (not a task state)."""


def progress_html(
    name: str,
    counts: Mapping[str, int],
    total: int,
    elapsed: float | None = None,
    note: str | None = None,
    cost: float | None = None,
    eta: float | None = None,
) -> str:
    """The bar and its caption as HTML (pure: tests read it).

    ``cost``: USD spent so far (shown as ``$0.0123 spent``). ``eta``: seconds left at the
    recent rate; without it, the average rate since the start is used. A ``note`` (``done``,
    ``held: budget $5.00 reached``) ends the caption; a held run shows no ETA.
    """
    total = max(total, sum(counts.values()))
    parts = []
    caption = []
    for label, states, colour in _SEGMENTS:
        n = sum(int(counts.get(s, 0)) for s in states)
        if n:
            width = 100.0 * n / total if total else 0.0
            parts.append(
                f"<div title='{label}: {n}' style='width:{width:.2f}%;background:{colour}'></div>"
            )
            caption.append(f"{n:,} {label}")
    finished = sum(int(counts.get(s, 0)) for s in FINISHED_STATES)
    waiting = total - sum(int(counts.get(s, 0)) for _, states, _ in _SEGMENTS for s in states)
    if waiting > 0:
        caption.append(f"{waiting:,} waiting")
    line = f"{finished:,}/{total:,} finished"
    if caption:
        line += " · " + " · ".join(caption)
    if cost is not None:
        line += f" · ${cost:,.4f} spent"
    if elapsed is not None:
        line += f" · {elapsed:.1f} s"
    held = bool(note) and str(note).startswith("held")
    if not held and finished < total:
        if eta is not None:
            line += f" · about {format_eta(eta)} left"
        elif elapsed is not None and finished > 0:
            line += f" · about {elapsed * (total - finished) / finished:.0f} s left"
    if note:
        line += f" · {note}"
    return (
        "<div class='tf-batch' style='font-size:12px;margin:0.2em 0'>"
        f"<div><b>{html.escape(name)}</b> <span class='tf-batch-caption'>"
        f"{html.escape(line)}</span></div>"
        "<div style='display:flex;height:0.8em;background:#eeeeee;border-radius:3px;"
        f"overflow:hidden'>{''.join(parts)}</div></div>"
    )


class BatchProgress:
    """A batch's progress bar: :meth:`update` it with counts per state; display it directly.

    Args:
        name: the label shown.
        total: tasks in the batch.
        started_at: when the batch started (epoch seconds); ``None``: now. A batch whose start
            is not known (``timed=False``) shows no elapsed time rather than a wrong one.
        timed: show the elapsed time.

    Attributes:
        widget: the ``ipywidgets.HTML`` shown.
        counts: the last counts per state.
        total: tasks in the batch.
    """

    def __init__(
        self,
        name: str = "batch",
        total: int = 0,
        *,
        started_at: float | None = None,
        timed: bool = True,
    ) -> None:
        self.name = name
        self.total = total
        self.counts: dict[str, int] = {}
        self.started = time.time() if started_at is None else float(started_at)
        self.timed = timed
        self.finished_at: float | None = None
        self.note: str | None = None
        self.cost: float | None = None
        self.eta: float | None = None
        self.widget = widgets.HTML(progress_html(name, {}, total))

    def update(
        self,
        counts: Mapping[str, int] | None = None,
        *,
        total: int | None = None,
        cost: float | None = None,
        eta: float | None = None,
        note: str | None = None,
    ) -> None:
        """New counts per task state (COMPLETED, DLQ, ACTIVE, PENDING...) and/or total; the
        USD spent (``cost``), seconds left (``eta``, ``None``: unknown) and a ``note`` (shown
        until replaced; ``None`` keeps the last one)."""
        if counts is not None:
            self.counts = {str(k).upper(): int(v) for k, v in counts.items()}
        if total is not None:
            self.total = int(total)
        if cost is not None:
            self.cost = float(cost)
        if note is not None:
            self.note = note
        self.eta = eta
        self._draw()

    def close(self, note: str | None = None, finished_at: float | None = None) -> None:
        """Freeze the clock at ``finished_at`` (epoch seconds; ``None``: now): the batch
        ended. ``note`` is added to the caption."""
        self.finished_at = time.time() if finished_at is None else float(finished_at)
        self.note = note
        self._draw()

    @property
    def elapsed(self) -> float | None:
        """Seconds from the start to now, or to the end once closed (``None``: not timed)."""
        if not self.timed:
            return None
        return max(0.0, (self.finished_at or time.time()) - self.started)

    def rename(self, name: str) -> None:
        """Show the bar under a new label."""
        self.name = name
        self._draw()

    def _draw(self) -> None:
        eta = None if self.finished_at is not None else self.eta
        value = progress_html(
            self.name, self.counts, self.total, self.elapsed, self.note, self.cost, eta
        )
        if value != self.widget.value:
            self.widget.value = value

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def batch_progress_widget(run: Any = None, *, name: str | None = None) -> BatchProgress:
    """A :class:`BatchProgress` for ``run`` (a ``BatchRun``: its ``name`` and ``total`` or
    ``task_ids`` are read when present)."""
    label = name or getattr(run, "name", None) or "batch"
    total = getattr(run, "total", None)
    if not isinstance(total, int):
        ids = getattr(run, "task_ids", None)
        total = len(ids) if ids is not None else 0
    return BatchProgress(str(label), total)
