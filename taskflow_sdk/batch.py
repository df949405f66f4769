"""Batch runs: a list of texts or a folder of PDFs -> idempotent submits -> progress -> DataFrame.

::

    run = client.batch(folder="archive/", summarize=True)   # submits (or resumes) the batch
    run.wait()                                              # progress bar with counts per state
    df = run.results()                                      # one row per article
    run.failures(); run.retry_failed(); run.to_csv("results.csv")
    run.cost()                                              # USD spent by its finished tasks

    run = client.batch(texts=texts, name="June issues")     # a label for the control panel
    run.started_at, run.finished_at                         # epoch seconds (None until done)

    run = client.batch(texts=texts, budget_usd=0.50)        # a cap for this run
    run.wait()                                              # returns once finished or held
    run.raise_budget(1.00); run.wait()                      # re-queues the held tasks

Every task of a batch carries an idempotency key derived from its content (sha256 of the text,
or of the PDF plus its file name) and the options that change its result, so running the same
cell again returns the same tasks instead of submitting new ones, and a run interrupted half way
resumes where it was. Each PDF is uploaded at most once: it is first referenced by its sha256,
and sent only when the server does not hold it yet.

Cost: each finished task's ``result.usage.cost`` (USD credits); :meth:`BatchCore.cost` sums
them and ``results()`` has a ``cost`` column. With ``budget_usd``, once the run has cost that
much its tasks still waiting (PENDING or SCHEDULED) are cancelled and remembered as *held*
(ACTIVE ones finish, so the final cost may pass the cap by what they cost);
``raise_budget()`` re-queues them through the retry route. The check runs after each polling
round of ``wait()``, inside the flow both clients drive.

PDF results are flattened to one row per article (``file, issue_date, page, article, title,
subtitle, author, body, topics, summary``). With ``summarize=True``, articles that come back
without a summary get a summarize task each (idempotent too), joined in ``results()``.

:class:`BatchRun` (for :class:`~taskflow_sdk.Client`) and :class:`AsyncBatchRun` (for
:class:`~taskflow_sdk.AsyncClient`) only drive the flows of :class:`BatchCore`, where all the
logic lives, on the client's driver (:mod:`taskflow_sdk._drivers`). A PDF batch keeps each file's
path and sha256, not its bytes: a file is read when it is uploaded. A client lists its last
:data:`BATCH_RUNS_KEPT` runs in ``client.batch_runs``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import html
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskflow_sdk._drivers import AsyncDriver, SyncDriver
from taskflow_sdk._files import Upload, read_upload
from taskflow_sdk._flows import Flow, Gather
from taskflow_sdk._params import check_usd
from taskflow_sdk._requests import LOOKUP_MAX, Requests
from taskflow_sdk._wait import WaitState, wait_flow
from taskflow_sdk.errors import ConflictError
from taskflow_sdk.models import Task, TaskState
from taskflow_sdk.progress import Progress

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ARTICLE_COLUMNS",
    "BATCH_RUNS_KEPT",
    "TEXT_COLUMNS",
    "AsyncBatchRun",
    "BatchCore",
    "BatchRun",
    "derive_key",
    "flatten_pdf_result",
]

ARTICLE_COLUMNS = [
    "file",
    "issue_date",
    "page",
    "article",
    "title",
    "subtitle",
    "author",
    "body",
    "topics",
    "summary",
    "task_id",
    "cost",
]
"""Columns of ``results()`` for a PDF batch (``cost``: the article's share of its file's
extraction cost, split evenly over the file's articles, plus its own summary's cost)."""
TEXT_COLUMNS = ["index", "text", "summary", "state", "task_id", "cost"]
"""Columns of ``results()`` for a text batch (``cost``: the task's USD cost, when known)."""
HELD = "HELD"
"""The state ``counts()`` reports for tasks held by the run's budget."""
HOLDABLE = (TaskState.PENDING, TaskState.SCHEDULED)
"""States a budget hold cancels (ACTIVE tasks are left to finish)."""
FAILURE_COLUMNS = ["item", "kind", "task_id", "state", "error_class", "message", "retry_count"]
"""Columns of ``failures()``."""

BATCH_RUNS_KEPT = 32
"""How many of its latest runs a client lists in ``client.batch_runs`` (older runs are dropped
from the list; a run you hold a reference to stays usable)."""
KEY_PREFIX = "tfb"
"""The prefix of every batch task's idempotency key."""
MAX_POLL = 1.0
"""The longest pause between two polls of a batch's ``wait()``."""
PAYLOAD_OPTIONS = ("sentences", "language")
"""Options that change a summary (and so are part of its idempotency key)."""
TASK_OPTIONS = ("priority", "max_retries")
"""Options that do not change a result (not part of the key: a re-run with another priority
resumes the same batch)."""


def derive_key(kind: str, content_sha256: str, options: Mapping[str, Any]) -> str:
    """The idempotency key of a batch task: the task kind, its content hash and the options that
    change its result (``None`` values ignored; order does not matter)."""
    canonical = json.dumps(
        {
            "kind": kind,
            "sha256": content_sha256,
            "options": {k: v for k, v in sorted(options.items()) if v is not None},
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return f"{KEY_PREFIX}-{kind}-{hashlib.sha256(canonical.encode()).hexdigest()}"


def format_usd(amount: float) -> str:
    """``$5.00``, ``$0.25``; four decimals for amounts that two would round away
    (``$0.0035``)."""
    if amount == round(amount, 2):
        return f"${amount:,.2f}"
    return f"${amount:,.4f}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def flatten_pdf_result(result: Any, file: str | None = None) -> list[dict[str, Any]]:
    """One row per article of a pdfxtract result ``{filename, issue_date, pages: [{page_number,
    status, reason, articles: [{title, subtitle, author, body, topics, summary}]}]}``.

    Skipped pages give no rows; missing fields become empty strings (``topics`` an empty list).
    """
    if not isinstance(result, Mapping):
        return []
    name = file or str(result.get("filename") or "")
    issue = result.get("issue_date") or "unknown"
    rows: list[dict[str, Any]] = []
    for page in result.get("pages") or []:
        if not isinstance(page, Mapping):
            continue
        for number, article in enumerate(page.get("articles") or []):
            if not isinstance(article, Mapping):
                continue
            topics = article.get("topics")
            rows.append(
                {
                    "file": name,
                    "issue_date": issue,
                    "page": page.get("page_number"),
                    "article": number,
                    "title": str(article.get("title") or ""),
                    "subtitle": str(article.get("subtitle") or ""),
                    "author": str(article.get("author") or ""),
                    "body": str(article.get("body") or ""),
                    "topics": list(topics) if isinstance(topics, list | tuple) else [],
                    "summary": str(article.get("summary") or ""),
                }
            )
    return rows


@dataclass
class Entry:
    """One task of the batch: what it is for, its key, and its latest view."""

    kind: str
    """``text``, ``pdf`` or ``article`` (an article summary)."""
    label: str
    """The text's index, the file name, or ``file#page.article``."""
    key: str
    task: Task | None = None
    created: bool | None = None
    text: str | None = None
    upload: Upload | None = None
    """For a PDF: its path, size and sha256 (its bytes are read only when it is uploaded)."""
    parent: int | None = None
    """For an article: the index of its PDF entry; ``row`` is its position in that file's rows."""
    row: int | None = None

    @property
    def state(self) -> TaskState | None:
        """The task's state as last seen."""
        return self.task.state if self.task is not None else None


def _list_folder(folder: str | Path, pattern: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    return sorted(p for p in root.iterdir() if p.is_file() and fnmatch.fnmatch(p.name, pattern))


class BatchCore:
    """The batch logic, with no I/O but reading the input files: entries, keys, flows and
    DataFrames. :class:`BatchRun` and :class:`AsyncBatchRun` drive its flows.

    Args:
        requests: the client's request builder.
        texts: texts to summarize (one task each), or
        paths / folder + pattern: PDFs to extract (one task each).
        summarize: for PDFs, summarize articles that come back without a summary.
        opts: ``sentences``, ``language`` (change summaries), ``priority``, ``max_retries``,
            ``issue_date`` (PDFs), ``tag`` (any string: a different tag makes a new batch),
            ``budget_usd`` (hold the run's waiting tasks once it has cost that much; not part
            of the idempotency keys).
        name: the label the control panel and progress bars show (not part of the idempotency
            keys: renaming a run resumes the same batch).
    """

    def __init__(
        self,
        requests: Requests,
        *,
        texts: Sequence[str] | None = None,
        paths: Sequence[str | Path] | None = None,
        folder: str | Path | None = None,
        pattern: str = "*.pdf",
        summarize: bool = True,
        name: str | None = None,
        **opts: Any,
    ) -> None:
        given = sum(x is not None for x in (texts, paths, folder))
        if given != 1:
            raise ValueError("give exactly one of texts=, paths= or folder=")
        self.budget_usd: float | None = check_usd(opts.pop("budget_usd", None), "budget_usd")
        """The run's cap in USD (``None``: none)."""
        self.held_ids: set[str] = set()
        """Tasks this run cancelled because its budget was reached (re-queued by
        :meth:`raise_budget_flow`)."""
        self.articles_deferred = False
        """True when article summaries were not submitted because the budget was reached."""
        unknown = set(opts) - {*PAYLOAD_OPTIONS, *TASK_OPTIONS, "issue_date", "tag"}
        if unknown:
            raise TypeError(f"unknown batch option(s): {', '.join(sorted(unknown))}")
        self.requests = requests
        self.summarize = summarize
        self.payload_options = {k: opts.get(k) for k in PAYLOAD_OPTIONS if opts.get(k) is not None}
        self.priority: str | None = opts.get("priority")
        self.max_retries: int | None = opts.get("max_retries")
        self.issue_date: str | None = opts.get("issue_date")
        self.tag: str | None = opts.get("tag")
        self.kind = "text" if texts is not None else "pdf"
        self._texts = list(texts) if texts is not None else None
        self._paths: list[Path] | None = [Path(p) for p in paths] if paths is not None else None
        self._folder = folder
        self._pattern = pattern
        self.entries: list[Entry] = []
        self.articles: list[Entry] = []
        self.new_tasks = 0
        """Tasks the last submit actually created (0 when a re-run resumed the batch)."""
        self.name: str | None = name
        """The label the control panel and progress bars show (``None``: none)."""
        self.started_at: float = time.time()
        """When the run was created (epoch seconds)."""
        self.finished_at: float | None = None
        """When the run was first seen finished (epoch seconds; see :meth:`note_finished`)."""

    # ------------------------------------------------------------------ inputs

    def load(self) -> None:
        """Build the entries: hash the texts and the files (read in chunks, not kept: the only
        file I/O besides the uploads)."""
        if self.entries:
            return
        tag = {"tag": self.tag} if self.tag else {}
        if self._texts is not None:
            for i, text in enumerate(self._texts):
                key = derive_key("summarize", _sha(text), {**self.payload_options, **tag})
                self.entries.append(Entry("text", str(i), key, text=text))
            return
        paths = (
            self._paths
            if self._paths is not None
            else _list_folder(self._folder or ".", self._pattern)
        )
        for path in paths:
            upload = read_upload(path)
            options = {"filename": upload.filename, "issue_date": self.issue_date, **tag}
            key = derive_key("pdfxtract", upload.sha256, options)
            self.entries.append(Entry("pdf", upload.filename, key, upload=upload))

    @property
    def all_entries(self) -> list[Entry]:
        """Main entries then article-summary entries."""
        return self.entries + self.articles

    # ------------------------------------------------------------------ flows

    def _summarize_items(self, entries: Sequence[Entry]) -> list[dict[str, Any]]:
        items = []
        for e in entries:
            item: dict[str, Any] = {
                "task_type": "summarize",
                "payload": {"content": e.text, **self.payload_options},
                "idempotency_key": e.key,
            }
            if self.priority is not None:
                item["priority"] = self.priority
            if self.max_retries is not None:
                item["max_retries"] = self.max_retries
            items.append(item)
        return items

    def _submit_summaries(self, entries: Sequence[Entry]) -> Flow[int]:
        if not entries:
            return 0
        answer = yield from self.requests.submit_many(
            self._summarize_items(entries), timeout=self.requests.config.timeout
        )
        by_index = {item.index: item for item in answer.items}
        for i, entry in enumerate(entries):
            item = by_index.get(i)
            if item is None or not item.ok or item.task_id is None:
                reason = item.error if item is not None else "no answer"
                raise ValueError(f"the server refused batch item {entry.label}: {reason}")
            entry.task = Task(task_id=item.task_id, state=item.state or TaskState.PENDING)
            entry.created = item.created
        return answer.created

    def submit_flow(self) -> Flow[int]:
        """Submit every entry not submitted yet; returns how many tasks were new."""
        pending = [e for e in self.entries if e.task is None]
        created = 0
        if self.kind == "text":
            created = yield from self._submit_summaries(pending)
        else:
            flows = [
                self.requests.extract_pdf(
                    e.upload,
                    issue_date=self.issue_date,
                    priority=self.priority,
                    max_retries=self.max_retries,
                    idempotency_key=e.key,
                    timeout=self.requests.config.timeout,
                )
                for e in pending
                if e.upload is not None
            ]
            results = yield Gather(flows)
            for entry, result in zip(pending, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                entry.task = result
                entry.created = result.created
                created += bool(result.created)
        self.new_tasks = created
        return created

    def is_finished(self) -> bool:
        """True when every task of the run is terminal, none is held by the budget and no
        article summary is still to be submitted."""
        entries = self.all_entries
        if not entries or any(e.task is None or not e.task.is_terminal for e in entries):
            return False
        if self.is_held:
            return False
        return not (self.kind == "pdf" and self.summarize and self._article_entries())

    def note_finished(self) -> None:
        """Set :attr:`finished_at` the first time the run is seen finished; clear it when
        tasks are back in the queue (a retry, a raised budget)."""
        if not self.is_finished():
            self.finished_at = None
        elif self.finished_at is None:
            self.finished_at = time.time()

    def _poll(
        self, entries: list[Entry], timeout: float | None, on_progress: Callable[[], None]
    ) -> Flow[None]:
        state = WaitState([e.task.task_id for e in entries if e.task], timeout, False)

        def after_round() -> Flow[None]:
            self._sync(entries, state)
            yield from self.budget_flow(state)
            self.note_finished()

        yield from wait_flow(
            self.requests,
            state,
            poll_interval=MAX_POLL,
            on_progress=on_progress,
            after_round=after_round,
        )
        self._sync(entries, state)
        return None

    @staticmethod
    def _sync(entries: Sequence[Entry], state: WaitState) -> None:
        for e in entries:
            if e.task is not None:
                e.task = state.latest(e.task)

    def _set_task(self, task: Task) -> None:
        """Record a fresh view of a task on every entry that holds it."""
        for e in self.all_entries:
            if e.task is not None and e.task.task_id == task.task_id:
                e.task = task

    # ------------------------------------------------------------------ budget

    def over_budget(self) -> bool:
        """True when the run has a budget and its finished tasks have cost that much."""
        return self.budget_usd is not None and self.cost() >= self.budget_usd

    def holdable(self) -> list[str]:
        """Ids of the run's tasks a hold would cancel now: PENDING or SCHEDULED, not held."""
        ids = (
            e.task.task_id
            for e in self.all_entries
            if e.task is not None
            and e.task.state in HOLDABLE
            and e.task.task_id not in self.held_ids
        )
        return list(dict.fromkeys(ids))

    def budget_flow(self, state: WaitState | None = None) -> Flow[list[str]]:
        """The budget check: when the run is over budget, cancel its waiting tasks and remember
        them as held; returns the ids held by this call (none when under budget).

        The cancel answers are recorded on the entries and, for tasks ``state`` waits for, in
        ``state`` (a CANCELLED task is finished, so the wait ends without it). A task claimed
        meanwhile answers ACTIVE with a cancel request; it is held too (if its worker stops
        it, ``raise_budget`` re-queues it). A task that finished meanwhile (409) is left alone.
        """
        if not self.over_budget():
            return []
        targets = self.holdable()
        if not targets:
            return []
        timeout = self.requests.config.timeout
        results = yield Gather([self.requests.cancel(tid, timeout=timeout) for tid in targets])
        held: list[str] = []
        failure: BaseException | None = None
        for task_id, result in zip(targets, results, strict=True):
            if isinstance(result, ConflictError):
                continue
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            self.held_ids.add(task_id)
            held.append(task_id)
            self._set_task(result)
            if state is not None and state.is_pending(task_id):
                state.update(result)
        if failure is not None:
            raise failure
        return held

    def held_entries(self) -> list[Entry]:
        """Entries whose task is held by the budget (cancelled by this run, still CANCELLED)."""
        return [
            e
            for e in self.all_entries
            if e.task is not None
            and e.task.task_id in self.held_ids
            and e.task.state is TaskState.CANCELLED
        ]

    @property
    def is_held(self) -> bool:
        """True when some of the run's work waits for more budget."""
        return self.articles_deferred or bool(self.held_entries())

    def note(self) -> str | None:
        """``held: budget $X reached`` while the run is held, else ``None``."""
        if not self.is_held:
            return None
        cap = self.budget_usd if self.budget_usd is not None else self.cost()
        return f"held: budget {format_usd(cap)} reached"

    def raise_budget_flow(self, new_usd: float | None) -> Flow[list[Task]]:
        """Set the run's budget to ``new_usd`` (``None``: no cap) and re-queue its held tasks
        (CANCELLED -> PENDING through the retry route); returns the re-queued tasks. Raises
        ``ValueError`` when the run has already cost ``new_usd`` (they would be held again)."""
        new = check_usd(new_usd, "new_usd")
        spent = self.cost()
        if new is not None and new <= spent:
            raise ValueError(
                f"the run has already cost {format_usd(spent)}: raise its budget above that"
            )
        self.budget_usd = new
        self.articles_deferred = False
        ids = sorted(self.held_ids)
        timeout = self.requests.config.timeout
        chunks = [ids[i : i + LOOKUP_MAX] for i in range(0, len(ids), LOOKUP_MAX)]
        fresh = yield Gather([self.requests.lookup(c, timeout=timeout) for c in chunks])
        cancelled: list[str] = []
        for part in fresh:
            if isinstance(part, BaseException):
                raise part
            for task in part:
                self._set_task(task)
                if task.state is TaskState.CANCELLED:
                    cancelled.append(task.task_id)
                elif task.state is not TaskState.ACTIVE:
                    self.held_ids.discard(task.task_id)  # it finished some other way
        results = yield Gather(
            [self.requests.retry(t, reset_retry_count=False, timeout=timeout) for t in cancelled]
        )
        requeued: list[Task] = []
        failure: BaseException | None = None
        for task_id, result in zip(cancelled, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            self.held_ids.discard(task_id)
            self._set_task(result)
            requeued.append(result)
        self.note_finished()
        if failure is not None:
            raise failure
        return requeued

    def _article_entries(self) -> list[Entry]:
        """Article-summary entries for finished PDFs whose articles lack a summary."""
        known = {(a.parent, a.row) for a in self.articles}
        out: list[Entry] = []
        for index, entry in enumerate(self.entries):
            if entry.kind != "pdf" or entry.task is None or not entry.task.ok:
                continue
            for row_no, row in enumerate(flatten_pdf_result(entry.task.result, entry.label)):
                if row["summary"].strip() or not row["body"].strip() or (index, row_no) in known:
                    continue
                key = derive_key("summarize", _sha(row["body"]), self.payload_options)
                label = f"{entry.label}#{row['page']}.{row['article']}"
                out.append(Entry("article", label, key, text=row["body"], parent=index, row=row_no))
        return out

    def wait_flow(self, timeout: float | None, on_progress: Callable[[], None]) -> Flow[None]:
        """Wait for every task; then, for PDFs with ``summarize``, submit and wait for the
        summaries of articles that came back without one. Held tasks count as finished: the
        flow returns when every task has finished or is held (and, over budget, it submits no
        article summaries: they wait for :meth:`raise_budget_flow`)."""
        yield from self._poll(self.entries, timeout, on_progress)
        if self.kind == "pdf" and self.summarize:
            if self.over_budget():
                self.articles_deferred = bool(self._article_entries())
                on_progress()
                if self.articles_deferred:
                    self.note_finished()
                    return None
            extra = self._article_entries()
            if extra:
                self.articles.extend(extra)
                self.new_tasks += yield from self._submit_summaries(extra)
                on_progress()
            yield from self._poll(self.articles, timeout, on_progress)
        self.note_finished()
        return None

    def retry_flow(self) -> Flow[list[Task]]:
        """Send every failed (DLQ or FAILED) task of the batch back to the queue."""
        failed = [e for e in self.all_entries if e.state in (TaskState.DLQ, TaskState.FAILED)]
        seen: dict[str, Entry] = {}
        for e in failed:
            assert e.task is not None
            seen.setdefault(e.task.task_id, e)
        flows = [
            self.requests.retry(tid, reset_retry_count=True, timeout=self.requests.config.timeout)
            for tid in seen
        ]
        results = yield Gather(flows)
        retried: list[Task] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            retried.append(result)
            for e in failed:
                if e.task is not None and e.task.task_id == result.task_id:
                    e.task = result
        self.note_finished()
        return retried

    # ------------------------------------------------------------------ views

    def counts(self) -> dict[str, int]:
        """Tasks per state (``UNSUBMITTED`` before submit, :data:`HELD` for budget holds)."""
        held = {id(e) for e in self.held_entries()}
        counter = Counter(
            HELD if id(e) in held else str(e.state) if e.state else "UNSUBMITTED"
            for e in self.all_entries
        )
        return dict(counter)

    def done(self) -> int:
        """Tasks that have finished (held tasks are not done)."""
        held = {id(e) for e in self.held_entries()}
        return sum(
            1
            for e in self.all_entries
            if e.task is not None and e.task.is_terminal and id(e) not in held
        )

    def cost(self) -> float:
        """USD spent by the run's finished tasks (each task's ``result.usage.cost`` once)."""
        costs = {
            e.task.task_id: e.task.cost or 0.0
            for e in self.all_entries
            if e.task is not None and e.task.is_terminal
        }
        return float(sum(costs.values()))

    def total(self) -> int:
        """Tasks in the batch, article summaries included once they are known."""
        return len(self.all_entries)

    def results(self) -> pd.DataFrame:
        """Texts: one row per text. PDFs: one row per article of every completed file."""
        import pandas as pd

        if self.kind == "text":
            rows = [
                {
                    "index": int(e.label),
                    "text": e.text,
                    "summary": e.task.summary if e.task is not None else None,
                    "state": str(e.state) if e.state else None,
                    "task_id": e.task.task_id if e.task is not None else None,
                    "cost": e.task.cost if e.task is not None else None,
                }
                for e in self.entries
            ]
            return pd.DataFrame(rows, columns=TEXT_COLUMNS)
        summaries = {
            (a.parent, a.row): a.task for a in self.articles if a.task is not None and a.task.ok
        }
        out: list[dict[str, Any]] = []
        for index, entry in enumerate(self.entries):
            if entry.task is None or not entry.task.ok:
                continue
            rows = flatten_pdf_result(entry.task.result, entry.label)
            share = (entry.task.cost or 0.0) / len(rows) if rows else 0.0
            for row_no, row in enumerate(rows):
                joined = summaries.get((index, row_no))
                cost = share
                if joined is not None:
                    if joined.summary:
                        row["summary"] = joined.summary
                    cost += joined.cost or 0.0
                row["task_id"] = entry.task.task_id
                row["cost"] = cost
                out.append(row)
        return pd.DataFrame(out, columns=ARTICLE_COLUMNS)

    def failures(self) -> pd.DataFrame:
        """One row per task that ended in DLQ, FAILED or CANCELLED (not those held by the
        budget): the error class and message."""
        import pandas as pd

        held = {id(e) for e in self.held_entries()}
        rows = [
            {
                "item": e.label,
                "kind": e.kind,
                "task_id": e.task.task_id,
                "state": str(e.task.state),
                "error_class": e.task.error_type,
                "message": e.task.last_error,
                "retry_count": e.task.retry_count,
            }
            for e in self.all_entries
            if e.task is not None and e.task.state.is_failure and id(e) not in held
        ]
        return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


class _RunViews:
    """The read-only views both run classes share."""

    core: BatchCore

    @property
    def name(self) -> str | None:
        """The label the control panel and progress bars show (``client.batch(name=...)``;
        ``None``: none). It may be changed; it is not part of the batch's idempotency keys."""
        return self.core.name

    @name.setter
    def name(self, value: str | None) -> None:
        self.core.name = value

    @property
    def started_at(self) -> float:
        """When the run was created (epoch seconds)."""
        return self.core.started_at

    @property
    def finished_at(self) -> float | None:
        """When ``wait()`` first saw every task of the run finished (epoch seconds); ``None``
        while some task is queued, running or held by the budget."""
        return self.core.finished_at

    @property
    def tasks(self) -> list[Task]:
        """Every task of the batch, as last seen (article summaries after the files)."""
        return [e.task for e in self.core.all_entries if e.task is not None]

    @property
    def new_tasks(self) -> int:
        """How many tasks the submits of this run created (0 when it resumed a batch)."""
        return self.core.new_tasks

    def counts(self) -> dict[str, int]:
        """Tasks per state, as last seen (``HELD``: held by the run's budget)."""
        return self.core.counts()

    def cost(self) -> float:
        """USD spent by the run's finished tasks (the sum of their ``result.usage.cost``)."""
        return self.core.cost()

    @property
    def budget_usd(self) -> float | None:
        """The run's cap in USD (``None``: none); change it with ``raise_budget()``."""
        return self.core.budget_usd

    @property
    def held(self) -> list[Task]:
        """The tasks held because the run's budget was reached (re-queued by
        ``raise_budget()``)."""
        return [e.task for e in self.core.held_entries() if e.task is not None]

    @property
    def is_held(self) -> bool:
        """True while some of the run's work waits for more budget."""
        return self.core.is_held

    def results(self) -> pd.DataFrame:
        """The results as a DataFrame (see :meth:`BatchCore.results`)."""
        return self.core.results()

    def failures(self) -> pd.DataFrame:
        """Failed tasks with their error class and message."""
        return self.core.failures()

    def to_csv(self, path: str | Path, **kwargs: Any) -> Path:
        """Write :meth:`results` as CSV; returns the path."""
        out = Path(path)
        self.results().to_csv(out, index=False, **kwargs)
        return out

    def to_parquet(self, path: str | Path, **kwargs: Any) -> Path:
        """Write :meth:`results` as Parquet (needs pyarrow); returns the path."""
        out = Path(path)
        self.results().to_parquet(out, index=False, **kwargs)
        return out

    def _status(self) -> str:
        text = f"cost {format_usd(self.core.cost())}"
        if self.core.budget_usd is not None:
            text += f" of {format_usd(self.core.budget_usd)}"
        note = self.core.note()
        return f"{text}; {note}" if note else text

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items()))
        name = f" {self.core.name!r}" if self.core.name else ""
        return (
            f"<{type(self).__name__}{name} {self.core.kind} x{len(self.core.entries)}: {counts}; "
            f"{self._status()}>"
        )

    def _repr_html_(self) -> str:
        counts = "".join(
            f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in sorted(self.counts().items())
        )
        name = f" {html.escape(self.core.name)}" if self.core.name else ""
        return (
            f"<b>{type(self).__name__}{name}</b>: {len(self.core.entries)} {self.core.kind} "
            f"item(s), {html.escape(self._status())}<table>{counts}</table>"
        )


class BatchRun(_RunViews):
    """A batch on a :class:`~taskflow_sdk.Client` (made by ``client.batch(...)``).

    ``wait(timeout=None, progress=True)`` waits with a progress bar; ``results()``,
    ``failures()``, ``retry_failed()``, ``to_csv()``, ``to_parquet()``; ``tasks`` and
    ``counts()`` show where it stands. Options are those of :class:`BatchCore`; ``driver`` is
    the client's (any :class:`~taskflow_sdk._drivers.SyncDriver`).
    """

    def __init__(self, driver: SyncDriver, **kwargs: Any) -> None:
        self._driver = driver
        self.core = BatchCore(driver.requests, **kwargs)

    def submit(self) -> int:
        """Submit what is not submitted yet (idempotent); returns how many tasks were new."""
        self.core.load()
        return self._driver.run(self.core.submit_flow())

    def wait(self, timeout: float | None = None, progress: bool = True) -> BatchRun:
        """Wait until every task (and article summary) has finished or is held by the run's
        budget (``is_held``; see :meth:`raise_budget`); raises
        :class:`~taskflow_sdk.TaskTimeout` after ``timeout`` seconds. The bar shows the cost
        so far and an ETA from the recent completion rate."""
        bar = Progress(self.core, enabled=progress, name=self.core.name or "batch")
        try:
            self._driver.run(self.core.wait_flow(timeout, bar))
        finally:
            bar.close()
        return self

    def retry_failed(self) -> list[Task]:
        """Send the failed tasks back to the queue (their retry count reset); ``wait()`` again
        for them. Returns the requeued tasks."""
        return self._driver.run(self.core.retry_flow())

    def raise_budget(self, new_usd: float | None) -> list[Task]:
        """Raise the run's budget to ``new_usd`` (``None``: no cap) and re-queue its held tasks
        (CANCELLED -> PENDING); ``wait()`` again to go on. Returns the re-queued tasks."""
        return self._driver.run(self.core.raise_budget_flow(new_usd))


class AsyncBatchRun(_RunViews):
    """A batch on an :class:`~taskflow_sdk.AsyncClient` (made by ``await client.batch(...)``);
    the same methods as :class:`BatchRun`, with ``await`` for ``submit``, ``wait`` and
    ``retry_failed``; ``driver`` is the client's (any
    :class:`~taskflow_sdk._drivers.AsyncDriver`).
    """

    def __init__(self, driver: AsyncDriver, **kwargs: Any) -> None:
        self._driver = driver
        self.core = BatchCore(driver.requests, **kwargs)

    async def submit(self) -> int:
        """Submit what is not submitted yet (idempotent); returns how many tasks were new."""
        await asyncio.to_thread(self.core.load)
        return await self._driver.run(self.core.submit_flow())

    async def wait(self, timeout: float | None = None, progress: bool = True) -> AsyncBatchRun:
        """Wait until every task (and article summary) has finished or is held by the run's
        budget (see :meth:`BatchRun.wait`)."""
        bar = Progress(self.core, enabled=progress, name=self.core.name or "batch")
        try:
            await self._driver.run(self.core.wait_flow(timeout, bar))
        finally:
            bar.close()
        return self

    async def retry_failed(self) -> list[Task]:
        """Send the failed tasks back to the queue; returns the requeued tasks."""
        return await self._driver.run(self.core.retry_flow())

    async def raise_budget(self, new_usd: float | None) -> list[Task]:
        """Raise the run's budget and re-queue its held tasks (see
        :meth:`BatchRun.raise_budget`)."""
        return await self._driver.run(self.core.raise_budget_flow(new_usd))
