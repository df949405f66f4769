"""Slow and numerous clients against a real ``taskflow-server`` process, on loopback sockets.

* slowloris: connections that send their request head a few bytes a second are closed (408)
  within ``header_timeout`` plus a margin, while a normal client is served meanwhile;
* the connection cap: a connection over ``max_connections`` is answered 503 and closed at once,
  and room comes back when others leave;
* event replay: a dozen streams replaying 20,000 events from ``last_event_id=0`` each get every
  event once, in order, while ``/live`` stays within a ratio of its idle latency (no absolute
  time bound). The replaying clients run in a process of their own, so their parsing does not
  slow down the process that times ``/live``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import redis as redis_sync
from e2e_support import RedisServer, StartServer, worker_env

from support import eventually
from taskflow_server.store.keys import Keys

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HEAD_START = b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


def _env(redis: RedisServer, prefix: str, **extra: str) -> dict[str, str]:
    return worker_env(redis.url, prefix, TASKFLOW_WORKERS="0", **extra)


async def _slow_head(port: int, every: float, give_up: float) -> tuple[float, bytes]:
    """Send a request head one byte every ``every`` s; returns (seconds until closed, reply)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    reply = b""
    try:
        writer.write(HEAD_START)
        await writer.drain()
        while time.monotonic() - start < give_up:
            try:
                chunk = await asyncio.wait_for(reader.read(4096), every)
            except TimeoutError:
                try:
                    writer.write(b"w")  # one more byte of a header value, never finished
                    await writer.drain()
                except (ConnectionError, OSError):
                    break
                continue
            if not chunk:
                break
            reply += chunk
        return time.monotonic() - start, reply
    except (ConnectionError, OSError):
        return time.monotonic() - start, reply
    finally:
        writer.close()


