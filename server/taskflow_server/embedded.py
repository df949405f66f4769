"""The embedded store: an in-process Redis (fakeredis with Lua) served over RESP on loopback.

With no ``TASKFLOW_REDIS_URL``, ``taskflow-server`` starts one of these so a first-time user
needs no Redis at all. It speaks the real protocol on a real port, so the same Lua scripts and
the same worker code run on it, and ``taskflow-worker --redis-url redis://127.0.0.1:PORT`` can
join it from another process. It keeps nothing on disk: stopping the server loses the queue.
"""

from __future__ import annotations

import logging
import socket
import threading

import fakeredis

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A fakeredis server thread on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._server: fakeredis.TcpFakeServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The redis:// URL clients connect to."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> str:
        """Start serving in a daemon thread; returns the URL."""
        fakeredis.TcpFakeServer.allow_reuse_address = True
        self._server = fakeredis.TcpFakeServer((self.host, self.port), server_type="redis")
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="embedded-redis", daemon=True
        )
        self._thread.start()
        log.info("embedded store (in-memory, not persisted) listening at %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
