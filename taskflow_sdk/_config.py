"""Client settings: the defaults, where they come from (arguments, then the environment), and
how a URL is shown without its secrets.

:func:`resolve_config` turns a client's constructor arguments into a frozen
:class:`ClientConfig`; everything else in the SDK reads settings from that object only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "ENV_TOKEN",
    "ENV_URL",
    "USE_CLIENT_DEFAULT",
    "ClientConfig",
    "Timeout",
    "TimeoutTypes",
    "UseClientDefault",
    "resolve_config",
    "safe_url",
]

ENV_URL = "TASKFLOW_URL"
"""The environment variable naming the server when ``base_url`` is not given."""
ENV_TOKEN = "TASKFLOW_API_TOKEN"
"""The environment variable holding the bearer token when ``token`` is not given."""
DEFAULT_URL = "http://127.0.0.1:8000"
"""Where the SDK looks for the server when neither ``base_url`` nor ``TASKFLOW_URL`` says."""
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""Per-request timeout unless the client or the call says otherwise."""
DEFAULT_MAX_RETRIES = 2
"""Automatic retries of an idempotent request after a connection error, a 429 or a 5xx."""
DEFAULT_POLL_INTERVAL = 0.5
"""The longest pause between two polls in ``wait()`` (polling starts faster and slows down)."""


class UseClientDefault:
    """Type of :data:`USE_CLIENT_DEFAULT`: "use the client's setting" for a per-call option,
    so that ``timeout=None`` can still mean "no timeout"."""

    _instance: UseClientDefault | None = None

    def __new__(cls) -> UseClientDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"

    def __bool__(self) -> bool:
        return False


USE_CLIENT_DEFAULT = UseClientDefault()
"""Per-call ``timeout=`` default: use the client's timeout."""

TimeoutTypes = float | httpx.Timeout | None
"""What a client's ``timeout=`` accepts: seconds, an ``httpx.Timeout`` or ``None`` (no limit)."""
Timeout = TimeoutTypes | UseClientDefault
"""What a call's ``timeout=`` accepts: seconds, an ``httpx.Timeout``, ``None`` (no limit) or
:data:`USE_CLIENT_DEFAULT`."""


_SECRET_QUERY = re.compile(r"([?&](?:token|access_token|api_token)=)[^&#]*", re.IGNORECASE)


def safe_url(url: str) -> str:
    """``url`` fit to show: a password in it and ``token`` query values become ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _SECRET_QUERY.sub(r"\1***", url)
    if password:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{netloc[1]}")
    return _SECRET_QUERY.sub(r"\1***", urlunsplit(parts))


@dataclass(frozen=True)
class ClientConfig:
    """Resolved client settings (see :func:`resolve_config`).

    The token is kept out of ``repr``/``str`` (shown as ``'***'``), and so out of tracebacks
    and logs that print the config.
    """

    base_url: str
    token: str | None = field(repr=False)
    timeout: httpx.Timeout
    max_retries: int
    backoff_initial: float = 0.25
    backoff_max: float = 8.0
    retry_after_max: float = 60.0

    def __repr__(self) -> str:
        token = None if self.token is None else "***"
        return (
            f"ClientConfig(base_url={safe_url(self.base_url)!r}, token={token!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r}, "
            f"backoff_initial={self.backoff_initial!r}, backoff_max={self.backoff_max!r}, "
            f"retry_after_max={self.retry_after_max!r})"
        )

    __str__ = __repr__

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return self.base_url + path

    def headers(self) -> dict[str, str]:
        """Headers every request carries."""
        out = {"Accept": "application/json", "User-Agent": f"taskflow-sdk/{_version()}"}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out

    def timeout_for(self, timeout: Timeout) -> httpx.Timeout:
        """The timeout of one call: its own, or the client's."""
        if isinstance(timeout, UseClientDefault):
            return self.timeout
        if isinstance(timeout, httpx.Timeout):
            return timeout
        return httpx.Timeout(timeout)


def _version() -> str:
    from taskflow_sdk import __version__

    return __version__


def resolve_config(
    base_url: str | None,
    token: str | None,
    timeout: TimeoutTypes,
    max_retries: int,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Settings from arguments, else the environment (``TASKFLOW_URL``, ``TASKFLOW_API_TOKEN``),
    else the defaults."""
    environ = os.environ if env is None else env
    url = base_url or environ.get(ENV_URL) or DEFAULT_URL
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    return ClientConfig(
        base_url=url,
        token=token if token is not None else (environ.get(ENV_TOKEN) or None),
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        max_retries=max_retries,
    )
