"""The ``taskflow`` command: talk to a server from a shell, run a batch, or try it all offline.

::

    taskflow [--url URL] [--token TOKEN] COMMAND ...

    submit TYPE [PAYLOAD] [--priority P] [--max-retries N] [--key K] [--wait]
    status ID                     wait ID... [--timeout S]
    list [--state S] [--type T] [--limit N]
    dlq [list | retry ID... | delete ID...] [--all] [--reset]
    queues                        workers                      health
    breaker open [--reason R] | reset | status
    budget [USD | none]           today's LLM cost against the daily budget; set or remove it
    batch DIR [--pattern GLOB] [--summarize] [-o results.csv]
    samples make DIR [--count N] [--seed S] [--scanned]   (needs the server extra)
    fake-openrouter [ARGS...]                     (needs the server extra)
    demo [-o results.csv]                         (needs the server extra)

The server is ``--url``, else ``TASKFLOW_URL``, else ``http://127.0.0.1:8000``; the token is
``--token``, else ``TASKFLOW_API_TOKEN``. Expected failures print one line on stderr: exit 2 when
the server cannot be reached or refuses the token, 1 for other errors.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskflow_sdk.client import Client
from taskflow_sdk.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    PermissionDeniedError,
    TaskflowError,
    TaskTimeout,
)
from taskflow_sdk.models import Task, TaskList

if TYPE_CHECKING:
    import pandas as pd

EXIT_OK = 0
"""Exit status: the command did what it was asked (and every task it waited for completed)."""
EXIT_ERROR = 1
"""Exit status: an error answer, a task that did not complete, a timeout, an unhealthy server."""
EXIT_UNREACHABLE = 2
"""Exit status: the server could not be reached, or refused the token."""
TABLE_WIDTH = 60
"""The widest a text column of a printed table gets."""
TITLE_WIDTH = 40
"""The widest the title column of a batch's article table gets."""
SUMMARY_WIDTH = (40, TABLE_WIDTH)
"""The narrowest and widest the one-line summary column of an article table gets (it takes
what the terminal has left)."""


