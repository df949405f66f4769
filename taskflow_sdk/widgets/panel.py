"""The control panel: one plain-Python object that owns the state and the live feed, and
composes the widgets that show them.

::

    from taskflow_sdk import Client
    from taskflow_sdk.widgets import ControlPanel

    panel = ControlPanel(Client("http://127.0.0.1:8000"))
    panel            # in a notebook cell: displays and stays live
    ...
    panel.stop()

Layout, top to bottom: the header (server health, Redis, workers online, provider, feed), a
message line, the queue-depth timeline next to the task counts per state, the circuit breaker
lamp with Open/Reset (and a hold on LLM work: its reason and time left), today's spend against
the daily budget, next to OpenRouter's state (key usage and limit, rate-limit utilisation),
the daily metrics chart, the workers table, the DLQ table (per-row and bulk Retry/Delete) and a
progress bar per watched batch, all on the "Live" tab. The "History" tab shows the server's
PostgreSQL history, tasks per day by state and their cost (``client.history_buckets``): read
when the tab is first opened and on its Refresh button, never on events; a server without
history gets "History is off: set TASKFLOW_DATABASE_URL on the server".

Events drive the state (:class:`~taskflow_sdk.widgets.state.PanelState`); the feed
(:mod:`~taskflow_sdk.widgets.feed`) reads them on threads for a ``Client`` and as tasks on the
kernel's loop for an ``AsyncClient``, and redraws at most ``refresh_hz`` times a second.

What is shown comes from pure modules, :mod:`~taskflow_sdk.widgets.charts` (figures as plotly
JSON) and :mod:`~taskflow_sdk.widgets.cards` (header, cards, table rows), and each chart's model
holds its whole figure (:class:`~taskflow_sdk.widgets.plot.Chart`), so a page reload or a second
``display(panel)`` draws the current state at once. An error inside the feed is shown in the
header while the feed goes on; :meth:`ControlPanel.start` revives a feed whose thread died.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import ipywidgets as widgets

from taskflow_sdk.errors import HistoryDisabledError
from taskflow_sdk.models import HistoryStats, TaskState
from taskflow_sdk.widgets.cards import (
    DLQ_COLUMNS,
    WORKER_COLUMNS,
    budget_html,
    dlq_rows,
    header_html,
    openrouter_html,
    worker_rows,
)
from taskflow_sdk.widgets.charts import counts_spec, history_spec, metrics_spec, timeline_spec
from taskflow_sdk.widgets.components import BreakerLamp, DataTable
from taskflow_sdk.widgets.feed import (
    SNAPSHOT_NAMES,
    AsyncFeed,
    RefreshPolicy,
    ThreadFeed,
    is_async_client,
)
from taskflow_sdk.widgets.plot import Chart
from taskflow_sdk.widgets.progress import BatchProgress
from taskflow_sdk.widgets.protocol import ACTION_DELETE, ACTION_RETRY
from taskflow_sdk.widgets.state import Dirty, PanelState, Want

__all__ = ["ControlPanel"]

TICK_SECONDS = 1.0
"""The timeline scrolls (is redrawn) at least this often while the panel runs."""
HISTORY_OFF_TEXT = "History is off: set TASKFLOW_DATABASE_URL on the server"
"""What the History tab shows when the server records no history."""
HISTORY_STALE_SECONDS = 60.0
"""Opening the History tab reads the history again when the last read is older than this."""


def _error_text(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _is_connection_error(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"APIConnectionError", "TransportError", "ConnectionError", "OSError"})


class ControlPanel:
    """A live control panel over an AsyncTaskFlow server.

    Args:
        client: a ``taskflow_sdk.Client`` (the feed runs on two daemon threads) or
            ``AsyncClient`` (the feed runs as two tasks on the running loop: create the panel
            in a notebook cell or a coroutine).
        window_seconds: the queue-depth timeline shows this many seconds.
        refresh_hz: at most this many redraws a second, however many events arrive.
        days: days of OpenRouter metrics in the daily chart.
        dlq_limit: rows of the DLQ table.
        history_days: UTC days the History tab shows (today included).
        autostart: start the feed now (else call :meth:`start`).

    The panel displays itself (``panel`` as a cell's last line, or ``display(panel)``);
    :attr:`widget` is the ipywidgets box. :meth:`stop` ends the feed. Batches run with the same
    client are shown when the client lists them (``client.batch_runs``) or after
    :meth:`watch`.

    The panel changes no process-wide state (it neither freezes nor tunes the garbage
    collector): an event leaves nothing behind for the collector but counts and the last state
    of recent tasks (strings), so a burst of events triggers no full collection of the
    kernel's objects.
    """

    def __init__(
        self,
        client: Any,
        *,
        window_seconds: float = 300.0,
        refresh_hz: float = 4.0,
        days: int = 7,
        dlq_limit: int = 50,
        history_days: int = 30,
        autostart: bool = True,
    ) -> None:
        if refresh_hz <= 0:
            raise ValueError("refresh_hz must be positive")
        self.client = client
        self.refresh_hz = float(refresh_hz)
        self.days = int(days)
        self.dlq_limit = int(dlq_limit)
        self.history_days = max(1, int(history_days))
        self.history: HistoryStats | None = None
        """The last history read (``None`` until one succeeds)."""
        self.history_loads = 0
        """How many history reads finished (tests read it)."""
        self._history_at = float("-inf")
        self.is_async = is_async_client(client)
        resolution = max(1.0 / self.refresh_hz, window_seconds / 300.0)
        self.state = PanelState(window_seconds, resolution=resolution)
        self.policy = RefreshPolicy()
        self.renders = 0
        """How many redraws happened (tests and benchmarks read it)."""
        self._lock = threading.RLock()
        self._dirty = Dirty.ALL
        self._last_render = float("-inf")
        self._last_tick = float("-inf")
        self._feed: ThreadFeed | AsyncFeed | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[Any] = set()
        self._runs: dict[int, tuple[Any, str]] = {}
        self._batch_seq = 0
        self._batch_views: dict[str, BatchProgress] = {}
        self._build()
        if autostart:
            self.start()

    # ----------------------------------------------------------------- widgets

    def _build(self) -> None:
        self.header = widgets.HTML(header_html(self.state))
        self.message = widgets.HTML("")
        now = time.time()
        self.timeline = Chart(timeline_spec(self.state, now))
        self.counts = Chart(counts_spec(self.state))
        self.lamp = BreakerLamp(on_open=self._click_open, on_reset=self._click_reset)
        self.budget = widgets.HTML(budget_html(self.state, time.time()))
        self.openrouter = widgets.HTML(openrouter_html(self.state))
        self.utilisation = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, description="Rate limit", bar_style="info"
        )
        self.key_left = widgets.FloatProgress(
            value=1.0, min=0.0, max=1.0, description="Key left", bar_style="success"
        )
        self.metrics = Chart(metrics_spec(self.state))
        self.workers_table = DataTable(
            WORKER_COLUMNS,
            key="worker_id",
            title="Workers",
            empty_text="no worker has sent a heartbeat",
        )
        self.dlq_table = DataTable(
            DLQ_COLUMNS,
            key="task_id",
            title="Dead-letter queue",
            empty_text="the DLQ is empty",
            row_actions=((ACTION_RETRY, "Retry"), (ACTION_DELETE, "Delete")),
            bulk_actions=((ACTION_RETRY, "Retry"), (ACTION_DELETE, "Delete")),
            on_action=self._click_dlq,
        )
        self.batches = widgets.VBox([])
        self.history_chart = Chart(history_spec(None))
        self.history_note = widgets.HTML("")
        self.history_refresh = widgets.Button(
            description="Refresh", icon="refresh", tooltip="Read the history again"
        )
        self.history_refresh.on_click(lambda _button: self._dispatch(self.load_history))

        wrap = widgets.Layout(flex_flow="row wrap", align_items="flex-start")
        resilience = widgets.VBox(
            [self.lamp, self.budget, self.openrouter, self.utilisation, self.key_left],
            layout=widgets.Layout(width="440px"),
        )
        live = widgets.VBox(
            [
                widgets.HBox([self.timeline, self.counts], layout=wrap),
                widgets.HBox([resilience, self.metrics], layout=wrap),
                self.workers_table,
                self.dlq_table,
                self.batches,
            ]
        )
        history = widgets.VBox(
            [widgets.HBox([self.history_refresh, self.history_note]), self.history_chart]
        )
        self.tabs = widgets.Tab(children=[live, history], titles=("Live", "History"))
        self.tabs.observe(self._tab_selected, names="selected_index")
        self.widget = widgets.VBox([self.header, self.message, self.tabs])
        self.widget.add_class("taskflow-panel")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # ----------------------------------------------------------------- feed

    @property
    def running(self) -> bool:
        """True while the feed runs."""
        return self._feed is not None and self._feed.running

    @property
    def connected(self) -> bool:
        """True while the feed's event stream is connected: work submitted from now on shows
        up as it happens."""
        feed = self._feed
        return feed is not None and feed.connected

    def start(self) -> ControlPanel:
        """Start the live feed (threads for a Client, tasks on the running loop for an
        AsyncClient). Does nothing when it already runs."""
        if self.running:
            return self
        if self._feed is not None:  # a feed whose thread or task died: end what is left of it
            self._feed.stop()
        feed: ThreadFeed | AsyncFeed
        if self.is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "a ControlPanel over an AsyncClient needs a running event loop: create it "
                    "in a notebook cell or inside a coroutine (or pass autostart=False and "
                    "call start() from one)"
                ) from None
            feed = AsyncFeed(self.client, self, days=self.days, dlq_limit=self.dlq_limit)
        else:
            feed = ThreadFeed(self.client, self, days=self.days, dlq_limit=self.dlq_limit)
        self._feed = feed
        with self._lock:
            self._dirty |= self.state.set_stopped(False)
        self._render_now()
        feed.start()
        return self

    def stop(self) -> None:
        """End the feed (the stream closes, the threads or tasks end); the widgets stay."""
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        with self._lock:
            self._dirty |= self.state.set_stopped(True)
            self._dirty |= self.state.set_message("the panel is stopped (call start() to resume)")
        self._render_now()

    def _render_now(self) -> None:
        """Redraw at once (start, stop); a failure is shown like any fault of the feed."""
        try:
            self.refresh()
        except Exception as exc:
            self.feed_fault(exc)

    # FeedSink: called by the feed (any thread)

    def last_event_id(self) -> str | None:
        """Where a new event stream resumes."""
        with self._lock:
            return self.state.feed.last_event_id

    def ingest(self, event: Any) -> None:
        """Apply one event; the redraw waits for the next refresh slot."""
        with self._lock:
            self._dirty |= self.state.apply(event)

    def ingest_many(self, events: Iterable[Any]) -> None:
        """Apply events in order (recorded events, tests)."""
        with self._lock:
            for event in events:
                self._dirty |= self.state.apply(event)

    def feed_error(self, error: BaseException | None) -> None:
        """The event stream failed (``None``: it is back)."""
        with self._lock:
            if error is None:
                self._dirty |= self.state.set_connected(True)
            else:
                self._dirty |= self.state.set_connected(False, _error_text(error))

    def feed_fault(self, error: BaseException | None) -> None:
        """Something inside the feed failed (``None``: it works again); the feed goes on."""
        with self._lock:
            before = self.state.feed.fault
            text = None if error is None else f"{type(error).__name__}: {_error_text(error)}"
            self._dirty |= self.state.set_fault(text)
            note: str | None
            if text is not None:
                note = f"the feed hit an error and goes on: {text}"
            else:
                note = f"the feed recovered from an error ({before})" if before else None
            if note is not None:
                self._dirty |= self.state.set_message(note)

    def batch_task_ids(self) -> list[str]:
        """Ids of the watched batches' unfinished tasks (a BATCHES snapshot reads them)."""
        with self._lock:
            return self.state.unfinished_batch_tasks()

    def due_snapshots(self, now: float) -> list[Want]:
        """Snapshots to read now (claimed)."""
        with self._lock:
            due = self.policy.due(self.state.wants, now)
            for kind in due:
                self.state.claim(kind)
                self.policy.mark(kind, now)
            if not self.state.unfinished_batch_tasks(limit=1):
                due = [kind for kind in due if kind is not Want.BATCHES]  # nothing to ask
            return due

    def next_wake_in(self, now: float) -> float:
        """Seconds until the next snapshot or timeline tick is due."""
        with self._lock:
            tick = self._last_tick + TICK_SECONDS - now
            return max(0.0, min(self.policy.next_due(self.state.wants, now), tick))

    def apply_snapshot(self, kind: Want | str, data: Any, read_at: float | None = None) -> None:
        """Apply a snapshot's answer (``kind``: a :class:`Want` or its name)."""
        name = SNAPSHOT_NAMES[kind] if isinstance(kind, Want) else kind
        with self._lock:
            self._dirty |= self.state.apply_snapshot(
                name, data, read_at if read_at is not None else time.time()
            )

    def snapshot_failed(self, kind: Want, error: BaseException) -> None:
        """A snapshot call failed: a connection error marks the server unreachable."""
        with self._lock:
            if _is_connection_error(error):
                self._dirty |= self.state.mark_unreachable(_error_text(error))
            elif kind is not Want.OPENROUTER and kind is not Want.METRICS:
                name = SNAPSHOT_NAMES[kind]
                self._dirty |= self.state.set_message(f"{name}: {_error_text(error)}")

    def render_due(self, now: float) -> float | None:
        """Redraw when something changed and the last redraw is ``1/refresh_hz`` old; returns
        the seconds until a pending redraw is due (None when nothing is pending)."""
        with self._lock:
            self._poll_runs()
            if now - self._last_tick >= TICK_SECONDS:
                self._last_tick = now
                self._dirty |= Dirty.TIMELINE
            if not self._dirty:
                return None
            wait = self._last_render + 1.0 / self.refresh_hz - now
            if wait > 0:
                return wait
            self._render_locked(now)
            return None

    def refresh(self) -> None:
        """Redraw every changed part now (the feed does this by itself)."""
        with self._lock:
            self._poll_runs()
            self._render_locked(time.monotonic())

    # ----------------------------------------------------------------- drawing

    def _render_locked(self, now: float) -> None:
        dirty, self._dirty = self._dirty, Dirty.NONE
        try:
            self._draw(dirty)
        except BaseException:
            self._dirty |= dirty  # drawn again next time: a failed redraw loses nothing
            raise
        self._last_render = now
        self.renders += 1

    def _draw(self, dirty: Dirty) -> None:
        state = self.state
        epoch = time.time()
        if dirty & Dirty.TIMELINE:
            state.sample(epoch)
            self.timeline.update(timeline_spec(state, epoch))
        if dirty & Dirty.COUNTS:
            self.counts.update(counts_spec(state))
        if dirty & (Dirty.HEALTH | Dirty.FEED):
            self._set(self.header, "value", header_html(state))
            message = state.feed.message or (
                f"feed: {state.feed.error}" if state.feed.connected is False else ""
            )
            self._set(self.message, "value", html.escape(message))
        if dirty & Dirty.BREAKER:
            b = state.breaker
            with self.lamp.hold_sync():
                self.lamp.state = b.state
                self.lamp.failure_count = b.failure_count
                self.lamp.half_open_at_ms = (b.half_open_at or 0.0) * 1000.0
                self.lamp.reason = b.reason or ""
                self.lamp.held = b.held
                self.lamp.hold = state.hold.reason or ""
                self.lamp.hold_until_ms = (state.hold.until or 0.0) * 1000.0
        if dirty & (Dirty.BREAKER | Dirty.OPENROUTER) or (
            state.hold.active and dirty & Dirty.TIMELINE
        ):
            self._set(self.budget, "value", budget_html(state, epoch))
        if dirty & Dirty.OPENROUTER:
            o = state.openrouter
            self._set(self.openrouter, "value", openrouter_html(state))
            self._set(self.utilisation, "value", min(1.0, max(0.0, o.utilisation or 0.0)))
            left = 1.0
            if o.limit and o.limit_remaining is not None:
                left = min(1.0, max(0.0, o.limit_remaining / o.limit))
            self._set(self.key_left, "value", left)
        if dirty & Dirty.METRICS:
            self.metrics.update(metrics_spec(state))
        if dirty & Dirty.WORKERS:
            self.workers_table.rows = worker_rows(state)
        if dirty & (Dirty.DLQ | Dirty.TIMELINE):
            rows = dlq_rows(state, self.dlq_limit)
            with self.dlq_table.hold_sync():
                if rows != self.dlq_table.rows:
                    self.dlq_table.rows = rows
                self.dlq_table.total = max(state.depths.dlq, len(state.dlq))
        if dirty & Dirty.BATCHES:
            self._render_batches()

    @staticmethod
    def _set(widget: Any, name: str, value: Any) -> None:
        if getattr(widget, name) != value:
            setattr(widget, name, value)

    def _render_batches(self) -> None:
        views = []
        runs = {label: run for run, label in self._runs.values()}
        for name, info in self.state.batches.items():
            run = runs.get(name)
            view = self._batch_views.get(name)
            if view is None:
                started = _epoch_attr(run, "started_at")
                # A batch first seen finished, with no start time of its own, has no honest
                # elapsed time: show none rather than the time since the panel saw it.
                timed = started is not None or not info.done
                view = BatchProgress(name, info.total, started_at=started, timed=timed)
                self._batch_views[name] = view
            counts: dict[str, int] = {}
            for s in info.states.values():
                counts[s] = counts.get(s, 0) + 1
            view.update(counts, total=info.total)
            if info.done and view.finished_at is None:
                view.close("done", finished_at=_epoch_attr(run, "finished_at"))
            views.append(view.widget)
        if list(self.batches.children) != views:
            self.batches.children = views

    # ----------------------------------------------------------------- history

    def load_history(self) -> Any:
        """Read the last ``history_days`` of daily history stats (``client.history_buckets``)
        and redraw the History tab; awaitable for an AsyncClient. A server without history
        shows :data:`HISTORY_OFF_TEXT`; other failures show their reason."""
        fetch = getattr(self.client, "history_buckets", None)
        since = (datetime.now(UTC) - timedelta(days=self.history_days - 1)).date()
        self._history_busy(True)
        if not self.is_async:
            try:
                if fetch is None:
                    raise TypeError("this client cannot read the history (no history_buckets)")
                stats = fetch(bucket="day", since=since)
            except Exception as exc:
                self._history_shown(None, exc)
                return None
            self._history_shown(stats, None)
            return stats

        async def run() -> Any:
            try:
                if fetch is None:
                    raise TypeError("this client cannot read the history (no history_buckets)")
                stats = await fetch(bucket="day", since=since)
            except Exception as exc:
                self._history_shown(None, exc)
                return None
            self._history_shown(stats, None)
            return stats

        return run()

    def _tab_selected(self, change: dict[str, Any]) -> None:
        """Opening the History tab reads it when it was never read, or long ago."""
        if change.get("new") == 1 and time.monotonic() - self._history_at > HISTORY_STALE_SECONDS:
            self._history_at = time.monotonic()
            self._dispatch(self.load_history)

    def _history_busy(self, busy: bool) -> None:
        self.history_refresh.disabled = busy
        if busy:
            self._set(self.history_note, "value", "reading the history…")

    def _history_shown(self, stats: Any, error: BaseException | None) -> None:
        """Show a history read (``stats``) or why it failed."""
        with self._lock:
            self._history_at = time.monotonic()
            self.history_loads += 1
            if error is None:
                self.history = (
                    stats if isinstance(stats, HistoryStats) else HistoryStats.model_validate(stats)
                )
                total = sum(b.tasks for b in self.history.buckets)
                cost = sum(b.cost_usd for b in self.history.buckets)
                note = (
                    f"{total:,} recorded task(s), ${cost:,.4f} over the last "
                    f"{self.history_days} day(s) (UTC)"
                )
                self.history_chart.update(history_spec(self.history))
            else:
                if isinstance(error, HistoryDisabledError):
                    note = HISTORY_OFF_TEXT
                else:
                    note = f"the history could not be read: {_error_text(error)}"
                self.history_chart.update(history_spec(self.history, note))
            self._set(self.history_note, "value", html.escape(note))
        self.history_refresh.disabled = False

    # ----------------------------------------------------------------- batches

    def watch(self, run: Any, name: str | None = None) -> None:
        """Show the progress of ``run`` (a ``BatchRun``: its ``tasks``, or ``task_ids``).

        The label is ``name``, else the run's own ``name`` (``client.batch(..., name=)``), else
        ``batch N``. Watching a run the panel already shows (it picks up
        ``client.batch_runs`` by itself) renames its row; it never adds a second one.
        """
        with self._lock:
            self._register(run, name)
            self._poll_runs()

    def _register(self, run: Any, name: str | None) -> None:
        entry = self._runs.get(id(run))
        wanted = name or getattr(run, "name", None)
        if entry is not None and (wanted is None or wanted == entry[1]):
            return
        if wanted is None:
            self._batch_seq += 1
            wanted = f"batch {self._batch_seq}"
        label = self._unique_label(str(wanted), run)
        if entry is not None:
            old = entry[1]
            self._dirty |= self.state.rename_batch(old, label)
            view = self._batch_views.pop(old, None)
            if view is not None:
                view.rename(label)
                self._batch_views[label] = view
        self._runs[id(run)] = (run, label)

    def _unique_label(self, label: str, run: Any) -> str:
        taken = {lab for r, lab in self._runs.values() if r is not run}
        if label not in taken:
            return label
        n = 2
        while f"{label} ({n})" in taken:
            n += 1
        return f"{label} ({n})"

    def _poll_runs(self) -> None:
        listed = getattr(self.client, "batch_runs", None)
        if listed:
            for run in list(listed):
                if id(run) not in self._runs:
                    self._register(run, None)
        for run, label in self._runs.values():
            known = _run_states(run)
            if known is None:
                continue
            info = self.state.batches.get(label)
            fresh = {t: s for t, s in known.items() if info is None or t not in info.states}
            if fresh:
                self._dirty |= self.state.watch_batch(label, fresh.keys(), fresh)

    # ----------------------------------------------------------------- actions

    def open_breaker(self, reason: str = "opened from the control panel") -> Any:
        """Hold the shared breaker open (``client.breaker.open``); awaitable for an AsyncClient."""
        return self._act(
            lambda: self.client.breaker.open(reason), self._breaker_done("opened"), lamp=True
        )

    def reset_breaker(self) -> Any:
        """Close the shared breaker (``client.breaker.reset``); awaitable for an AsyncClient."""
        return self._act(
            lambda: self.client.breaker.reset(), self._breaker_done("reset"), lamp=True
        )

    def retry_tasks(self, task_ids: Iterable[str]) -> Any:
        """Send DLQ tasks back to the queue (``client.retry`` each)."""
        ids = list(task_ids)
        return self._act_each(ids, lambda t: self.client.retry(t), "retried")

    def delete_tasks(self, task_ids: Iterable[str]) -> Any:
        """Delete tasks (``client.delete`` each)."""
        ids = list(task_ids)
        return self._act_each(ids, lambda t: self.client.delete(t), "deleted")

    def _breaker_done(self, verb: str) -> Callable[[Any], None]:
        def done(result: Any) -> None:
            self._dirty |= self.state.apply_breaker(result, time.time())
            self._dirty |= self.state.set_message(f"breaker {verb}")
            self.state.wants |= Want.WORKERS | Want.OPENROUTER

        return done

    def _act(self, call: Callable[[], Any], done: Callable[[Any], None], lamp: bool = False) -> Any:
        if lamp:
            self.lamp.busy = True
        if not self.is_async:
            try:
                result = call()
            except Exception as exc:
                self._action_failed(exc, lamp)
                raise
            self._action_done(done, result, lamp)
            return result

        async def run() -> Any:
            try:
                result = await call()
            except Exception as exc:
                self._action_failed(exc, lamp)
                raise
            self._action_done(done, result, lamp)
            return result

        return run()

    def _act_each(self, ids: list[str], call: Callable[[str], Any], verb: str) -> Any:
        def finish(results: list[BaseException | None]) -> None:
            ok = [t for t, err in zip(ids, results, strict=True) if err is None]
            errors = [err for err in results if err is not None]
            for task_id in ok:
                if self.state.dlq.pop(task_id, None) is not None:
                    self.state.depths.dlq = max(0, self.state.depths.dlq - 1)
            text = f"{verb} {len(ok)} task(s)"
            if errors:
                text += f"; {len(errors)} failed: {_error_text(errors[0])}"
            self._dirty |= Dirty.DLQ | Dirty.TIMELINE | self.state.set_message(text)
            self.state.wants |= Want.DLQ | Want.QUEUES

        if not self.is_async:
            results: list[BaseException | None] = []
            for task_id in ids:
                try:
                    call(task_id)
                    results.append(None)
                except Exception as exc:
                    results.append(exc)
            self._action_done(finish, results, False)
            return results

        async def run() -> list[BaseException | None]:
            out: list[BaseException | None] = []
            for task_id in ids:
                try:
                    await call(task_id)
                    out.append(None)
                except Exception as exc:
                    out.append(exc)
            self._action_done(finish, out, False)
            return out

        return run()

    def _action_done(self, done: Callable[[Any], None], result: Any, lamp: bool) -> None:
        with self._lock:
            done(result)
        if lamp:
            self.lamp.busy = False
        self._changed()

    def _action_failed(self, error: BaseException, lamp: bool) -> None:
        with self._lock:
            self._dirty |= self.state.set_message(f"action failed: {_error_text(error)}")
        if lamp:
            self.lamp.busy = False
        self._changed()

    def _changed(self) -> None:
        """Redraw now (actions are rare) and let the pump read the snapshots they want."""
        self.refresh()
        feed = self._feed
        if feed is not None and feed.running:
            feed.wake()

    # button clicks (kernel thread): never block the kernel on the network

    def _click_open(self) -> None:
        self._dispatch(self.open_breaker)

    def _click_reset(self) -> None:
        self._dispatch(self.reset_breaker)

    def _click_dlq(self, action: str, ids: list[str]) -> None:
        if action == ACTION_RETRY:
            self._dispatch(lambda: self.retry_tasks(ids))
        elif action == ACTION_DELETE:
            self._dispatch(lambda: self.delete_tasks(ids))

    def _dispatch(self, action: Callable[[], Any]) -> None:
        if self.is_async:
            feed = self._feed
            loop = feed.loop if isinstance(feed, AsyncFeed) else None
            coro = action()
            if loop is not None and not loop.is_closed():
                fut: Any = asyncio.run_coroutine_threadsafe(coro, loop)
            else:
                fut = asyncio.ensure_future(coro)
        else:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="taskflow-panel-action"
                )
            fut = self._executor.submit(action)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    def wait_actions(self, timeout: float = 10.0) -> None:
        """Block until the actions started by buttons have finished (for tests and scripts;
        not for an AsyncClient's loop thread)."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.01)
        for fut in list(self._pending):
            with contextlib.suppress(Exception):
                fut.result(timeout=max(0.0, deadline - time.monotonic()))

    async def wait_actions_async(self, timeout: float = 10.0) -> None:
        """Await the actions started by buttons (AsyncClient)."""
        pending = [asyncio.wrap_future(f) for f in list(self._pending)]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def __repr__(self) -> str:
        s = self.state
        return (
            f"<ControlPanel {getattr(self.client, 'base_url', '?')} "
            f"running={self.running} events={s.feed.events} breaker={s.breaker.state}>"
        )


def _epoch_attr(run: Any, name: str) -> float | None:
    """``run.<name>`` as epoch seconds, when the run has it (a ``BatchRun``'s start and end)."""
    value = getattr(run, name, None)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _run_states(run: Any) -> dict[str, str] | None:
    """task id -> state as the run last saw it (``run.tasks``), or PENDING for ``task_ids``."""
    tasks = getattr(run, "tasks", None)
    if tasks is not None and not callable(tasks):
        out: dict[str, str] = {}
        for task in tasks:
            task_id = getattr(task, "task_id", None)
            if task_id:
                state = getattr(task, "state", None)
                out[str(task_id)] = str(getattr(state, "value", state) or TaskState.PENDING.value)
        return out
    ids = getattr(run, "task_ids", None)
    if ids is not None:
        return dict.fromkeys((str(i) for i in ids), TaskState.PENDING.value)
    return None
