"""Structured logging for the server processes: ``key=value`` lines, or JSON lines.

Every logged URL has the value of its ``token`` query parameters replaced by ``***``
(:class:`RedactTokens`): browsers must put the API token in the query string of EventSource and
WebSocket URLs, and uvicorn's access log prints the full path.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "***"
"""What a secret query value is replaced with."""

SECRET_PARAMS = frozenset({"token", "access_token", "api_token"})
"""Query parameter names whose values never reach a log (compared decoded, case-insensitively)."""

REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "taskflow_server")
"""Loggers that get the filter themselves (records logged on them directly), for servers whose
handlers are not set by :func:`setup_logging` (uvicorn's own log config)."""

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


def install_redaction() -> None:
    """Attach the token filter to uvicorn's and our loggers (idempotent)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(_FILTER)


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn duplicates its message with ANSI colours
}


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
