"""Helpers for the API integration tests: a live server, an SSE decoder, a tiny PDF, polling.

:func:`serve` runs ``create_app`` under :class:`ApiServer` in a thread on a free loopback port, with
its own key prefix in the test Redis database, and deletes its keys when it stops.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from support import delete_prefix, make_settings, serve_app
from taskflow_server.api.app import ApiServer, create_app
from taskflow_server.config import Settings

TOKEN = "s3cret-test-token"


@dataclass
class LiveApi:
    """One running server: its URL, settings and app."""

    url: str
    settings: Settings
    app: FastAPI
    server: ApiServer

    @property
    def ws_url(self) -> str:
        """The ``ws://`` base URL."""
        return "ws" + self.url[len("http") :]

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """An async client on this server; ``token`` defaults to the server's own."""
        headers = dict(kwargs.pop("headers", {}))
        use = token if token is not None else self.settings.api_token
        if use:
            headers["Authorization"] = f"Bearer {use}"
        kwargs.setdefault("timeout", 10.0)
        return httpx.AsyncClient(base_url=self.url, headers=headers, **kwargs)


@contextlib.contextmanager
def serve(test_redis_url: str, **overrides: Any) -> Iterator[LiveApi]:
    """Run the API in a thread until the block ends; its keys are deleted afterwards."""
    redis_url = overrides.pop("redis_url", test_redis_url)
    prefix = overrides.pop("key_prefix", f"tfapi{uuid.uuid4().hex[:10]}")
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, **overrides)
    app = create_app(settings)
    try:
        with serve_app(app, name="api") as (url, server):
            yield LiveApi(url, settings, app, server)
    finally:
        delete_prefix(redis_url, prefix)


# --------------------------------------------------------------------------- SSE helpers


@dataclass
class Frame:
    """One SSE frame (or comment)."""

    data: str | None = None
    id: str | None = None
    event: str | None = None
    retry: str | None = None
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The ``data`` as JSON."""
        import json

        assert self.data is not None
        return json.loads(self.data)


async def sse_frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """Decode an event stream into frames; comments come out as ``Frame(comment=...)``."""
    current: dict[str, str] = {}
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data or current:
                yield Frame(
                    data="\n".join(data) if data else None,
                    id=current.get("id"),
                    event=current.get("event"),
                    retry=current.get("retry"),
                    fields=current,
                )
            current, data = {}, []
            continue
        if line.startswith(":"):
            yield Frame(comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        else:
            current[name] = value


async def data_frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """Only the frames that carry ``data``."""
    async for frame in sse_frames(response):
        if frame.data is not None:
            yield frame


def minimal_pdf(text: str = "Hello") -> bytes:
    """A tiny valid one-page PDF (built by hand, no dependency)."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)
