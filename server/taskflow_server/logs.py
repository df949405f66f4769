"""Structured logging for the server processes: ``key=value`` lines, or JSON lines.

Every logged URL has the value of its ``token`` query parameters replaced by ``***``
(:class:`RedactTokens`): browsers must put the API token in the query string of EventSource and
WebSocket URLs, and uvicorn's access log prints the full path.

httpx logs every request it sends at INFO; those per-request lines are demoted to DEBUG
(:func:`demote_request_logs`). An in-process server (:class:`~taskflow_server.serve.
BackgroundServer`, used from notebooks) sends its logs to a handler of its own
(:class:`ServerLogs`): WARNING and above on stderr by default, or everything from a level up into
a file, so they do not land in whichever notebook cell happens to run.

Fields meant for log pipelines rather than for people (a task's id, type, state, attempt, error
class) are passed as ``extra=json_fields(...)``: JSON lines carry them as top-level keys, text
lines leave them out (their message already says the same in words). While tracing is on, JSON
lines logged inside a span also carry its ``trace_id`` and ``span_id``, so a log line leads to
its trace and back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "***"
"""What a secret query value is replaced with."""

SECRET_PARAMS = frozenset({"token", "access_token", "api_token"})
"""Query parameter names whose values never reach a log (compared decoded, case-insensitively)."""

REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "taskflow_server")
"""Loggers that get the filter themselves (records logged on them directly), for servers whose
handlers are not set by :func:`setup_logging` (uvicorn's own log config)."""

REQUEST_LOGGERS = ("httpx",)
"""Loggers that log one INFO line per HTTP request (demoted to DEBUG)."""

SERVER_LOGGERS = ("taskflow_server", "uvicorn")
"""The loggers of an in-process server that :class:`ServerLogs` routes."""

_QUERY_PARAM = re.compile(r"([?&])([^=&#\s\"'<>]*)=([^&#\s\"'<>]*)")


def redact_tokens(text: str) -> str:
    """``text`` with the value of every ``token`` query parameter replaced by ``***``."""
    if "=" not in text:
        return text

    def mask(m: re.Match[str]) -> str:
        if unquote_plus(m.group(2)).strip().lower() in SECRET_PARAMS:
            return f"{m.group(1)}{m.group(2)}={REDACTED}"
        return m.group(0)

    return _QUERY_PARAM.sub(mask, text)


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact_tokens(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = str(value)
    redacted = redact_tokens(text)
    return value if redacted == text else redacted


class RedactTokens(logging.Filter):
    """A filter that masks ``token`` query values in a record's message and arguments.

    The arguments are masked one by one, so formatters that read ``record.args`` (uvicorn's
    access formatter) still get the same shape.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place; never drops it."""
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


_FILTER = RedactTokens()


class DemoteToDebug(logging.Filter):
    """A logger filter that turns INFO records into DEBUG ones: they are then dropped unless
    the logger is enabled for DEBUG (``logging.getLogger("httpx").setLevel("DEBUG")`` shows
    them again)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote an INFO record in place; keep it only when its logger logs DEBUG."""
        if record.levelno != logging.INFO:
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_DEMOTE = DemoteToDebug()


def demote_request_logs() -> None:
    """Log httpx's per-request lines (``HTTP Request: POST ... 200 OK``) at DEBUG instead of
    INFO (idempotent; it applies to the whole process)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DemoteToDebug) for f in logger.filters):
            logger.addFilter(_DEMOTE)


def install_redaction() -> None:
    """Attach the token filter to uvicorn's and our loggers (idempotent)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(_FILTER)


JSON_FIELDS = "json_fields"
"""The record attribute :func:`json_fields` fills."""

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn duplicates its message with ANSI colours
    JSON_FIELDS,
}


_context_fields: Callable[[], dict[str, Any]] | None = None


def set_context_fields(source: Callable[[], dict[str, Any]] | None) -> None:
    """Have JSON lines also carry the fields ``source()`` returns, called in the context each
    record is logged in (tracing sets its ``trace_id`` and ``span_id`` while it is on; this
    module imports nothing of it); ``None`` stops it."""
    global _context_fields
    _context_fields = source


def json_fields(**fields: Any) -> dict[str, Any]:
    """``extra=`` for fields that JSON lines carry as top-level keys and text lines leave out,
    e.g. ``log.info("task %s done", tid, extra=json_fields(task_id=tid, state="COMPLETED"))``."""
    return {JSON_FIELDS: fields}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            structured = getattr(record, JSON_FIELDS, None)
            if structured:
                fields.update(structured)
            if _context_fields is not None:
                fields.update(_context_fields())
            return json.dumps(fields, default=str)
        ts, level, logger = fields.pop("ts"), fields.pop("level"), fields.pop("logger")
        head = f"{ts} {level:<7} {logger}: {fields.pop('msg')}"
        rest = " ".join(f"{k}={v!r}" for k, v in fields.items() if k != "exc")
        tail = f"\n{fields['exc']}" if "exc" in fields else ""
        return f"{head} {rest}".rstrip() + tail


def setup_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Send every log record to stderr in one consistent format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json))
    handler.addFilter(_FILTER)  # every record that reaches the handler, whatever its logger
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")
    install_redaction()
    demote_request_logs()


class ServerLogs:
    """Where an in-process server's logs go while it runs: a handler of its own on the
    :data:`SERVER_LOGGERS`, which stop propagating to the root logger (so a notebook's or an
    application's logging setup does not print them).

    Args:
        level: the lowest level kept (``None``: INFO into a file, WARNING on stderr).
        file: a file the records are appended to (``None``: stderr, except inside a notebook
            kernel, where whatever a thread writes to stderr lands in the cell that happens to
            run: there the logs go to ``taskflow-server-<pid>.log`` in the temporary folder).

    :meth:`install` routes them; :meth:`restore` puts the loggers back as they were.
    """

    def __init__(self, level: str | int | None = None, file: str | Path | None = None) -> None:
        if file is None and _in_kernel():
            file = Path(tempfile.gettempdir()) / f"taskflow-server-{os.getpid()}.log"
        self.file = Path(file) if file is not None else None
        default = "INFO" if self.file is not None else "WARNING"
        chosen = default if level is None else level
        self.level = chosen if isinstance(chosen, int) else logging.getLevelName(chosen.upper())
        if not isinstance(self.level, int):
            raise ValueError(f"not a log level: {level!r}")
        self.handler: logging.Handler | None = None
        self._saved: list[tuple[logging.Logger, int, bool, list[logging.Handler]]] = []

    def install(self) -> ServerLogs:
        """Route the server's loggers to this handler (again: replaces the previous one)."""
        self.restore()
        handler: logging.Handler
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.file, encoding="utf-8")
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(as_json=False))
        handler.addFilter(_FILTER)
        handler.setLevel(self.level)
        self.handler = handler
        for name in SERVER_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate, list(logger.handlers)))
            logger.handlers[:] = [handler]
            logger.propagate = False
            logger.setLevel(self.level)
        install_redaction()
        demote_request_logs()
        return self

    def restore(self) -> None:
        """Put the loggers back as they were before :meth:`install` (idempotent)."""
        for logger, level, propagate, handlers in reversed(self._saved):
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.setLevel(level)
        self._saved.clear()
        if self.handler is not None:
            self.handler.close()
            self.handler = None


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (its stderr is the running cell's output)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    try:
        kernel = get() if callable(get) else None
    except Exception:
        return False
    return kernel is not None and hasattr(kernel, "kernel")