async def _live_ok(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        return (await client.get("/live")).status_code == 200


async def test_slowloris_heads_are_timed_out(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    """20 connections dribbling a head are closed within header_timeout + 2 s; /live serves."""
    header_timeout = 1.0
    server = start_server(
        _env(redis_server, f"slow{uuid.uuid4().hex[:8]}", TASKFLOW_HEADER_TIMEOUT="1"),
        wait="live",
    )
    port = int(server.url.rsplit(":", 1)[1])
    slow = [asyncio.create_task(_slow_head(port, 0.3, give_up=8.0)) for _ in range(20)]
    await asyncio.sleep(0.2)
    served = [await _live_ok(server.url) for _ in range(5)]
    results = await asyncio.gather(*slow)
    assert all(served), "a normal client was not served while slow heads were open"
    for took, reply in results:
        assert took <= header_timeout + 2.0, f"a slow head stayed open {took:.1f} s"
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:80]
    # An idle connection that never sends a byte is closed too.
    with socket.create_connection(("127.0.0.1", port), timeout=header_timeout + 3) as idle:
        start = time.monotonic()
        while idle.recv(4096):
            pass
        assert time.monotonic() - start <= header_timeout + 2.0
    assert await _live_ok(server.url)


async def test_connections_over_the_cap_are_refused(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    """With max_connections=20 held by half-sent heads, a 21st connection gets 503 at once."""
    cap = 20
    server = start_server(
        _env(
            redis_server,
            f"cap{uuid.uuid4().hex[:8]}",
            TASKFLOW_HEADER_TIMEOUT="30",
            TASKFLOW_MAX_CONNECTIONS=str(cap),
        ),
        wait="live",
    )
    port = int(server.url.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    try:
        for _ in range(cap):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(HEAD_START)
            held.append(s)
        await asyncio.sleep(0.5)  # let the server accept them all
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            start = time.monotonic()
            reply = b""
            while chunk := extra.recv(4096):
                reply += chunk
            took = time.monotonic() - start
        assert reply.startswith(b"HTTP/1.1 503"), reply[:80]
        assert b"retry-after" in reply.lower()
        assert took < 2.0, f"the connection over the cap stayed open {took:.1f} s"
    finally:
        for s in held:
            s.close()
    # Room comes back once the held connections are gone.
    await eventually(
        lambda: _live_ok(server.url), "the server to serve again after the cap", 5, every=0.1
    )


# ----------------------------------------------------------------------------- event replay

REPLAY_EVENTS = 20_000
REPLAYS = 12
LOADED_RATIO = 40.0
"""How many times its idle latency ``/live`` may take (median) while the replays run."""

_READER = r"""
import asyncio, json, sys

async def one(port, expected):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /api/v1/events?last_event_id=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    ids, last, ordered = 0, (0, 0), True
    buf = b""
    while ids < expected and status == 200:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            if line.startswith(b"id: "):
                ms, _, seq = line[4:].strip().partition(b"-")
                cur = (int(ms), int(seq or 0))
                ordered = ordered and cur > last
                last = cur
                ids += 1
    writer.close()
    return {"status": status, "count": ids, "ordered": ordered}

async def main():
    port, n, expected = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    results = await asyncio.gather(*(one(port, expected) for _ in range(n)))
    print(json.dumps(results), flush=True)

asyncio.run(main())
"""


def _fill_event_log(redis_url: str, prefix: str, n: int) -> None:
    """Append ``n`` task events straight to the event log."""
    client = redis_sync.Redis.from_url(redis_url)
    key = Keys(prefix).events
    try:
        for start in range(0, n, 2000):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(n, start + 2000)):
                fields = {"type": "task_progress", "task_id": f"t{i}", "state": "ACTIVE"}
                pipe.xadd(key, fields, maxlen=None)  # type: ignore[arg-type]
            pipe.execute()
    finally:
        client.close()


def _live_latencies(url: str, count: int) -> list[float]:
    """Seconds each of ``count`` ``GET /live`` took, on one keep-alive connection."""
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for _ in range(count):
            start = time.perf_counter()
            assert client.get("/live").status_code == 200
            out.append(time.perf_counter() - start)
            time.sleep(0.01)
    return out


async def test_event_replays_do_not_freeze_the_server(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    """12 replays of 20,000 events: each gets them all in order; /live stays responsive."""
    prefix = f"replay{uuid.uuid4().hex[:8]}"
    _fill_event_log(redis_server.url, prefix, REPLAY_EVENTS)
    server = start_server(
        _env(
            redis_server,
            prefix,
            TASKFLOW_REPLAY_MAX_CONCURRENT="2",
            TASKFLOW_REPLAY_WAIT_SECONDS="120",
        ),
        wait="live",
    )
    port = int(server.url.rsplit(":", 1)[1])
    await asyncio.to_thread(_live_latencies, server.url, 10)  # warm up
    idle = statistics.median(await asyncio.to_thread(_live_latencies, server.url, 40))

    reader = _start_readers(port)
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "ready"
        reader.stdin.write("go\n")
        reader.stdin.flush()
        await asyncio.sleep(0.3)  # the replays are under way
        probe = asyncio.create_task(asyncio.to_thread(_probe_until_done, server.url, reader))
        out, _ = await asyncio.to_thread(reader.communicate, timeout=150)
        loaded = await probe
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    results = json.loads(out.strip().splitlines()[-1])
    assert len(results) == REPLAYS
    for r in results:
        assert r == {"status": 200, "count": REPLAY_EVENTS, "ordered": True}, r
    assert len(loaded) >= 5, "too few /live probes ran during the replays"
    median = statistics.median(loaded)
    print(
        f"/live idle median {idle * 1000:.2f} ms; during replays median {median * 1000:.2f} ms, "
        f"max {max(loaded) * 1000:.1f} ms over {len(loaded)} probes"
    )
    assert median <= LOADED_RATIO * idle, (
        f"/live took {median * 1000:.1f} ms (median) during the replays, "
        f"{median / idle:.0f}x its idle {idle * 1000:.2f} ms"
    )


def _start_readers(port: int) -> subprocess.Popen[str]:
    """The process that runs :data:`REPLAYS` replays once it reads a line on stdin."""
    return subprocess.Popen(
        [sys.executable, "-c", _READER, str(port), str(REPLAYS), str(REPLAY_EVENTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _probe_until_done(url: str, proc: subprocess.Popen[str]) -> list[float]:
    """``/live`` latencies measured while ``proc`` runs."""
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=120.0) as client:
        while proc.poll() is None:
            start = time.perf_counter()
            assert client.get("/live").status_code == 200
            out.append(time.perf_counter() - start)
            time.sleep(0.01)
    return out
