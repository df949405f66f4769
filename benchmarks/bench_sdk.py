"""SDK benchmarks: what ``wait()`` and a PDF batch cost the client in bytes and memory (the
default), and the SDK's time overhead over raw httpx (``--overhead``).

A ``taskflow-server`` (API + one in-process worker) runs as its own process on 127.0.0.1, on
the Redis of ``--redis-url`` / ``TASKFLOW_BENCH_REDIS_URL`` under a fresh key prefix deleted at
the end, or on its embedded store when neither is set.

**Transfer and memory (default).** Each phase uses a sync :class:`Client` whose transport counts
every request and the bytes of every request and response body, with ``tracemalloc`` measuring
the client's peak Python memory over the phase (above what it held when the phase started):

* ``wait`` — ``--texts`` summarize tasks of 2 KB texts are submitted (not measured), then
  ``client.wait(tasks)`` is measured while the worker runs them. *Before*: polling with
  ``POST /api/v1/tasks/lookup`` (every unfinished task's full detail, input text included, each
  round): the path the SDK keeps for servers without the states route, selected here by
  telling the client the route is missing. *After*: rounds of ``POST /api/v1/tasks/states``
  and one lookup per task once it has finished.
* ``batch`` — ``--pdfs`` one-page PDFs of about 125 KB (a page of text and a scan-like image,
  the size of the sample gazettes; made with reportlab into a temporary folder, a fresh set per
  phase so that every file is uploaded) go through
  ``client.batch(folder=..., summarize=False)`` then ``run.wait()``, load, submit and wait all
  measured. *Before*: each entry holds its file's bytes for the life of the run, as the SDK used
  to, and polling uses the full lookup. *After*: entries hold paths and hashes; a file is read
  when it is uploaded; slim polling.

Before and after run one after the other on fresh tasks of the same size, after a warm-up. How
many polling rounds a wait makes depends on how fast the worker is, so the table also shows the
requests made.

**Overhead (``--overhead``, issue 6).** ``--tasks`` ``demo.noop`` tasks submitted then waited
for, ``--rounds`` times per client in rotating order: ``httpx.Client`` / ``httpx.AsyncClient``
submitting in chunks of 1,000 and polling ``GET /api/v1/tasks/{id}`` (20 ms growing by half up
to 0.5 s between rounds, 32 GETs in flight for async), against ``Client.submit_many`` +
``Client.wait`` and the same with ``AsyncClient``. Reports the median wall time of each and the
SDK's extra time relative to raw httpx (target <= 10 %).

Usage::

    python benchmarks/bench_sdk.py [--texts 5000] [--pdfs 500] [--redis-url URL] [--json]
    python benchmarks/bench_sdk.py --overhead [--tasks 5000] [--rounds 3] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bench_support import delete_prefix, start_server

from taskflow_sdk import AsyncClient, BatchRun, Client, TaskState
from taskflow_sdk._files import Upload

CHUNK = 1000
"""--overhead: items per raw ``POST /api/v1/tasks/batch`` (the server's limit is set to it)."""
FIRST_POLL = 0.02
"""--overhead: the raw clients' first pause between polling rounds."""
MAX_POLL = 0.5
"""--overhead: the raw clients' longest pause between polling rounds."""
CONCURRENCY = 32
"""--overhead: GETs the raw async client keeps in flight."""
PHASE_TIMEOUT = 300.0
"""Seconds a measured wait may take before the run fails (it never hangs)."""
TEXT_BYTES = 2048
"""The size of each text waited for."""
WORDS = (
    "The council approved the harbor plan on Monday after a long debate about costs, "
    "and residents asked for monthly reports on the works. "
)
"""The words the texts are made of."""


def _finished(state: str) -> bool:
    return TaskState(state).is_terminal


# --------------------------------------------------------------------------- counting


class _CountedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._meter.response_bytes += len(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


@dataclass
class Meter:
    """Requests per route and body bytes each way, counted below httpx's decoding."""

    requests: Counter[str] = field(default_factory=Counter)
    request_bytes: int = 0
    response_bytes: int = 0

    def reset(self) -> None:
        """Start counting from zero."""
        self.requests.clear()
        self.request_bytes = 0
        self.response_bytes = 0


def _route(path: str) -> str:
    """``/api/v1/blobs/<sha256>`` -> ``/blobs/{id}``: the route, not the resource."""
    parts = path.removeprefix("/api/v1").split("/")
    return "/".join("{id}" if len(part) >= 20 else part for part in parts)


class CountingTransport(httpx.BaseTransport):
    """An ``httpx.HTTPTransport`` that reports to a :class:`Meter`."""

    def __init__(self, meter: Meter) -> None:
        self._inner = httpx.HTTPTransport()
        self._meter = meter

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the real transport, counting on the way."""
        self._meter.requests[f"{request.method} {_route(request.url.path)}"] += 1
        self._meter.request_bytes += int(request.headers.get("content-length") or 0)
        response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CountedStream(response.stream, self._meter),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close the real transport."""
        self._inner.close()


@dataclass
class Figures:
    """One measured phase."""

    workload: str
    path: str
    requests: int
    request_bytes: int
    response_bytes: int
    peak_bytes: int
    retained_bytes: int
    seconds: float
    detail: dict[str, int]


def measured(meter: Meter, workload: str, path: str, body: Callable[[], object]) -> Figures:
    """Run ``body`` with the meter and ``tracemalloc``'s peak reset; its figures (what it
    returns is held while the memory is read, after a garbage collection)."""
    gc.collect()
    meter.reset()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    start = time.perf_counter()
    kept = body()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    del kept
    return Figures(
        workload,
        path,
        sum(meter.requests.values()),
        meter.request_bytes,
        meter.response_bytes,
        peak - base,
        current - base,
        elapsed,
        dict(meter.requests),
    )


# --------------------------------------------------------------------------- workloads


def texts(n: int, tag: str) -> list[str]:
    """``n`` distinct texts of :data:`TEXT_BYTES` bytes."""
    filler = WORDS * (TEXT_BYTES // len(WORDS) + 1)
    out = []
    for i in range(n):
        head = f"Text {i} of {tag}. "
        out.append((head + filler)[:TEXT_BYTES])
    return out


PLACEHOLDER = b"Issue #000000 of run xxxxxxxx"
"""The headline of the template PDF, replaced byte for byte to make each file distinct."""


def pdf_template() -> bytes:
    """A one-page PDF of about 125 KB, like a scanned gazette page: a headline
    (:data:`PLACEHOLDER`), 50 lines of text and a noise image. Its page is stored uncompressed,
    so the headline can be replaced by another of the same length without moving any offset."""
    import io

    from PIL import Image
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, pageCompression=0, invariant=1)
    page.setFont("Helvetica-Bold", 18)
    page.drawString(60, 780, PLACEHOLDER.decode())
    page.setFont("Helvetica", 10)
    for line in range(50):
        page.drawString(60, 750 - 13 * line, f"Line {line}: the council approved the harbor plan.")
    noise = Image.frombytes("L", (320, 300), os.urandom(320 * 300))
    page.drawImage(ImageReader(noise), 300, 60, width=200, height=180)
    page.showPage()
    page.save()
    data = out.getvalue()
    assert data.count(PLACEHOLDER) == 1
    return data


def make_pdfs(folder: Path, n: int, template: bytes) -> int:
    """``n`` distinct copies of ``template`` (their headlines numbered, with a tag fresh for
    this folder) in ``folder``; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    total = 0
    for i in range(n):
        headline = f"Issue #{i:06d} of run {tag}".encode()
        data = template.replace(PLACEHOLDER, headline)
        (folder / f"issue-{i:04d}.pdf").write_bytes(data)
        total += len(data)
    return total


def submit_texts(client: Client, n: int) -> list[Any]:
    """Submit ``n`` summarize tasks of fresh 2 KB texts; their (submit-answer) tasks."""
    items = [
        {"task_type": "summarize", "payload": {"content": t}} for t in texts(n, uuid.uuid4().hex)
    ]
    answer = client.submit_many(items)
    if answer.failed:
        raise RuntimeError(f"submit refused items: {answer.detail}")
    return answer.tasks


def wait_phase(client: Client, meter: Meter, n: int, slim: bool) -> Figures:
    """Submit ``n`` texts, then measure ``client.wait`` on them (slim or full polling)."""
    tasks = submit_texts(client, n)
    client._requests.has_states_route = slim
    path = "after: slim states + one lookup each" if slim else "before: full lookup polling"
    done: list[Any] = []

    def body() -> list[Any]:
        done.extend(client.wait(tasks, timeout=PHASE_TIMEOUT))
        return done

    figures = measured(meter, f"wait, {n:,} texts x 2 KB", path, body)
    client._requests.has_states_route = True
    if len(done) != n or not all(t.ok and t.content for t in done):
        raise RuntimeError("wait() did not return every task completed with its detail")
    return figures


def batch_phase(client: Client, meter: Meter, folder: Path, n: int, slim: bool) -> Figures:
    """Measure a PDF batch over ``folder`` (load, submit, wait): slim, or as the SDK was."""

    def before() -> BatchRun:
        client._requests.has_states_route = False
        run = BatchRun(client._driver, folder=str(folder), summarize=False)
        run.core.load()
        for entry in run.core.entries:  # the bytes of every file, held by the run
            up = entry.upload
            assert up is not None and up.path is not None
            entry.upload = Upload(up.filename, up.sha256, up.size, data=up.path.read_bytes())
        run.submit()
        run.wait(timeout=PHASE_TIMEOUT, progress=False)
        return check(run)

    def after() -> BatchRun:
        run = client.batch(folder=str(folder), summarize=False)
        run.wait(timeout=PHASE_TIMEOUT, progress=False)
        client.batch_runs.clear()  # held by the caller only, as in ``before``
        return check(run)

    def check(run: BatchRun) -> BatchRun:
        if run.counts() != {"COMPLETED": n} or run.new_tasks != n:
            raise RuntimeError(f"the batch ended {run.counts()} ({run.new_tasks} new)")
        return run

    path = "after: paths + slim polling" if slim else "before: bytes held + full lookup polling"
    try:
        return measured(meter, f"batch, {n:,} PDFs", path, after if slim else before)
    finally:
        client._requests.has_states_route = True


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


def table(rows: list[Figures]) -> str:
    """The figures as a markdown table, with an after/before line per workload."""
    out = [
        "| workload | path | requests | received | sent | client memory peak | held after "
        "| wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        out.append(
            f"| {row.workload} | {row.path} | {row.requests:,} | {_size(row.response_bytes)} | "
            f"{_size(row.request_bytes)} | {_size(row.peak_bytes)} | "
            f"{_size(row.retained_bytes)} | {row.seconds:.1f} |"
        )
    for a, b in zip(rows[::2], rows[1::2], strict=True):
        ratios = (
            b.requests / a.requests,
            b.response_bytes / a.response_bytes,
            b.request_bytes / a.request_bytes,
            b.peak_bytes / a.peak_bytes,
            b.retained_bytes / a.retained_bytes,
            b.seconds / a.seconds,
        )
        cells = " | ".join(f"{r:.2f}" for r in ratios)
        out.append(f"| {a.workload} | after / before | {cells} |")
    return "\n".join(out)


def transfer_main(args: argparse.Namespace, url: str) -> int:
    """The default benchmark; prints the table (or JSON)."""
    meter = Meter()
    http = httpx.Client(transport=CountingTransport(meter), timeout=60)
    rows: list[Figures] = []
    with (
        tempfile.TemporaryDirectory(prefix="taskflow-bench-sdk-") as tmp,
        Client(url, http_client=http) as client,
    ):
        root = Path(tmp)
        template = pdf_template()
        for name in ("warm", "before", "after"):
            make_pdfs(root / name, 10 if name == "warm" else args.pdfs, template)
        client.wait(submit_texts(client, 200), timeout=PHASE_TIMEOUT)  # warm-up
        client.batch(folder=str(root / "warm"), summarize=False).wait(progress=False)
        tracemalloc.start()
        try:
            for slim in (False, True):
                rows.append(wait_phase(client, meter, args.texts, slim))
                print(f"{rows[-1].workload}, {rows[-1].path}: done", file=sys.stderr)
            for slim in (False, True):
                folder = root / ("after" if slim else "before")
                rows.append(batch_phase(client, meter, folder, args.pdfs, slim))
                print(f"{rows[-1].workload}, {rows[-1].path}: done", file=sys.stderr)
        finally:
            tracemalloc.stop()
    http.close()
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        print(
            f"{args.texts:,} texts of 2 KB; {args.pdfs:,} one-page PDFs of "
            f"{_size(len(template))} (one sync Client; received/sent: HTTP body bytes; "
            "memory: tracemalloc, above what the client held when the phase started: the peak, "
            "and what it still held at the end, i.e. the results)\n"
        )
        print(table(rows))
        for row in rows:
            routes = ", ".join(f"{k} x{v:,}" for k, v in sorted(row.detail.items()))
            print(f"\n{row.workload}, {row.path}: {routes}", end="")
        print()
    return 0


# --------------------------------------------------------------------------- overhead


def _items(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"task_type": "demo.noop", "payload": {"i": i}, "idempotency_key": f"{tag}-{i}"}
        for i in range(n)
    ]


def raw_sync(url: str, n: int) -> float:
    """Submit and wait with plain ``httpx.Client`` calls; returns wall seconds."""
    items = _items(n, uuid.uuid4().hex)
    with httpx.Client(base_url=url, timeout=30) as http:
        start = time.perf_counter()
        ids: list[str] = []
        for s in range(0, n, CHUNK):
            answer = http.post("/api/v1/tasks/batch", json={"tasks": items[s : s + CHUNK]})
            answer.raise_for_status()
            ids += [item["task_id"] for item in answer.json()["items"]]
        pending = ids
        pause = FIRST_POLL
        while pending:
            still = []
            for tid in pending:
                r = http.get(f"/api/v1/tasks/{tid}")
                r.raise_for_status()
                if not _finished(r.json()["state"]):
                    still.append(tid)
            pending = still
            if pending:
                time.sleep(pause)
                pause = min(pause * 1.5, MAX_POLL)
        return time.perf_counter() - start


def sdk_sync(url: str, n: int) -> float:
    """Submit and wait with :class:`Client`; returns wall seconds."""
    items = _items(n, uuid.uuid4().hex)
    with Client(url) as client:
        start = time.perf_counter()
        submitted = client.submit_many(items)
        done = client.wait(submitted.tasks)
        elapsed = time.perf_counter() - start
    assert len(done) == n and all(t.ok for t in done)
    return elapsed


async def _raw_async(url: str, n: int) -> float:
    items = _items(n, uuid.uuid4().hex)
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        start = time.perf_counter()
        ids: list[str] = []
        for s in range(0, n, CHUNK):
            answer = await http.post("/api/v1/tasks/batch", json={"tasks": items[s : s + CHUNK]})
            answer.raise_for_status()
            ids += [item["task_id"] for item in answer.json()["items"]]

        async def unfinished(tid: str) -> bool:
            async with limit:
                r = await http.get(f"/api/v1/tasks/{tid}")
            r.raise_for_status()
            return not _finished(r.json()["state"])

        pending = ids
        pause = FIRST_POLL
        while pending:
            flags = await asyncio.gather(*(unfinished(t) for t in pending))
            pending = [t for t, busy in zip(pending, flags, strict=True) if busy]
            if pending:
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, MAX_POLL)
        return time.perf_counter() - start


async def _sdk_async(url: str, n: int) -> float:
    items = _items(n, uuid.uuid4().hex)
    async with AsyncClient(url) as client:
        start = time.perf_counter()
        submitted = await client.submit_many(items)
        done = await client.wait(submitted.tasks)
        elapsed = time.perf_counter() - start
    assert len(done) == n and all(t.ok for t in done)
    return elapsed


def raw_async(url: str, n: int) -> float:
    """Submit and wait with plain ``httpx.AsyncClient`` calls; returns wall seconds."""
    return asyncio.run(_raw_async(url, n))


def sdk_async(url: str, n: int) -> float:
    """Submit and wait with :class:`AsyncClient`; returns wall seconds."""
    return asyncio.run(_sdk_async(url, n))


RUNNERS: dict[str, Callable[[str, int], float]] = {
    "raw-sync": raw_sync,
    "sdk-sync": sdk_sync,
    "raw-async": raw_async,
    "sdk-async": sdk_async,
}


def overhead_main(args: argparse.Namespace, url: str) -> int:
    """The overhead benchmark; exit 0 when both SDK clients are within 10 % of raw httpx."""
    times: dict[str, list[float]] = {name: [] for name in RUNNERS}
    names = list(RUNNERS)
    raw_sync(url, min(500, args.tasks))  # warm-up: connections, scripts, worker
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(RUNNERS[name](url, args.tasks))
            print(f"round {r + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    median = {name: statistics.median(values) for name, values in times.items()}
    overhead = {
        "sync": median["sdk-sync"] / median["raw-sync"] - 1.0,
        "async": median["sdk-async"] / median["raw-async"] - 1.0,
    }
    figures = {
        "tasks": args.tasks,
        "rounds": args.rounds,
        "seconds": times,
        "median_s": median,
        "overhead": overhead,
        "target": 0.10,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{args.tasks} demo.noop tasks, submit + wait, median of {args.rounds} rounds")
        for name in RUNNERS:
            print(f"  {name:<10} {median[name]:7.2f} s")
        for mode, extra in overhead.items():
            print(f"  SDK overhead ({mode}): {extra:+.1%} (target <= +10%)")
    return 0 if max(overhead.values()) <= 0.10 else 1


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Start the server, run the chosen benchmark, stop the server and clean its keys."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TASKFLOW_BENCH_REDIS_URL"),
        help="a Redis for the server (default TASKFLOW_BENCH_REDIS_URL, else the embedded store)",
    )
    parser.add_argument("--texts", type=int, default=5000, help="texts waited for")
    parser.add_argument("--pdfs", type=int, default=500, help="PDFs in the batch")
    parser.add_argument("--overhead", action="store_true", help="the SDK time-overhead benchmark")
    parser.add_argument("--tasks", type=int, default=5000, help="--overhead: tasks per round")
    parser.add_argument("--rounds", type=int, default=3, help="--overhead: rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    prefix = f"tfbench{uuid.uuid4().hex[:8]}"
    env: dict[str, str | None] = {"TASKFLOW_MAX_BATCH_ITEMS": str(CHUNK)}
    if args.redis_url:
        server_args = ["--redis-url", args.redis_url, "--workers", "1"]
        env["TASKFLOW_KEY_PREFIX"] = prefix
    else:
        server_args = ["--workers", "1"]
        env["TASKFLOW_REDIS_URL"] = None
    proc, url = start_server(*server_args, env=env, wait_for_worker=True)
    try:
        return overhead_main(args, url) if args.overhead else transfer_main(args, url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if args.redis_url:
            delete_prefix(args.redis_url, prefix)


if __name__ == "__main__":
    sys.exit(main())
