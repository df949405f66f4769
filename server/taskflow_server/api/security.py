"""Browser protections: a ``Host`` allowlist (DNS rebinding) and an ``Origin`` check (CSRF).

Without a token the API is open to anything that can reach loopback, and that includes web pages:
a page on another origin can send "simple" requests (form posts, ``text/plain`` JSON, multipart
uploads) that a browser sends without a CORS preflight, and a page on a rebound DNS name reaches
the server under a ``Host`` of the attacker's choosing. :class:`BrowserGuardMiddleware` refuses
both with a 403 ``{"detail": ...}`` that names the setting to change:

* every request (WebSocket handshakes too) whose ``Host`` is not an allowed name: the loopback
  names and the configured ``host`` (any port), plus ``TASKFLOW_ALLOWED_HOSTS``; ``*`` there
  turns the check off;
  the health routes (``/``, ``/live``, ``/ready``, ``/health``) stay reachable under any name,
  so container probes that use an IP address keep working;
* every state-changing request (POST, PUT, PATCH, DELETE) and every WebSocket handshake whose
  ``Origin`` is present and is neither the request's own origin (``scheme://host``) nor in
  ``TASKFLOW_CORS_ORIGINS``; when a browser sends no ``Origin`` but says
  ``Sec-Fetch-Site: cross-site`` (or ``same-site``) the request is refused too.

Clients that are not browsers (the SDK, curl) send no ``Origin`` and pass. A dashboard served
through a same-origin proxy passes: its requests carry the proxy's origin, and the proxy
forwards that same ``Host`` (add the name to ``TASKFLOW_ALLOWED_HOSTS`` when it is not a loopback
name). Cross-origin reads are governed by CORS, which the app adds only for allowlisted origins.

The middleware is pure ASGI, so streamed responses pass through unbuffered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from taskflow_server.config import Settings

log = logging.getLogger(__name__)

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
"""Names always allowed in ``Host`` by default (any port)."""

WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
"""``host`` values that mean "every interface": not a name a client would send."""

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods whose cross-origin use is refused."""

OPEN_PATHS = frozenset({"/", "/live", "/ready", "/health"})
"""Routes reachable under any ``Host`` (read-only health and service info)."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HTTP_SCHEME = {"ws": "http", "wss": "https"}


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` value (``[::1]:8000`` -> ``("[::1]", 8000)``).

    The name is lower-cased without a trailing dot; ``None`` when the value is malformed.
    """
    text = value.strip().lower()
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, sep, port_text = text.partition(":")
        if sep and not port_text:
            return None
    name = name.rstrip(".")
    if not name or any(c in name for c in "/?#@ \t"):
        return None
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5:
            return None
        return name, int(port_text)
    return name, None


@dataclass(frozen=True)
class HostPattern:
    """One ``allowed_hosts`` entry: a name (or ``*.domain``) and, optionally, a port."""

    name: str
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> HostPattern:
        """Parse ``name``, ``name:port``, ``[v6]``, ``[v6]:port`` or ``*.domain``."""
        text = entry.strip().lower()
        if ":" in text and not text.startswith("[") and text.count(":") > 1:
            text = f"[{text}]"  # a bare IPv6 address
        parsed = split_host(text)
        if parsed is None:
            raise ValueError(f"allowed host {entry!r} is not a host name, host:port or '*'")
        return cls(*parsed)

    def matches(self, name: str, port: int | None) -> bool:
        """Whether a request's ``Host`` name and port fit this entry."""
        if self.port is not None and port != self.port:
            return False
        if self.name.startswith("*."):
            return name.endswith(self.name[1:]) and len(name) > len(self.name) - 1
        return name == self.name


def default_allowed_hosts(settings: Settings) -> list[str]:
    """The loopback names plus ``settings.host`` when it is a name rather than a wildcard."""
    names = list(LOOPBACK_HOSTS)
    host = settings.host.strip().lower()
    if host not in WILDCARD_BINDS:
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if host not in names:
            names.append(host)
    return names