class CliError(Exception):
    """An expected failure: its message is printed as is, with ``code`` as the exit status."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _client(args: argparse.Namespace) -> Client:
    return Client(base_url=args.url, token=args.token, timeout=args.http_timeout)


def _payload(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise CliError(f"the payload is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError("the payload must be a JSON object, e.g. '{\"seconds\": 1}'")
    return value


def _short(value: Any, width: int = TABLE_WIDTH) -> str:
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    cols = [c for c in columns if c in frame.columns]
    if frame.empty:
        return "(none)"
    rows = [[_short(v) for v in record] for record in frame[cols].itertuples(index=False)]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _show_task(task: Task) -> None:
    fields: list[tuple[str, Any]] = [
        ("task_id", task.task_id),
        ("type", task.task_type),
        ("state", task.state.value),
        ("priority", task.priority),
        ("retries", f"{task.retry_count}/{task.max_retries}"),
        (
            "progress",
            f"{task.progress:.0%}" + (f" {task.progress_message}" if task.progress_message else ""),
        ),
        ("created", task.created_at),
        ("completed", task.completed_at),
        ("error", f"{task.error_type}: {task.last_error}" if task.error_type else task.last_error),
    ]
    for name, value in fields:
        if value not in (None, ""):
            _out(f"{name:>9}  {value}")
    if task.summary:
        _out(f"{'summary':>9}  {task.summary}")
    elif task.result is not None:
        _out(f"{'result':>9}  {_short(json.dumps(task.result, default=str), 400)}")


def _show_list(tasks: TaskList | list[Task]) -> None:
    from taskflow_sdk.models import tasks_frame

    frame = tasks_frame(list(tasks))
    _out(
        _table(frame, ["task_id", "task_type", "state", "retry_count", "error_type", "created_at"])
    )


# --------------------------------------------------------------------------- commands


def cmd_submit(args: argparse.Namespace) -> int:
    """``submit TYPE [PAYLOAD]``: print the task id (or the finished task with ``--wait``)."""
    with _client(args) as client:
        task = client.submit(
            args.task_type,
            _payload(args.payload),
            priority=args.priority,
            max_retries=args.max_retries,
            idempotency_key=args.key,
        )
        if not args.wait:
            _out(task.task_id)
            return EXIT_OK
        done = client.wait(task, timeout=args.timeout)
        _show_task(done)
        return EXIT_OK if done.ok else EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    """``status ID``: one task in detail."""
    with _client(args) as client:
        _show_task(client.get(args.task_id))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    """``wait ID...``: wait for tasks; exit 1 unless all completed."""
    with _client(args) as client:
        done = client.wait(list(args.task_ids), timeout=args.timeout)
    _show_list(done)
    return EXIT_OK if all(t.ok for t in done) else EXIT_ERROR


def cmd_list(args: argparse.Namespace) -> int:
    """``list``: the most recent tasks matching the filters."""
    with _client(args) as client:
        tasks = client.list(state=args.state, task_type=args.type, limit=args.limit).to_list()
    _show_list(tasks)
    return EXIT_OK


def cmd_dlq(args: argparse.Namespace) -> int:
    """``dlq [list|retry|delete]``: show, requeue or delete dead-lettered tasks."""
    with _client(args) as client:
        if args.action == "list":
            dead = client.dlq(limit=args.limit)
            _out(
                _table(
                    dead.to_pandas(),
                    ["task_id", "task_type", "retry_count", "error_type", "last_error"],
                )
            )
            return EXIT_OK
        ids = list(args.task_ids)
        if args.all:
            ids += [t.task_id for t in client.dlq(limit=args.limit)]
        if not ids:
            raise CliError(f"dlq {args.action}: give task ids or --all")
        for task_id in ids:
            if args.action == "retry":
                task = client.retry(task_id, reset_retry_count=args.reset)
                _out(f"{task_id} {task.state.value}")
            else:
                client.delete(task_id)
                _out(f"{task_id} deleted")
    return EXIT_OK


def cmd_queues(args: argparse.Namespace) -> int:
    """``queues``: depths and tasks per state."""
    with _client(args) as client:
        status = client.queues()
    _out(str(status.to_pandas().to_string(index=False)))
    return EXIT_OK


def cmd_workers(args: argparse.Namespace) -> int:
    """``workers``: the workers and their heartbeats."""
    with _client(args) as client:
        workers = client.workers()
    _out(
        f"{workers.total_workers} worker(s), {workers.healthy_workers} healthy "
        f"({workers.overall_status})"
    )
    if len(workers):
        cols = ["worker_id", "status", "breaker", "active", "completed", "failed", "host", "pid"]
        _out(_table(workers.to_pandas(), cols))
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    """``health``: component health; exit 1 when unhealthy."""
    with _client(args) as client:
        health = client.health()
    _out(f"{health.status}: {health.note}")
    for name, info in health.components.items():
        _out(f"  {name}: {info.get('status')}")
    return EXIT_OK if health.healthy else EXIT_ERROR


def cmd_breaker(args: argparse.Namespace) -> int:
    """``breaker open|reset|status``."""
    with _client(args) as client:
        if args.action == "open":
            status = client.breaker.open(args.reason)
        elif args.action == "reset":
            status = client.breaker.reset()
        else:
            status = client.breaker.status()
    line = f"breaker {status.name}: {status.state}"
    if status.reason:
        line += f" ({status.reason})"
    if status.seconds_to_half_open is not None:
        line += f", half-open in {status.seconds_to_half_open:.0f} s"
    if status.held:
        line += ", held open until reset"
    _out(line)
    return EXIT_OK


def cmd_budget(args: argparse.Namespace) -> int:
    """``budget [USD | none]``: show today's LLM cost against the daily budget, or set it."""
    with _client(args) as client:
        if args.usd is None:
            budget = client.openrouter.budget()
        else:
            budget = client.openrouter.set_budget(_budget_value(args.usd))
        hold = client.openrouter.status().hold
    line = str(budget)
    if hold is not None:
        line += f"; LLM work on hold: {hold.reason}"
    _out(line)
    return EXIT_OK


def _budget_value(text: str) -> float | None:
    if text.strip().lower() in ("none", "off", "unlimited"):
        return None
    try:
        value = float(text.strip().lstrip("$"))
    except ValueError:
        raise CliError(f"budget {text!r} is not a number of dollars (or 'none')") from None
    if value < 0:
        raise CliError("the budget must be zero or more dollars")
    return value


