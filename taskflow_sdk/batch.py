"""Batch runs: a list of texts or a folder of PDFs -> idempotent submits -> progress -> DataFrame.

::

    run = client.batch(folder="archive/", summarize=True)   # submits (or resumes) the batch
    run.wait()                                              # progress bar with counts per state
    df = run.results()                                      # one row per article
    run.failures(); run.retry_failed(); run.to_csv("results.csv")

Every task of a batch carries an idempotency key derived from its content (sha256 of the text,
or of the PDF plus its file name) and the options that change its result, so running the same
cell again returns the same tasks instead of submitting new ones, and a run interrupted half way
resumes where it was. Each PDF is uploaded at most once: it is first referenced by its sha256,
and sent only when the server does not hold it yet.

PDF results are flattened to one row per article (``file, issue_date, page, article, title,
subtitle, author, body, topics, summary``). With ``summarize=True``, articles that come back
without a summary get a summarize task each (idempotent too), joined in ``results()``.

:class:`BatchRun` (for :class:`~taskflow_sdk.Client`) and :class:`AsyncBatchRun` (for
:class:`~taskflow_sdk.AsyncClient`) only drive the flows of :class:`BatchCore`, where all the
logic lives.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskflow_sdk._base import Flow, Gather, Requests, Upload, WaitState
from taskflow_sdk._files import read_upload
from taskflow_sdk.models import Task, TaskState
from taskflow_sdk.progress import Progress

if TYPE_CHECKING:
    import pandas as pd

    from taskflow_sdk.async_client import AsyncClient
    from taskflow_sdk.client import Client

__all__ = [
    "ARTICLE_COLUMNS",
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
]
"""Columns of ``results()`` for a PDF batch."""
TEXT_COLUMNS = ["index", "text", "summary", "state", "task_id"]
"""Columns of ``results()`` for a text batch."""
FAILURE_COLUMNS = ["item", "kind", "task_id", "state", "error_class", "message", "retry_count"]
"""Columns of ``failures()``."""

KEY_PREFIX = "tfb"
MAX_POLL = 1.0
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
            ``issue_date`` (PDFs), ``tag`` (any string: a different tag makes a new batch).
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
        **opts: Any,
    ) -> None:
        given = sum(x is not None for x in (texts, paths, folder))
        if given != 1:
            raise ValueError("give exactly one of texts=, paths= or folder=")
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

    # ------------------------------------------------------------------ inputs

    def load(self) -> None:
        """Build the entries: hash the texts, read and hash the files (the only file I/O)."""
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

    def _poll(
        self, entries: list[Entry], timeout: float | None, on_progress: Callable[[], None]
    ) -> Flow[None]:
        state = WaitState([e.task.task_id for e in entries if e.task], timeout, False)

        def seen() -> None:
            for e in entries:
                if e.task is not None and e.task.task_id in state.latest:
                    e.task = state.latest[e.task.task_id]
            on_progress()

        yield from self.requests.wait(state, poll_interval=MAX_POLL, on_progress=seen)
        return None

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
        summaries of articles that came back without one."""
        yield from self._poll(self.entries, timeout, on_progress)
        if self.kind == "pdf" and self.summarize:
            extra = self._article_entries()
            if extra:
                self.articles.extend(extra)
                self.new_tasks += yield from self._submit_summaries(extra)
                on_progress()
            yield from self._poll(self.articles, timeout, on_progress)
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
        return retried

    # ------------------------------------------------------------------ views

    def counts(self) -> dict[str, int]:
        """Tasks per state (``UNSUBMITTED`` before submit)."""
        counter = Counter(str(e.state) if e.state else "UNSUBMITTED" for e in self.all_entries)
        return dict(counter)

    def done(self) -> int:
        """Tasks that have finished."""
        return sum(1 for e in self.all_entries if e.task is not None and e.task.is_terminal)

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
                }
                for e in self.entries
            ]
            return pd.DataFrame(rows, columns=TEXT_COLUMNS)
        summaries = {
            (a.parent, a.row): a.task.summary
            for a in self.articles
            if a.task is not None and a.task.ok
        }
        out: list[dict[str, Any]] = []
        for index, entry in enumerate(self.entries):
            if entry.task is None or not entry.task.ok:
                continue
            for row_no, row in enumerate(flatten_pdf_result(entry.task.result, entry.label)):
                joined = summaries.get((index, row_no))
                if joined:
                    row["summary"] = joined
                row["task_id"] = entry.task.task_id
                out.append(row)
        return pd.DataFrame(out, columns=ARTICLE_COLUMNS)

    def failures(self) -> pd.DataFrame:
        """One row per task that ended in DLQ, FAILED or CANCELLED: the error class and
        message."""
        import pandas as pd

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
            if e.task is not None and e.task.state.is_failure
        ]
        return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