def allowed_host_patterns(settings: Settings) -> list[HostPattern] | None:
    """The parsed ``Host`` allowlist; ``None`` when the check is off (``*``).

    The default names (loopback, and ``host``) are always in it: a browser sends a loopback
    ``Host`` only for a page that really is on loopback, so they are safe to keep.
    """
    entries = settings.allowed_hosts or []
    if "*" in entries:
        return None
    names = default_allowed_hosts(settings)
    names += [e for e in entries if e.strip().lower() not in names]
    return [HostPattern.parse(e) for e in names]


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` of an ``Origin`` (or URL), lower-cased, default port dropped."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origin(scope: Scope, host: str) -> str | None:
    """The origin a request was addressed to: its scheme (``ws`` as ``http``) and ``Host``."""
    scheme = str(scope.get("scheme", "http"))
    return normalize_origin(f"{_HTTP_SCHEME.get(scheme, scheme)}://{host}")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class BrowserGuardMiddleware:
    """Refuse requests under a foreign ``Host`` and cross-origin state changes (403 JSON).

    Args:
        app: the wrapped ASGI app.
        allowed_hosts: ``Host`` patterns that may reach the API; ``None`` disables the check.
        cors_origins: origins allowed besides the request's own (``*``: every origin).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Sequence[HostPattern] | None,
        cors_origins: Iterable[str],
    ) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else list(allowed_hosts)
        origins = set(cors_origins)
        self.any_origin = "*" in origins
        self.origins = {o for o in (normalize_origin(x) for x in origins if x != "*") if o}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 403 for it."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reason = self.refusal(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        log.warning(
            "refused %s %s from %s: %s",
            scope.get("method", "WebSocket"),
            scope.get("path"),
            f"{client[0]}" if client else "?",
            reason,
        )
        await _forbid(scope, receive, send, reason)

    def refusal(self, scope: Scope) -> str | None:
        """None when the request may pass, else the 403 detail."""
        host = _header(scope, b"host") or ""
        path = str(scope.get("path", "")).rstrip("/") or "/"
        method = str(scope.get("method", "GET")).upper()
        if self.allowed_hosts is not None and not (
            scope["type"] == "http" and method in ("GET", "HEAD") and path in OPEN_PATHS
        ):
            parsed = split_host(host)
            if parsed is None or not any(p.matches(*parsed) for p in self.allowed_hosts):
                return (
                    f"Host {host!r} is not an allowed name for this server (a guard against "
                    "DNS rebinding): add it to TASKFLOW_ALLOWED_HOSTS (comma-separated; '*' "
                    "turns the check off), e.g. the public name a reverse proxy forwards"
                )
        if scope["type"] == "http" and method not in STATE_CHANGING:
            return None
        origin = _header(scope, b"origin")
        if origin is None:
            fetch_site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
            if fetch_site in ("cross-site", "same-site"):
                return (
                    f"a {fetch_site} browser request may not change state here: serve the page "
                    "from this server's origin, or send an Origin listed in TASKFLOW_CORS_ORIGINS"
                )
            return None
        if self.any_origin:
            return None
        normalized = normalize_origin(origin)
        if normalized is not None and (
            normalized == own_origin(scope, host) or normalized in self.origins
        ):
            return None
        return (
            f"cross-origin request refused: Origin {origin!r} is neither this server's own "
            "origin nor listed in TASKFLOW_CORS_ORIGINS (add it there to allow its pages)"
        )


async def _forbid(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    message = await receive()  # websocket.connect comes first
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": "forbidden"})


def warn_unsafe(settings: Settings) -> None:
    """Log a warning for browser settings that are unsafe without a token."""
    if settings.api_token:
        return
    if "*" in settings.cors_origins:
        log.warning(
            "TASKFLOW_CORS_ORIGINS='*' without TASKFLOW_API_TOKEN is unsafe: any web page the "
            "user opens may read and change this server's tasks; set a token or list origins"
        )
    if settings.allowed_hosts is not None and "*" in settings.allowed_hosts:
        log.warning(
            "TASKFLOW_ALLOWED_HOSTS='*' without TASKFLOW_API_TOKEN is unsafe: a web page can "
            "reach this server through DNS rebinding; set a token or list the host names"
        )
