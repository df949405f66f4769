"""Small networking helpers shared by the servers this package starts."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it).

    The port is released before it is returned, so another process could take it first; the
    servers here bind it at once, which is good enough for tests, demos and the embedded store.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
