"""Hostile input against a real ``taskflow-server`` process with auth on.

* schemathesis over every operation (event streams aside: they never end): no 5xx, statuses as
  documented;
* oversized bodies and uploads: 413 (declared length or chunked);
* hostile PDFs (truncated, encrypted, a ZIP named .pdf, a Flate bomb, a text bomb, 2,000 pages,
  a 20,000 x 20,000 pt page, not PDFs at all): each ends as a clear 4xx at upload or a DLQ entry
  with ``invalid_input``; the worker process never dies, and ordinary tasks submitted alongside
  are never delayed more than the PDF time limit;
* every ``/api`` route and ``/ws/stats`` with a missing or wrong token is 401; ``?token=`` is
  accepted only where browsers need it (event streams and the WebSocket).
"""

from __future__ import annotations

import asyncio
import io
import zipfile
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from e2e_support import (
    RedisServer,
    RssSampler,
    Spawner,
    StartServer,
    new_task,
    open_queue,
    worker_env,
)
from hypothesis import HealthCheck, given, settings
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TOKEN = "e2e-hostile-token"
MAX_BODY = 64 * 1024
MAX_UPLOAD = 4 * 1024 * 1024
PDF_TIME_LIMIT = 8.0
JSON = {"content-type": "application/json"}
OPEN_PATHS = {"/", "/live", "/ready", "/health"}


def _env(redis: RedisServer, prefix: str, **extra: str) -> dict[str, str]:
    return worker_env(
        redis.url,
        prefix,
        TASKFLOW_API_TOKEN=TOKEN,
        TASKFLOW_WORKERS="0",
        TASKFLOW_MAX_BODY_BYTES=str(MAX_BODY),
        TASKFLOW_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        TASKFLOW_PDF_TIME_LIMIT=str(PDF_TIME_LIMIT),
        TASKFLOW_CONCURRENCY="10",
        TASKFLOW_LEASE_SECONDS="10",
        **extra,
    )


# ------------------------------------------------------------------------------ PDF makers


def minimal_pdf(
    pages: int = 1, size: tuple[int, int] = (612, 792), content: bytes = b"", flate: bool = False
) -> bytes:
    """A hand-built PDF: ``pages`` pages of ``size`` points sharing one content stream."""
    stream = zlib.compress(content, 9) if flate else content
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages))
    font = 4 + pages
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Length %d%s >>\nstream\n" % (len(stream), b" /Filter /FlateDecode" if flate else b"")
        + stream
        + b"\nendstream",
    ]
    objs += [
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] /Contents 3 0 R "
        f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
    ] * pages
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objs, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    out.writelines(b"%010d 00000 n \n" % off for off in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objs) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def reportlab_pdf(encrypt: str | None = None) -> bytes:
    buf = io.BytesIO()
    page = canvas.Canvas(buf, pagesize=A4, encrypt=encrypt)
    page.setFont("Helvetica-Bold", 18)
    page.drawString(60, 780, "Harbour authority approves new ferry timetable")
    page.setFont("Helvetica", 10)
    for i in range(30):
        page.drawString(60, 750 - 14 * i, f"Line {i} of the article about the ferry timetable.")
    page.showPage()
    page.save()
    return buf.getvalue()


