"""Bearer-token authentication for ``/api`` and ``/ws``.

With ``TASKFLOW_API_TOKEN`` set, every ``/api`` route requires ``Authorization: Bearer <token>``;
event streams and WebSockets (which browsers open without custom headers) also accept
``?token=<token>``. Health routes stay open.

A WebSocket client can keep the token out of the URL (and so out of access logs and browser
history) by offering the subprotocol pair ``bearer, <token>``: in a browser
``new WebSocket(url, ["bearer", token])``, with the ``websockets`` library
``connect(url, subprotocols=["bearer", token])``. The server answers with
``Sec-WebSocket-Protocol: bearer`` (never the token), as the WebSocket spec requires when the
client offers subprotocols. The token must then consist of HTTP token characters (letters,
digits and ``!#$%&'*+-.^_`|~``), which random URL-safe tokens do.

Tokens are compared in constant time. A refusal is a 401 ``{"detail": ...}`` with
``WWW-Authenticate: Bearer`` and a message that says what to send.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from taskflow_server.api.deps import get_context

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerToken",
    description="The server's TASKFLOW_API_TOKEN (required only when the server sets one).",
)

_MISSING = (
    "missing bearer token: this server requires 'Authorization: Bearer <token>' "
    "(the value of TASKFLOW_API_TOKEN)"
)
_MISSING_STREAM = (
    "missing bearer token: send 'Authorization: Bearer <token>' or add '?token=<token>' "
    "(the value of TASKFLOW_API_TOKEN)"
)
_WRONG = "invalid bearer token: it does not match the server's TASKFLOW_API_TOKEN"


def token_matches(expected: str, presented: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def unauthorized(detail: str) -> HTTPException:
    """The 401 every refusal raises."""
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def check_token(
    expected: str | None,
    header_token: str | None,
    query_token: str | None = None,
    *,
    query_allowed: bool = False,
) -> str | None:
    """None when the request may pass, else the reason it may not.

    A blank ``expected`` means no token is configured (settings strip it to ``None``); a blank
    presented token (``?token=%20%20%20``) counts as missing and never matches.
    """
    if not expected or not expected.strip():
        return None
    presented = header_token
    if presented is None and query_allowed:
        presented = query_token
    if presented is None or not presented.strip():
        return _MISSING_STREAM if query_allowed else _MISSING
    return None if token_matches(expected, presented) else _WRONG


def bearer_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_token(
    conn: HTTPConnection,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """Dependency of every ``/api`` route: the bearer token when the server has one."""
    expected = get_context(conn).settings.api_token
    reason = check_token(expected, credentials.credentials if credentials else None)
    if reason is not None:
        raise unauthorized(reason)


async def require_stream_token(
    conn: HTTPConnection,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    token: Annotated[
        str | None,
        Query(description="The API token, for clients that cannot send headers (EventSource)."),
    ] = None,
) -> None:
    """Dependency of event-stream routes: the bearer token from the header or ``?token=``."""
    expected = get_context(conn).settings.api_token
    header = credentials.credentials if credentials else None
    reason = check_token(expected, header, token, query_allowed=True)
    if reason is not None:
        raise unauthorized(reason)


WS_BEARER_PROTOCOL = "bearer"
"""The subprotocol a WebSocket client offers, followed by the token, to authenticate."""


def offered_subprotocols(conn: HTTPConnection) -> list[str]:
    """The subprotocols a WebSocket client offered (``Sec-WebSocket-Protocol``), in order."""
    offered = conn.scope.get("subprotocols")
    if isinstance(offered, list | tuple):
        return [str(p).strip() for p in offered]
    values = conn.headers.getlist("sec-websocket-protocol")
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def subprotocol_token(conn: HTTPConnection) -> str | None:
    """The token offered as ``bearer, <token>`` subprotocols, else None."""
    offered = offered_subprotocols(conn)
    for i, name in enumerate(offered[:-1]):
        if name.lower() == WS_BEARER_PROTOCOL:
            return offered[i + 1] or None
    return None


def websocket_subprotocol(conn: HTTPConnection) -> str | None:
    """The subprotocol to accept: ``bearer`` when the client offered it, else None."""
    offered = offered_subprotocols(conn)
    return WS_BEARER_PROTOCOL if any(p.lower() == WS_BEARER_PROTOCOL for p in offered) else None


def websocket_refusal(conn: HTTPConnection) -> str | None:
    """For a WebSocket handshake: None when it may proceed, else why not.

    The token may come from ``Authorization: Bearer``, the ``bearer, <token>`` subprotocol
    pair, or ``?token=`` (in that order).
    """
    expected = get_context(conn).settings.api_token
    header = bearer_from_header(conn.headers.get("authorization"))
    if header is None:
        header = subprotocol_token(conn)
    return check_token(expected, header, conn.query_params.get("token"), query_allowed=True)