class _RunViews:
    """The read-only views both run classes share."""

    core: BatchCore

    @property
    def tasks(self) -> list[Task]:
        """Every task of the batch, as last seen (article summaries after the files)."""
        return [e.task for e in self.core.all_entries if e.task is not None]

    @property
    def new_tasks(self) -> int:
        """How many tasks the submits of this run created (0 when it resumed a batch)."""
        return self.core.new_tasks

    def counts(self) -> dict[str, int]:
        """Tasks per state, as last seen."""
        return self.core.counts()

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

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items()))
        return f"<{type(self).__name__} {self.core.kind} x{len(self.core.entries)}: {counts}>"

    def _repr_html_(self) -> str:
        counts = "".join(
            f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in sorted(self.counts().items())
        )
        return (
            f"<b>{type(self).__name__}</b>: {len(self.core.entries)} {self.core.kind} item(s)"
            f"<table>{counts}</table>"
        )


class BatchRun(_RunViews):
    """A batch on a :class:`~taskflow_sdk.Client` (made by ``client.batch(...)``).

    ``wait(timeout=None, progress=True)`` waits with a progress bar; ``results()``,
    ``failures()``, ``retry_failed()``, ``to_csv()``, ``to_parquet()``; ``tasks`` and
    ``counts()`` show where it stands. Options are those of :class:`BatchCore`.
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        self._client = client
        self.core = BatchCore(client._requests, **kwargs)

    def submit(self) -> int:
        """Submit what is not submitted yet (idempotent); returns how many tasks were new."""
        self.core.load()
        return self._client._run(self.core.submit_flow())

    def wait(self, timeout: float | None = None, progress: bool = True) -> BatchRun:
        """Wait until every task (and article summary) has finished; raises
        :class:`~taskflow_sdk.TaskTimeout` after ``timeout`` seconds."""
        bar = Progress(self.core, enabled=progress, name="batch")
        try:
            self._client._run(self.core.wait_flow(timeout, bar))
        finally:
            bar.close()
        return self

    def retry_failed(self) -> list[Task]:
        """Send the failed tasks back to the queue (their retry count reset); ``wait()`` again
        for them. Returns the requeued tasks."""
        return self._client._run(self.core.retry_flow())


class AsyncBatchRun(_RunViews):
    """A batch on an :class:`~taskflow_sdk.AsyncClient` (made by ``await client.batch(...)``);
    the same methods as :class:`BatchRun`, with ``await`` for ``submit``, ``wait`` and
    ``retry_failed``."""

    def __init__(self, client: AsyncClient, **kwargs: Any) -> None:
        self._client = client
        self.core = BatchCore(client._requests, **kwargs)

    async def submit(self) -> int:
        """Submit what is not submitted yet (idempotent); returns how many tasks were new."""
        await asyncio.to_thread(self.core.load)
        return await self._client._run(self.core.submit_flow())

    async def wait(self, timeout: float | None = None, progress: bool = True) -> AsyncBatchRun:
        """Wait until every task (and article summary) has finished."""
        bar = Progress(self.core, enabled=progress, name="batch")
        try:
            await self._client._run(self.core.wait_flow(timeout, bar))
        finally:
            bar.close()
        return self

    async def retry_failed(self) -> list[Task]:
        """Send the failed tasks back to the queue; returns the requeued tasks."""
        return await self._client._run(self.core.retry_flow())