def hostile_pdfs() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected): ``400`` at upload, or ``dlq`` (invalid_input) after it."""
    text = b"BT /F1 12 Tf 72 720 Td (x) Tj ET\n"
    good = reportlab_pdf()
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("page.pdf", b"\0" * 50_000_000)
    text_bomb = b"".join(
        b"BT /F1 6 Tf 20 %d Td (%s) Tj ET\n" % (20 + (i % 120) * 6, b"lorem ipsum dolor " * 30)
        for i in range(60_000)
    )
    return {
        "not_a_pdf.pdf": (b"<html><body>hello</body></html>", "400"),
        "empty.pdf": (b"", "400"),
        "zip_bomb_renamed.pdf": (zipped.getvalue(), "400"),
        "truncated.pdf": (good[: len(good) // 2], "dlq"),
        "encrypted.pdf": (reportlab_pdf(encrypt="secret"), "dlq"),
        "garbage_after_header.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 64, "dlq"),
        "pages_2000.pdf": (minimal_pdf(2000, content=text), "dlq"),
        "page_20000pt.pdf": (minimal_pdf(1, (20_000, 20_000), text), "dlq"),
        # ~30 MB of page text in a ~0.2 MB file: stopped by the PDF time limit.
        "text_bomb.pdf": (minimal_pdf(1, content=text_bomb, flate=True), "dlq"),
    }


# ----------------------------------------------------------------------------------- tests


def _operations(schema: schemathesis.BaseSchema) -> list[tuple[str, str, GenerationMode]]:
    spec: dict[str, Any] = schema.raw_schema
    out = []
    for path, ops in spec["paths"].items():
        if path.endswith("/stream") or path == "/api/v1/events":
            continue  # streams never end; their auth is checked below
        for method, op in ops.items():
            out.append((method.upper(), path, GenerationMode.POSITIVE))
            if op.get("parameters") or op.get("requestBody"):
                out.append((method.upper(), path, GenerationMode.NEGATIVE))
    return out


async def test_schemathesis_with_auth_on(
    redis_server: RedisServer, start_server: StartServer, figures: dict[str, Any]
) -> None:
    server = start_server(_env(redis_server, "fuzz"))  # API only: nothing runs fuzzed tasks
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    auth = server.headers()
    failures: list[str] = []
    calls = 0

    def run_operation(method: str, path: str, mode: GenerationMode) -> None:
        nonlocal calls
        operation = schema[path][method]

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(
                headers=auth,
                checks=[not_a_server_error, status_code_conformance, content_type_conformance],
                timeout=10,
            )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{method} {path} ({mode.value}): {str(exc)[:600]}")

    operations = _operations(schema)
    for method, path, mode in operations:
        await asyncio.to_thread(run_operation, method, path, mode)
    assert server.proc.poll() is None
    figures.update(operations=len(operations), requests=calls, failures=len(failures))
    assert not failures, "\n\n".join(failures)


async def test_oversized_bodies_are_413(
    redis_server: RedisServer, start_server: StartServer
) -> None:
    server = start_server(_env(redis_server, "big"))
    big_json = b'{"task_type": "demo.noop", "payload": {"x": "' + b"a" * (MAX_BODY * 2) + b'"}}'

    async def chunked(data: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    async with server.client(timeout=30) as api:
        for path in ("/api/v1/tasks", "/api/v1/tasks/batch", "/api/v1/tasks/summarize"):
            resp = await api.post(
                path, content=big_json, headers={"content-type": "application/json"}
            )
            assert resp.status_code == 413, (path, resp.status_code, resp.text[:200])
            assert "TASKFLOW_MAX_BODY_BYTES" in resp.json()["detail"]
        resp = await api.post(
            "/api/v1/tasks",
            content=chunked(big_json),
            headers=JSON,
        )
        assert resp.status_code == 413, resp.text[:200]
        huge = b"%PDF-1.4\n" + b"0" * (MAX_UPLOAD + 1024 * 1024)
        resp = await api.post(
            "/api/v1/tasks/pdfxtract", files={"file": ("huge.pdf", huge, "application/pdf")}
        )
        assert resp.status_code == 413, resp.text[:200]
        # Just over the limit, inside the multipart allowance: the route's own check answers.
        near = b"%PDF-1.4\n" + b"0" * (MAX_UPLOAD + 1)
        resp = await api.post(
            "/api/v1/tasks/pdfxtract", files={"file": ("near.pdf", near, "application/pdf")}
        )
        assert resp.status_code == 413, resp.text[:200]
        batch = {"tasks": [{"task_type": "demo.noop", "payload": {}}] * 6000}
        resp = await api.post("/api/v1/tasks/batch", json=batch)
        assert resp.status_code in (413, 422), resp.text[:200]
        assert (await api.get("/health")).status_code == 200
    assert server.proc.poll() is None


async def test_hostile_pdfs_end_clearly_and_delay_nobody(
    redis_server: RedisServer,
    spawn: Spawner,
    start_server: StartServer,
    rss: RssSampler,
    figures: dict[str, Any],
) -> None:
    prefix = "hostile"
    env = _env(redis_server, prefix)
    server = start_server(env)
    worker = spawn("taskflow-worker", env=env)
    rss.watch("worker_with_pdf_pool", worker.pid)
    outcomes: dict[str, str] = {}
    pdf_tasks: dict[str, str] = {}
    async with server.client(timeout=60) as api, open_queue(redis_server.url, prefix) as queue:
        normal: list[str] = []
        for name, (data, expected) in hostile_pdfs().items():
            resp = await api.post(
                "/api/v1/tasks/pdfxtract", files={"file": (name, data, "application/pdf")}
            )
            if expected == "400":
                assert resp.status_code == 400, (name, resp.status_code, resp.text[:300])
                assert "not a PDF" in resp.json()["detail"]
                outcomes[name] = "400"
            else:
                assert resp.status_code == 201, (name, resp.status_code, resp.text[:300])
                pdf_tasks[name] = resp.json()["task_id"]
            # Ordinary work interleaved with the hostile files.
            normal += [
                s.task_id
                for s in await queue.submit_many(
                    [new_task("demo.sleep", {"seconds": 0.2}) for _ in range(5)]
                )
            ]
        resp = await api.post(
            "/api/v1/tasks/pdfxtract",
            files={"file": ("good.pdf", reportlab_pdf(), "application/pdf")},
        )
        assert resp.status_code == 201, resp.text
        good_pdf = resp.json()["task_id"]

        async def settled() -> bool:
            records = await queue.get_many([*pdf_tasks.values(), good_pdf, *normal])
            return all(r is not None and r.state in ("COMPLETED", "DLQ") for r in records)

        await eventually(settled, "every task to finish", 120, every=0.5)
        for name, task_id in pdf_tasks.items():
            record = await queue.get(task_id)
            assert record is not None
            assert record.state == "DLQ", (name, record.state, record.last_error)
            assert record.error_type == "invalid_input", (name, record.error_type)
            assert record.last_error, name
            outcomes[name] = f"DLQ invalid_input: {record.last_error[:90]}"
        good = await queue.get(good_pdf)
        assert good is not None and good.state == "COMPLETED", good
        assert good.result and good.result["pages"], good.result
        delays = []
        for record in await queue.get_many([good_pdf, *normal]):
            assert record is not None and record.state == "COMPLETED"
            assert record.completed_at is not None
            delays.append(record.completed_at - record.created_at)
        assert max(delays) < PDF_TIME_LIMIT, f"an ordinary task waited {max(delays):.1f} s"
        workers = await queue.workers()
        assert len(workers) == 1 and workers[0]["pid"] == worker.pid
    assert worker.poll() is None, "the worker died"
    assert server.proc.poll() is None
    figures.update(
        outcomes=outcomes,
        ordinary_tasks=len(normal) + 1,
        max_ordinary_task_latency_s=round(max(delays), 2),
        pdf_time_limit_s=PDF_TIME_LIMIT,
        worker_peak_rss_mib_with_pdf_pool=rss.peak_mib().get("worker_with_pdf_pool"),
    )


def _fill(path: str) -> str:
    return path.replace("{task_id}", "0" * 26).replace("{name}", "default")


async def test_every_route_needs_the_token(
    redis_server: RedisServer, start_server: StartServer, figures: dict[str, Any]
) -> None:
    server = start_server(_env(redis_server, "auth"))
    checked = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as anon:
        spec = (await anon.get("/openapi.json")).json()
        for path, ops in spec["paths"].items():
            if path in OPEN_PATHS:
                continue
            url = _fill(path)
            streaming = path.endswith("/stream") or path == "/api/v1/events"
            for method in ops:
                variants: list[tuple[str, dict[str, str], dict[str, str]]] = [
                    ("missing", {}, {}),
                    ("wrong", {"Authorization": "Bearer not-the-token"}, {}),
                    ("not bearer", {"Authorization": f"Basic {TOKEN}"}, {}),
                    ("wrong query", {}, {"token": "not-the-token"}),
                ]
                if not streaming:
                    variants.append(("query only where streams need it", {}, {"token": TOKEN}))
                for label, headers, params in variants:
                    resp = await anon.request(method.upper(), url, headers=headers, params=params)
                    assert resp.status_code == 401, (method, path, label, resp.status_code)
                    assert resp.headers.get("www-authenticate") == "Bearer"
                    checked += 1
                if streaming:  # the query token is accepted: the stream opens
                    async with anon.stream(method.upper(), url, params={"token": TOKEN}) as resp:
                        assert resp.status_code in (200, 404), (path, resp.status_code)
                        checked += 1
        ws = server.url.replace("http://", "ws://") + "/ws/stats"
        for label, target, headers in (
            ("missing", ws, {}),
            ("wrong", f"{ws}?token=nope", {}),
            ("wrong header", ws, {"Authorization": "Bearer nope"}),
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(target, additional_headers=headers, open_timeout=5):
                    pass
            assert refused.value.response.status_code == 401, label
            checked += 1
        async with connect(f"{ws}?token={TOKEN}&interval=0.2", open_timeout=5) as sock:
            assert await asyncio.wait_for(sock.recv(), 5)  # a stats frame arrives
            checked += 1
    figures.update(auth_checks=checked)