_SENTENCE_END = re.compile(r"[.!?…][\"'”’)]*\s+(?=[\"“‘(]?[A-Z0-9])")  # noqa: RUF001
_NOT_AN_END = re.compile(r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gov|Sen|Rep|No|vs|U\.S))$")


def first_sentence(text: Any) -> str:
    """The first sentence of ``text`` on one line (all of it when it has no sentence end).

    A full stop after an initial or a common title ("J.", "Dr.") does not end the sentence.
    """
    flat = "" if text is None or text != text else " ".join(str(text).split())  # NaN: empty
    for match in _SENTENCE_END.finditer(flat):
        if not _NOT_AN_END.search(flat[: match.start()]):
            return flat[: match.end()].rstrip()
    return flat


def fit_words(text: Any, width: int) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis to be at most ``width``.

    A single word longer than ``width`` is cut inside the word.
    """
    flat = "" if text is None or text != text else " ".join(str(text).split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    if flat[width - 1] != " " and " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:.-—–") + "…"  # noqa: RUF001


def _article_table(frame: pd.DataFrame) -> str:
    """The article rows as ``file page title summary``: whole words, one-line summaries."""
    shown = frame[["file", "page", "title", "summary"]].copy()
    shown["title"] = [fit_words(t, TITLE_WIDTH) for t in shown["title"]]
    used = max([len(str(v)) for v in shown["file"]] + [4]) + max(
        [len(str(v)) for v in shown["page"]] + [4]
    )
    used += max([len(t) for t in shown["title"]] + [5]) + 6
    narrowest, widest = SUMMARY_WIDTH
    room = shutil.get_terminal_size((used + widest, 24)).columns - used - 1
    width = max(narrowest, min(widest, room))
    shown["summary"] = [fit_words(first_sentence(v), width) for v in shown["summary"]]
    return _table(shown, ["file", "page", "title", "summary"])


def _report_batch(
    frame: pd.DataFrame, out: str | None, failures: pd.DataFrame, *, count: bool = True
) -> None:
    if "file" in frame.columns:
        _out(_article_table(frame) if not frame.empty else "(none)")
    else:
        _out(_table(frame, ["index", "state", "summary"]))
    if count:
        _out(f"{len(frame)} row(s)")
    if not failures.empty:
        _out(f"{len(failures)} failed task(s):")
        _out(_table(failures, ["item", "state", "error_class", "message"]))
    if out:
        frame.to_csv(out, index=False)
        _out(f"wrote {out}")


def cmd_batch(args: argparse.Namespace) -> int:
    """``batch DIR``: extract (and summarize) every PDF of a folder; print and save a table."""
    folder = Path(args.folder)
    if not folder.is_dir():
        raise CliError(f"not a folder: {folder}")
    with _client(args) as client:
        run = client.batch(folder=str(folder), pattern=args.pattern, summarize=args.summarize)
        if not run.core.entries:
            raise CliError(f"no file matches {args.pattern!r} in {folder}")
        run.wait(timeout=args.timeout, progress=not args.quiet)
        _report_batch(run.results(), args.output, run.failures())
        return EXIT_OK if run.failures().empty else EXIT_ERROR


def _server_import(what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(what)
    except ImportError as exc:
        raise CliError(
            f"this command needs the server package ({exc.name} is missing): "
            "pip install 'asynctaskflow[server]'"
        ) from None


def cmd_samples(args: argparse.Namespace) -> int:
    """``samples make DIR``: write sample newspaper PDFs with ground truth."""
    samples = _server_import("taskflow_server.pdf.samples")
    paths = samples.make_samples(
        args.out_dir, count=args.count, seed=args.seed, scanned=args.scanned
    )
    for path in paths:
        _out(str(path))
    return EXIT_OK


def cmd_fake_openrouter(args: argparse.Namespace) -> int:
    """``fake-openrouter ARGS``: run the local OpenRouter stand-in (arguments pass through)."""
    fake = _server_import("taskflow_server.testing.openrouter")
    extra = [a for a in args.fake_args if a != "--"]
    result = fake.main(extra)
    return int(result) if isinstance(result, int) else EXIT_OK


def _start_server() -> Any:
    config = _server_import("taskflow_server.config")
    server_cli = _server_import("taskflow_server.cli")
    start: Callable[[Any], Any] | None = getattr(server_cli, "start_background_server", None)
    if start is None:
        start = _server_import("taskflow_server.serve").start_background_server
    errors = _server_import("taskflow_server.errors")
    settings = config.Settings(
        redis_url=None, port=0, host="127.0.0.1", api_token=None, openrouter_api_key=None
    )
    try:
        return start(settings)
    except errors.ConfigError as exc:  # e.g. the embedded store's extra is not installed
        raise CliError(str(exc)) from None


def _sample_folder() -> Path:
    pdf = _server_import("taskflow_server.pdf")
    for name in ("sample_dir", "bundled_dir"):
        finder = getattr(pdf, name, None)
        if finder is not None:
            return Path(finder())
    raise CliError("this server build has no bundled sample archive")


def _page_count(entries: Sequence[Any], frame: pd.DataFrame) -> int:
    """Pages of the completed files (pages without articles too); else pages with articles."""
    pages = 0
    for entry in entries:
        task = getattr(entry, "task", None)
        result = getattr(task, "result", None) if task is not None and task.ok else None
        if isinstance(result, dict) and isinstance(result.get("pages"), list):
            pages += len(result["pages"])
    if pages:
        return pages
    if frame.empty or "page" not in frame.columns:
        return 0
    return len(frame[["file", "page"]].drop_duplicates())


def demo_closing(
    *, files: int, pages: int, articles: int, seconds: float, csv_path: Path | None
) -> list[str]:
    """The lines that end ``taskflow demo``: what happened, and what to try next."""
    lines = [
        f"Done: {files} file(s), {pages} page(s), {articles} article(s) extracted and "
        f"summarized in {seconds:.1f} seconds.",
    ]
    if csv_path is not None:
        lines.append(f"Results: {csv_path}")
    steps = [
        ("notebooks/01_quickstart.ipynb", "the SDK step by step (then 02_ and 03_)"),
        ("taskflow-server", "run a real server; then e.g. taskflow health"),
        ("OPENROUTER_API_KEY=... taskflow-server", "summaries written by an LLM (OpenRouter)"),
    ]
    width = max(len(command) for command, _ in steps)
    lines += ["", "Next:"] + [f"  {command.ljust(width)}  {what}" for command, what in steps]
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: an in-process server (embedded store, offline summarizer) and a batch over
    the bundled sample archive; ends with what happened and what to try next."""
    started = time.monotonic()
    folder = _sample_folder()
    _out("starting an in-process server (embedded store, offline summarizer)...")
    handle = _start_server()
    try:
        _out(f"server at {handle.url}; batch over {folder} (extract + summarize)")
        with Client(handle.url, token=None, timeout=args.http_timeout) as client:
            run = client.batch(folder=str(folder), summarize=True)
            run.wait(timeout=args.timeout, progress=not args.quiet)
            frame, failures = run.results(), run.failures()
            _report_batch(frame, None, failures, count=False)
    finally:
        handle.stop()
    csv_path: Path | None = None
    if args.output:
        csv_path = Path(args.output).resolve()
        frame.to_csv(csv_path, index=False)
    _out()
    for line in demo_closing(
        files=len(run.core.entries),
        pages=_page_count(run.core.entries, frame),
        articles=len(frame),
        seconds=time.monotonic() - started,
        csv_path=csv_path,
    ):
        _out(line)
    return EXIT_OK if failures.empty else EXIT_ERROR


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``taskflow``."""
    parser = argparse.ArgumentParser(
        prog="taskflow",
        description="AsyncTaskFlow client: submit and follow tasks, run batches, try a demo.",
    )
    parser.add_argument("--url", help="the server (default TASKFLOW_URL or http://127.0.0.1:8000)")
    parser.add_argument("--token", help="bearer token (default TASKFLOW_API_TOKEN)")
    parser.add_argument(
        "--http-timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="submit a task")
    p.add_argument("task_type", help="e.g. summarize, demo.sleep")
    p.add_argument("payload", nargs="?", help="JSON object, or @file.json")
    p.add_argument("--priority", choices=["high", "default", "low"])
    p.add_argument("--max-retries", type=int)
    p.add_argument("--key", help="idempotency key")
    p.add_argument("--wait", action="store_true", help="wait and print the result")
    p.add_argument("--timeout", type=float, help="seconds to wait (default: no limit)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="show one task")
    p.add_argument("task_id")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("wait", help="wait for tasks to finish")
    p.add_argument("task_ids", nargs="+")
    p.add_argument("--timeout", type=float)
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("list", help="list recent tasks")
    p.add_argument("--state", type=str.upper)
    p.add_argument("--type")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("dlq", help="dead-lettered tasks: list, retry, delete")
    p.add_argument("action", nargs="?", choices=["list", "retry", "delete"], default="list")
    p.add_argument("task_ids", nargs="*")
    p.add_argument("--all", action="store_true", help="every task in the DLQ")
    p.add_argument("--reset", action="store_true", help="reset the retry count on retry")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_dlq)

    sub.add_parser("queues", help="queue depths and state counts").set_defaults(func=cmd_queues)
    sub.add_parser("workers", help="workers and heartbeats").set_defaults(func=cmd_workers)
    sub.add_parser("health", help="server health").set_defaults(func=cmd_health)

    p = sub.add_parser("breaker", help="the shared circuit breaker")
    p.add_argument("action", choices=["open", "reset", "status"])
    p.add_argument("--reason", help="why it is opened")
    p.set_defaults(func=cmd_breaker)

    p = sub.add_parser("budget", help="today's LLM cost against the daily budget")
    p.add_argument("usd", nargs="?", help="a new daily budget in US dollars, or 'none'")
    p.set_defaults(func=cmd_budget)

    for name, helptext in (
        ("batch", "extract (and summarize) every PDF of a folder"),
        ("demo", "run everything in-process over the bundled sample archive"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name == "batch":
            p.add_argument("folder")
            p.add_argument("--pattern", default="*.pdf")
            p.add_argument(
                "--summarize", action="store_true", help="summarize articles that lack a summary"
            )
            p.set_defaults(func=cmd_batch)
        else:
            p.set_defaults(func=cmd_demo)
        p.add_argument(
            "-o",
            "--output",
            default="results.csv" if name == "demo" else None,
            help="write the results as CSV",
        )
        p.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("samples", help="sample newspaper PDFs")
    samples_sub = p.add_subparsers(dest="samples_command", required=True, metavar="ACTION")
    make = samples_sub.add_parser("make", help="write sample PDFs with ground truth")
    make.add_argument("out_dir")
    make.add_argument("--count", type=int, default=4)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument(
        "--scanned",
        action="store_true",
        help="also write image-only copies (grey, slightly skewed, noisy 150-dpi scans)",
    )
    make.set_defaults(func=cmd_samples)

    p = sub.add_parser(
        "fake-openrouter",
        help="a local OpenRouter stand-in (arguments pass through)",
        add_help=False,
    )
    p.add_argument("fake_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_fake_openrouter)
    return parser


def _message(exc: TaskflowError) -> tuple[str, int]:
    if isinstance(exc, APIConnectionError):
        return str(exc), EXIT_UNREACHABLE
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return (
            f"the server refused the token ({exc.status_code}): {exc.detail or 'unauthorized'}. "
            "Pass --token or set TASKFLOW_API_TOKEN.",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, APIStatusError):
        return f"error {exc.status_code}: {exc.detail or exc.message}", EXIT_ERROR
    if isinstance(exc, TaskTimeout):
        return str(exc), EXIT_ERROR
    return str(exc), EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``taskflow``; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(words)
    if getattr(args, "func", None) is cmd_fake_openrouter:
        # Everything after the command word is the fake's own command line, in order
        # (argparse.REMAINDER alone drops options such as --latency to the top-level parser).
        args.fake_args = words[words.index("fake-openrouter") + 1 :]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code = int(args.func(args))
    except CliError as exc:
        sys.stderr.write(f"taskflow: {exc}\n")
        return exc.code
    except TaskflowError as exc:
        message, code = _message(exc)
        sys.stderr.write(f"taskflow: {message}\n")
        return code
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        sys.stderr.write(f"taskflow: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("taskflow: interrupted\n")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
