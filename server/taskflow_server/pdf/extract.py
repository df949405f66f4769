"""The functions the CPU pool runs: offline extraction, and page data for the vision path.

Both take the PDF's bytes and plain, picklable arguments, and return plain data, because they
run in a worker process (:class:`taskflow_server.cpu.CpuPool`). Unusable files raise a
:class:`~taskflow_server.pdf.reader.PdfError` whose message is meant for the user.

Pages without a text layer (scans) are OCR'd (:mod:`.ocr`) when :func:`extract_offline` is
given :class:`~taskflow_server.pdf.ocr.OcrOptions` (or the OCR results of a caller that ran each
page in the CPU pool itself); their lines go through the same layout analysis as born-digital
pages. Otherwise they are ``skipped`` with :data:`NO_TEXT_LAYER_REASON`.

The result shape is AsyncTaskFlow's::

    {"filename": ..., "issue_date": ... | "unknown",
     "pages": [{"page_number": 1, "status": "processed" | "skipped", "reason": None | "...",
                "articles": [{"title", "subtitle", "author", "body", "topics", "summary"}]}]}

An OCR'd page also has ``"ocr": True``, ``"confidence"`` (the engine's mean word confidence,
0..1), ``"ocr_engine"`` (the engine's name) and ``"skew"`` (the rotation undone before reading,
in degrees).

**A text layer is judged before it is trusted** (:mod:`.textscore`): every processed page says
which reading was used, ``"reader": "text" | "ocr"``, the score of its text layer,
``"text_quality"`` (0..1, None for a page without one), and, when OCR read the page,
``"ocr_quality"`` (the same score of the OCR'd text). With ``min_quality`` set, a page whose
text layer scores below it (a scan with a poor hidden OCR layer) is OCR'd too (when ``ocr`` is
given, or its OCR is in ``ocr_pages``) and the reading that scores better is kept;
``"reader_reason"`` says why in words.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskflow_server.pdf.layout import analyse_document, join_lines, vocabulary
from taskflow_server.pdf.layout import order_blocks as _order_blocks
from taskflow_server.pdf.ocr import OcrError, OcrOptions, OcrPage, ocr_page
from taskflow_server.pdf.reader import Limits, PageText, open_pdf
from taskflow_server.pdf.textscore import TextQuality, score_lines

logger = logging.getLogger(__name__)

NO_TEXT_LAYER_REASON = "no text layer (scanned page): needs the OpenRouter vision path"
"""The ``reason`` of a page the offline path cannot read (OCR off)."""


def extract_offline(
    pdf_bytes: bytes,
    filename: str,
    issue_date: str | None,
    limits: Limits | None = None,
    ocr: OcrOptions | None = None,
    ocr_pages: Mapping[int, OcrPage | str] | None = None,
    min_quality: float | None = None,
) -> dict[str, Any]:
    """Split a newspaper PDF into articles without any model (the offline provider's path).

    Args:
        pdf_bytes, filename, issue_date: the file and what the result reports.
        limits: the reader's caps.
        ocr: OCR pages without a text layer here, with these options (None: skip them), and
            pages whose text layer scores under ``min_quality``.
        ocr_pages: OCR already done, by page number: the page read, or the reason it was
            skipped. Used before ``ocr``; the CPU-pool caller OCRs each page as its own call
            (with its own time limit) and passes the results here.
        min_quality: the lowest text-layer score (:func:`~.textscore.score_lines`) trusted
            without a second reading; None: every text layer is trusted.
    """
    done = dict(ocr_pages or {})
    with open_pdf(pdf_bytes, limits) as pdf:
        pages = list(pdf.pages())
    quality = {
        page.number: score_lines(line.text for line in page.lines)
        for page in pages
        if page.has_text_layer
    }
    if ocr is not None:
        for page in pages:
            if page.number not in done and needs_ocr(page, quality.get(page.number), min_quality):
                done[page.number] = _ocr_here(pdf_bytes, page.number, ocr)
    read: list[PageText] = []
    skip: dict[int, str] = {}
    readers: dict[int, dict[str, Any]] = {}
    for page in pages:
        found = done.get(page.number)
        readers[page.number] = choice = choose_reader(quality.get(page.number), found, min_quality)
        if choice["reader"] == "ocr" and isinstance(found, OcrPage):
            read.append(found.text)
        else:
            read.append(page)
            if not page.has_text_layer:
                skip[page.number] = found if isinstance(found, str) else NO_TEXT_LAYER_REASON
    per_page = analyse_document(read)
    result_pages: list[dict[str, Any]] = []
    for page, articles in zip(read, per_page, strict=True):
        if page.number in skip:
            result_pages.append(
                {
                    "page_number": page.number,
                    "status": "skipped",
                    "reason": skip[page.number],
                    "articles": [],
                }
            )
            continue
        entry: dict[str, Any] = {
            "page_number": page.number,
            "status": "processed",
            "reason": None,
            "articles": [article.to_dict() for article in articles],
        }
        entry.update(readers[page.number])
        found = done.get(page.number)
        if entry["reader"] == "ocr" and isinstance(found, OcrPage):
            entry.update(
                ocr=True,
                confidence=found.confidence,
                ocr_engine=found.engine,
                skew=round(found.skew, 2),
            )
        result_pages.append(entry)
    return {
        "filename": filename,
        "issue_date": issue_date or "unknown",
        "pages": result_pages,
    }


def needs_ocr(page: PageText, quality: TextQuality | None, min_quality: float | None) -> bool:
    """Whether a page is worth OCR: it has no text layer, or (with ``min_quality``) its text
    layer was judged and scored under ``min_quality``."""
    if not page.has_text_layer:
        return True
    return below(quality, min_quality)


def below(quality: TextQuality | None, min_quality: float | None) -> bool:
    """True when a judged text layer scores under ``min_quality`` (None: never)."""
    return (
        min_quality is not None
        and quality is not None
        and quality.judged
        and quality.score < min_quality
    )


def choose_reader(
    text: TextQuality | None, found: OcrPage | str | None, min_quality: float | None
) -> dict[str, Any]:
    """Which reading of a page to keep, and why: the page entry's ``reader``,
    ``text_quality``, ``ocr_quality`` (when OCR read it) and ``reader_reason``.

    A page without a text layer (``text`` None) is read by OCR when OCR read it. A text layer
    at or above ``min_quality`` is kept as it is; under it, the OCR reading is kept when it
    scores better than the text layer.
    """
    text_score = text.score if text is not None else None
    entry: dict[str, Any] = {"reader": "text", "text_quality": text_score}
    ocr_score = (
        score_lines(ln.text for ln in found.text.lines) if isinstance(found, OcrPage) else None
    )
    if ocr_score is not None:
        entry["ocr_quality"] = ocr_score.score
    if text is None:
        if ocr_score is not None:
            entry.update(reader="ocr", reader_reason="no text layer: read by OCR")
        return entry
    if not below(text, min_quality):
        entry["reader_reason"] = (
            "text layer trusted" if text.judged else "text layer too short to judge: trusted"
        )
        return entry
    assert min_quality is not None
    low = f"text layer scored {text.score:.2f} < {min_quality:.2f}"
    if ocr_score is None:
        why = found if isinstance(found, str) else "OCR not run"
        entry["reader_reason"] = f"{low}; kept it ({why})"
    elif ocr_score.score > text.score:
        entry.update(reader="ocr", reader_reason=f"{low}; OCR scored {ocr_score.score:.2f}")
    else:
        entry["reader_reason"] = f"{low}; kept it (OCR scored {ocr_score.score:.2f}, no better)"
    return entry


def _ocr_here(pdf_bytes: bytes, number: int, options: OcrOptions) -> OcrPage | str:
    """OCR one page in this process; a failure becomes the page's skip reason."""
    try:
        return ocr_page(pdf_bytes, number, options)
    except OcrError as exc:
        logger.info("page %d not OCR'd: %s", number, exc)
        return str(exc)


@dataclass(frozen=True)
class PageData:
    """What the vision path sends for one page.

    Attributes:
        page_number: 1-based.
        has_text_layer: False for scanned pages (sent as an image, or to the file parser).
        text: the page's text in reading order (empty without a text layer).
        png: the rendered page.
        page_pdf: the page alone as a PDF (only when asked for, for pages without text).
    """

    page_number: int
    has_text_layer: bool
    text: str
    png: bytes
    page_pdf: bytes | None = None


def page_text_in_order(page: PageText, vocab: frozenset[str] = frozenset()) -> str:
    """A page's text in reading order, one block per paragraph (for the vision prompt)."""
    from taskflow_server.pdf.layout import body_font_size, build_blocks, find_gutters

    if not page.lines:
        return ""
    body = body_font_size([page])
    blocks = _order_blocks(
        build_blocks(page.lines, find_gutters(page.lines, body, page.width), body, page.number)
    )
    return "\n\n".join(join_lines([ln.text for ln in b.lines], vocab) for b in blocks)


def prepare_pages(
    pdf_bytes: bytes,
    limits: Limits | None = None,
    dpi: int | None = None,
    scanned_as_pdf: bool = False,
) -> list[PageData]:
    """Every page's image and text layer, for the vision path.

    With ``scanned_as_pdf`` a page without a text layer also comes as a one-page PDF (for
    OpenRouter's file-parser plugin).
    """
    with open_pdf(pdf_bytes, limits) as pdf:
        pages = list(pdf.pages())
        vocab = vocabulary(pages)
        return [
            PageData(
                page_number=page.number,
                has_text_layer=page.has_text_layer,
                text=page_text_in_order(page, vocab) if page.has_text_layer else "",
                png=pdf.render_png(page.number - 1, dpi),
                page_pdf=(
                    pdf.page_as_pdf(page.number - 1)
                    if scanned_as_pdf and not page.has_text_layer
                    else None
                ),
            )
            for page in pages
        ]
