"""The ``pdfxtract`` task: a newspaper PDF (an uploaded blob) in, articles per page out.

The payload names the upload by its sha256 (``blob``); a task never holds a PDF and never reads
a path on the server. Two paths, chosen by the process's LLM provider (``services.openrouter``):

- **offline**: our layout splitter (:mod:`taskflow_server.pdf.layout`) runs in the CPU pool
  under ``pdf_time_limit``. Pages without a text layer are OCR'd (:mod:`taskflow_server.pdf.ocr`,
  ``pdf_ocr``), each page as its own CPU-pool call under ``pdf_time_limit`` and the pool's memory
  cap, then analysed by the same layout splitter; such a page says ``ocr: true`` and its mean
  ``confidence``. A page whose OCR runs past the limit, or fails, or finds no OCR engine
  installed, is ``skipped`` with the reason (never a failed task). With OCR off (or the engine
  ``vision``) they are ``skipped`` with :data:`~taskflow_server.pdf.extract.NO_TEXT_LAYER_REASON`.
  A page whose text layer scores under ``pdf_text_min_quality``
  (:mod:`taskflow_server.pdf.textscore`: a scan with a poor hidden OCR layer) is OCR'd the same
  way (same pool, same limit) and the reading that scores better is kept; every processed page
  says ``reader`` (``text`` or ``ocr``), ``text_quality``, ``ocr_quality`` when OCR read it,
  and ``reader_reason``. A failed or timed-out OCR of such a page keeps its text layer.
- **openrouter**: every page's image (and its text layer, as a hint) goes to the vision model
  with a strict JSON schema; the answer is validated with pydantic. A page whose answer is
  unusable is asked again twice, then ``skipped`` with the reason; a page the model refuses
  (content filter, invalid request) is ``skipped`` at once. Pages without a text layer go as an
  image, or as a one-page PDF to the file-parser plugin with ``pdf_use_file_parser``.
  Which pages without a text layer go to the model depends on the engine (the payload's
  ``engine``, else ``pdf_engine``): ``vision`` all of them, ``ocr`` none (they are OCR'd as on
  the offline path), ``auto`` those whose OCR confidence is under ``pdf_ocr_min_confidence``
  or whose OCR failed.
  Failures of the upstream itself (rate limit, outage, credits, auth) end the attempt so the
  worker retries it on the class's schedule: skipping pages would make a temporary outage a
  permanent hole in the result. If every page fails, the task fails with ``bad_output``.

  Never pay twice: each page's validated answer is saved with the task as soon as it arrives
  (part ``page:<n>``, with the usage and model it cost and a fingerprint of the input, model and
  answer-changing settings), and a retry sends only the pages still missing. When a page's
  upstream failure ends the attempt, pages waiting for a slot are not sent, pages already
  sending finish and are saved, then the error is raised. Skipped pages are not saved: a retry
  asks for them again.

Unusable files (not a PDF, encrypted, truncated, over the page or size caps, too slow to read)
are ``invalid_input`` and go to the DLQ. Articles continued across pages are joined on the page
where they start. ``summarize: true`` rewrites every article's summary with the provider (each
summary saved as part ``summary:<page>:<index>`` and reused by a retry).

Result: ``{filename, issue_date, pages: [{page_number, status, reason, articles}], provider,
model, usage}``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskflow_server.config import Settings
from taskflow_server.cpu import CpuOutOfMemoryError, CpuTimeoutError, CpuWorkerCrashedError
from taskflow_server.llm.openrouter import OpenRouterClient, UpstreamError, add_usage
from taskflow_server.pdf.extract import (
    NO_TEXT_LAYER_REASON,
    PageData,
    extract_offline,
    prepare_pages,
)
from taskflow_server.pdf.layout import Article, join_continuations
from taskflow_server.pdf.ocr import (
    DEFAULT_ENGINE,
    OcrError,
    OcrOptions,
    OcrPage,
    get_engine,
    ocr_page,
    timeout_reason,
    unavailable_reason,
)
from taskflow_server.pdf.reader import Limits, PdfError
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.tasks._fanout import FanOut
from taskflow_server.tasks.registry import TaskContext, task

logger = logging.getLogger(__name__)

OFFLINE_MODEL = "layout"
"""The ``model`` reported by the offline path."""
PAGE_ATTEMPTS = 3
"""Tries per page when the model's answer is unusable (the first and two quick retries)."""
RETRY_PAUSE = 0.5
"""Seconds before retrying a page (doubled on the second retry)."""
MIN_SUMMARY_WORDS = 40
"""With ``summarize``, articles shorter than this keep their extractive summary."""

_PAGE_LOCAL = frozenset(
    {ErrorClass.BAD_OUTPUT, ErrorClass.CONTENT_FILTERED, ErrorClass.INVALID_REQUEST}
)

SYSTEM_PROMPT = """You read one page of a newspaper and return its articles as JSON.
For every article on the page give: title (the headline), subtitle (the deck under the
headline, or ""), author (the byline without "By", or ""), body (the full text, verbatim, in
reading order across columns, words hyphenated at line ends joined again, paragraphs separated
by a blank line), topics (2-5 short lower-case keywords), summary (1-2 sentences in the
article's language), continued_from_page and continued_on_page (page numbers from "continued
from/on page N" notes, else null). Leave out advertisements, running heads, page numbers,
captions and mastheads. The text layer, when given, is the page's own text: prefer its spelling
to what you read in the image. Answer with JSON only."""


class PdfxtractPayload(BaseModel):
    """Input of ``pdfxtract`` (no other fields: a server path is never accepted).

    Attributes:
        blob: sha256 of the uploaded PDF in the blob store.
        filename: the original file name (for the result).
        issue_date: the issue's date, if known.
        summarize: rewrite each article's summary with the LLM provider.
        engine: who reads pages without a text layer (``auto``, ``ocr`` or ``vision``; see
            ``pdf_engine`` in the settings, which applies when this is not given).
    """

    model_config = ConfigDict(extra="forbid")

    blob: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the uploaded PDF")
    filename: str = Field(default="upload.pdf", max_length=255)
    issue_date: str | None = Field(default=None, max_length=40)
    summarize: bool = False
    engine: Literal["auto", "ocr", "vision"] | None = Field(
        default=None, description="who reads scanned pages; default: the server's pdf_engine"
    )


class VisionArticle(BaseModel):
    """One article as the vision model reports it."""

    title: str
    subtitle: str = ""
    author: str = ""
    body: str
    topics: list[str] = Field(default_factory=list)
    summary: str = ""
    continued_from_page: int | None = None
    continued_on_page: int | None = None


class VisionPage(BaseModel):
    """The vision model's answer for one page.

    ``truncated`` is ours, not the model's: the answer was cut at ``max_tokens`` even after the
    client asked again with more room, yet still decoded (its last article may be short).
    """

    articles: list[VisionArticle]
    truncated: bool = False


def page_schema() -> dict[str, Any]:
    """The strict JSON schema the vision model must answer with."""
    text = {"type": "string"}
    page_ref = {"type": ["integer", "null"]}
    article = {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "title",
            "subtitle",
            "author",
            "body",
            "topics",
            "summary",
            "continued_from_page",
            "continued_on_page",
        ],
        "properties": {
            "title": text,
            "subtitle": text,
            "author": text,
            "body": text,
            "topics": {"type": "array", "items": text},
            "summary": text,
            "continued_from_page": page_ref,
            "continued_on_page": page_ref,
        },
    }
    return {
        "title": "newspaper_page",
        "type": "object",
        "additionalProperties": False,
        "required": ["articles"],
        "properties": {"articles": {"type": "array", "items": article}},
    }


def limits_from(settings: Settings) -> Limits:
    """The PDF caps from the settings."""
    return Limits(
        max_pages=settings.pdf_max_pages,
        max_page_area_pt2=settings.pdf_max_page_area_pt2,
        render_dpi=settings.pdf_render_dpi,
        render_max_pixels=settings.pdf_render_max_pixels,
    )


@task("pdfxtract", payload=PdfxtractPayload, lane="llm")
async def pdfxtract(ctx: TaskContext, payload: PdfxtractPayload) -> dict[str, Any]:
    """Extract the articles of a newspaper PDF, page by page."""
    services = ctx.services
    data = await services.blobs.get(payload.blob)
    if data is None:
        raise TaskError(
            ErrorClass.INVALID_INPUT,
            f"the uploaded PDF {payload.blob[:12]}... is no longer stored (it expired); "
            "upload the file again",
        )
    upstream = services.openrouter
    if upstream is not None:
        result = await _vision(ctx, payload, data, upstream.client, upstream.model)
    else:
        result = await _offline(ctx, payload, data)
    if payload.summarize:
        await _summarize_articles(ctx, result)
    await ctx.progress(1.0, "done")
    return result


async def _in_pool(ctx: TaskContext, fn: Any, *args: Any) -> Any:
    settings = ctx.services.settings
    try:
        return await ctx.services.cpu.run(fn, *args, timeout=settings.pdf_time_limit)
    except PdfError as exc:
        raise TaskError(ErrorClass.INVALID_INPUT, str(exc)) from None
    except CpuTimeoutError:
        raise TaskError(
            ErrorClass.INVALID_INPUT,
            f"the PDF could not be read within {settings.pdf_time_limit:g} s "
            "(TASKFLOW_PDF_TIME_LIMIT); it is too complex or malformed",
        ) from None
    except CpuOutOfMemoryError:
        raise TaskError(
            ErrorClass.INVALID_INPUT,
            f"the PDF needs more than {settings.pdf_memory_limit_mb} MB to read "
            "(TASKFLOW_PDF_MEMORY_LIMIT_MB); it is too large or a decompression bomb",
        ) from None
    except CpuWorkerCrashedError:
        # The reader process died on this file: in practice the memory cap stopping native
        # code (a decompression bomb) or a file that crashes PDFium. Retrying would crash again.
        raise TaskError(
            ErrorClass.INVALID_INPUT,
            "the PDF reader process died reading this file: it needs more than "
            f"{settings.pdf_memory_limit_mb} MB (TASKFLOW_PDF_MEMORY_LIMIT_MB) or is malformed",
        ) from None


def ocr_options(settings: Settings) -> OcrOptions:
    """How scanned pages are OCR'd, from the settings."""
    return OcrOptions(
        engine=DEFAULT_ENGINE,
        dpi=settings.pdf_ocr_dpi,
        max_pixels=settings.pdf_render_max_pixels,
        time_limit=settings.pdf_time_limit,
    )


def uses_ocr(settings: Settings, payload: PdfxtractPayload) -> bool:
    """Whether pages without a text layer are OCR'd (OCR on and the engine not ``vision``)."""
    return settings.pdf_ocr and (payload.engine or settings.pdf_engine) != "vision"


async def _ocr_pages(ctx: TaskContext, data: bytes, numbers: list[int]) -> dict[int, OcrPage | str]:
    """OCR each page in the CPU pool (one call per page, ``pdf_time_limit`` each, in parallel
    up to the pool's size): the page read, or the reason it is skipped."""
    settings = ctx.services.settings
    engine = get_engine(DEFAULT_ENGINE)
    if not engine.available():
        return dict.fromkeys(numbers, unavailable_reason(engine))
    options = ocr_options(settings)
    limit = settings.pdf_time_limit
    finished = 0

    async def one(number: int) -> OcrPage | str:
        nonlocal finished
        try:
            page: OcrPage = await ctx.services.cpu.run(
                ocr_page, data, number, options, timeout=limit
            )
            return page
        except OcrError as exc:
            return str(exc)
        except CpuTimeoutError:
            return timeout_reason(limit)
        except (CpuOutOfMemoryError, CpuWorkerCrashedError):
            return (
                f"OCR of this page needed more than {settings.pdf_memory_limit_mb} MB "
                "(TASKFLOW_PDF_MEMORY_LIMIT_MB) or its process died"
            )
        except PdfError as exc:
            return str(exc)
        finally:
            finished += 1
            await ctx.progress(0.0, f"OCR page {finished}/{len(numbers)}")

    results = await asyncio.gather(*(one(n) for n in numbers))
    for number, found in zip(numbers, results, strict=True):
        if isinstance(found, str):
            logger.warning("pdfxtract page %d not OCR'd: %s", number, found)
    return dict(zip(numbers, results, strict=True))


def min_quality(settings: Settings, payload: PdfxtractPayload) -> float | None:
    """The lowest trusted text-layer score, or None when poor text layers are not re-read
    (OCR off, or ``pdf_text_min_quality`` 0)."""
    if not uses_ocr(settings, payload) or settings.pdf_text_min_quality <= 0:
        return None
    return settings.pdf_text_min_quality


def pages_to_ocr(result: dict[str, Any], threshold: float | None) -> list[int]:
    """Pages of a first offline reading that OCR should read: those without a text layer, and
    those whose text layer scored under ``threshold``."""
    numbers: list[int] = []
    for page in result["pages"]:
        scanned = page["status"] == "skipped" and page["reason"] == NO_TEXT_LAYER_REASON
        quality = page.get("text_quality")
        poor = (
            threshold is not None
            and page["status"] == "processed"
            and page.get("reader") == "text"
            and quality is not None
            and quality < threshold
        )
        if scanned or poor:
            numbers.append(page["page_number"])
    return numbers


async def _offline(ctx: TaskContext, payload: PdfxtractPayload, data: bytes) -> dict[str, Any]:
    await ctx.progress(0.0, "reading the PDF")
    settings = ctx.services.settings
    limits = limits_from(settings)
    threshold = min_quality(settings, payload)

    async def read(ocr_pages: dict[int, OcrPage | str] | None) -> dict[str, Any]:
        """The layout pass in the CPU pool, with OCR readings already made (or none)."""
        args = (data, payload.filename, payload.issue_date, limits, None, ocr_pages, threshold)
        found: dict[str, Any] = await _in_pool(ctx, extract_offline, *args)
        return found

    result = await read(None)
    wanted = pages_to_ocr(result, threshold) if uses_ocr(settings, payload) else []
    if wanted:  # a second, cheap layout pass with the scans and poor pages read by OCR
        result = await read(await _ocr_pages(ctx, data, wanted))
    pages = result["pages"]
    for i, _ in enumerate(pages, start=1):
        await ctx.progress(i / len(pages), f"page {i}/{len(pages)}")
    result.update(provider="offline", model=OFFLINE_MODEL, usage={})
    return result


def page_messages(
    page: PageData, total: int, payload: PdfxtractPayload, use_file_parser: bool
) -> list[dict[str, Any]]:
    """The chat messages for one page: instructions, page facts, text layer, image or file."""
    facts = f"Filename: {payload.filename}. Page {page.page_number} of {total}."
    if payload.issue_date:
        facts += f" Issue date: {payload.issue_date}."
    if page.has_text_layer and page.text:
        facts += "\n\nText layer of this page (reading order may be imperfect):\n" + page.text
    else:
        facts += "\n\nThis page has no text layer (a scan): read it from the image."
    content: list[dict[str, Any]] = [{"type": "text", "text": facts}]
    if use_file_parser and page.page_pdf is not None:
        encoded = base64.b64encode(page.page_pdf).decode("ascii")
        content.append(
            {
                "type": "file",
                "file": {
                    "filename": f"page-{page.page_number}.pdf",
                    "file_data": f"data:application/pdf;base64,{encoded}",
                },
            }
        )
    else:
        encoded = base64.b64encode(page.png).decode("ascii")
        content.append(
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}
        )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def parse_page(parsed: Any, content: str) -> VisionPage:
    """Validate the model's answer; raises ``TaskError(bad_output)`` when unusable."""
    try:
        value = parsed if parsed is not None else json.loads(content)
        return VisionPage.model_validate(value)
    except (ValueError, ValidationError) as exc:
        raise TaskError(
            ErrorClass.BAD_OUTPUT, f"the model's answer does not match the schema: {exc}"
        ) from None


def _digest(facts: Any) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def page_fingerprint(payload: PdfxtractPayload, settings: Settings, model: str) -> str:
    """What decides a page's answer besides its number: the PDF (its sha256), the model, what
    the prompt says (file name, issue date, instructions, schema) and the rendering and request
    settings. A saved page with another fingerprint is stale and asked again."""
    return _digest(
        [
            payload.blob,
            model,
            payload.filename,
            payload.issue_date,
            SYSTEM_PROMPT,
            page_schema(),
            settings.pdf_render_dpi,
            settings.pdf_render_max_pixels,
            settings.pdf_use_file_parser,
            settings.pdf_file_parser_engine,
            settings.pdf_vision_max_tokens,
        ]
    )


def _saved_page(saved: Any, fingerprint: str) -> tuple[VisionPage, dict[str, Any], str] | None:
    """The answer, usage and model of a saved page part that fits ``fingerprint``, else None."""
    if not isinstance(saved, dict) or saved.get("fp") != fingerprint:
        return None
    usage = saved.get("usage")
    try:
        page = VisionPage.model_validate(saved.get("page"))
    except ValidationError:
        return None
    return page, usage if isinstance(usage, dict) else {}, str(saved.get("model") or "")


async def _vision(
    ctx: TaskContext,
    payload: PdfxtractPayload,
    data: bytes,
    client: OpenRouterClient,
    default_model: str,
) -> dict[str, Any]:
    settings = ctx.services.settings
    await ctx.progress(0.0, "rendering pages")
    pages: list[PageData] = await _in_pool(
        ctx,
        prepare_pages,
        data,
        limits_from(settings),
        settings.pdf_render_dpi,
        settings.pdf_use_file_parser,
    )
    ocr_entries = await _ocr_for_vision(ctx, payload, data, pages)
    to_send = [page for page in pages if page.page_number not in ocr_entries]
    total = len(pages)
    usage: dict[str, Any] = {}
    models: list[str] = []
    outcome: dict[int, VisionPage | str] = {}
    done = len(ocr_entries)
    saved = await ctx.saved_parts()
    fingerprint = page_fingerprint(payload, settings, default_model)
    fan = FanOut(settings.pdf_page_concurrency)
    plugins = (
        [{"id": "file-parser", "pdf": {"engine": settings.pdf_file_parser_engine}}]
        if settings.pdf_use_file_parser
        else None
    )

    async def one(page: PageData) -> None:
        nonlocal done
        name = f"page:{page.page_number}"
        reused = _saved_page(saved.get(name), fingerprint)
        if reused is not None:  # paid for by an earlier attempt
            outcome[page.page_number], page_usage, model = reused
            add_usage(usage, page_usage)
            if model:
                models.append(model)
        else:
            await ask(page, name)
        done += 1
        await ctx.progress(done / total, f"page {done}/{total}")

    async def ask(page: PageData, name: str) -> None:
        """Send one page (asked again on a bad answer); save a good answer at once."""
        use_parser = settings.pdf_use_file_parser and not page.has_text_layer
        messages = page_messages(page, total, payload, use_parser)
        reason = ""
        page_usage: dict[str, Any] = {}
        model = ""
        async with fan.slot():  # raises FanOutStopped when another page ended the attempt
            for attempt in range(PAGE_ATTEMPTS):
                if attempt and fan.stopped:  # another page ended the attempt: send no more
                    return
                if ctx.cancelled:
                    reason = "cancelled"
                    break
                try:
                    answer = await client.chat(
                        messages,
                        max_tokens=settings.pdf_vision_max_tokens,
                        temperature=0.0,
                        response_format=page_schema(),
                        plugins=plugins if use_parser else None,
                    )
                    add_usage(page_usage, dict(answer.usage or {}))
                    parsed = parse_page(answer.parsed, answer.content)
                    parsed.truncated = answer.truncated
                    outcome[page.page_number] = parsed
                    model = answer.model or ""
                    break
                except TaskError as exc:
                    if exc.error_class not in _PAGE_LOCAL:
                        raise
                    if isinstance(exc, UpstreamError):  # a bad answer is paid for too
                        add_usage(page_usage, exc.usage)
                    reason = f"{exc.error_class.value}: {exc.message}"
                    if exc.error_class is not ErrorClass.BAD_OUTPUT:
                        break
                    if attempt + 1 < PAGE_ATTEMPTS:
                        await asyncio.sleep(RETRY_PAUSE * (attempt + 1))
        add_usage(usage, page_usage)
        found = outcome.get(page.page_number)
        if isinstance(found, VisionPage):
            if model:
                models.append(model)
            part = {
                "fp": fingerprint,
                "page": found.model_dump(),
                "usage": page_usage,
                "model": model,
            }
            await ctx.save_part(name, part)
        else:
            logger.warning("pdfxtract page %d skipped: %s", page.page_number, reason)
            outcome[page.page_number] = reason or "no usable answer"

    # One page's upstream failure ends the attempt: pages still waiting for a slot are not
    # sent, pages already sending finish (and are saved), then the first error is raised.
    await fan.gather(one(page) for page in to_send)
    failures = [v for v in outcome.values() if isinstance(v, str)]
    ocr_read = any(entry["status"] == "processed" for entry in ocr_entries.values())
    if failures and len(failures) == len(to_send) and not ocr_read:
        raise TaskError(
            ErrorClass.BAD_OUTPUT, f"no page of the PDF could be extracted: {failures[0]}"
        )
    return _assemble(payload, pages, outcome, usage, models, default_model, ocr_entries)


async def _ocr_for_vision(
    ctx: TaskContext, payload: PdfxtractPayload, data: bytes, pages: list[PageData]
) -> dict[int, dict[str, Any]]:
    """The result entries of the scanned pages OCR settles (engine ``ocr`` or ``auto``); the
    other pages go to the vision model. ``auto`` keeps a page only when it was read with a
    confidence of at least ``pdf_ocr_min_confidence``; ``ocr`` keeps every page, skipped ones
    with their reason."""
    settings = ctx.services.settings
    scanned = [page.page_number for page in pages if not page.has_text_layer]
    if not scanned or not uses_ocr(settings, payload):
        return {}
    engine = payload.engine or settings.pdf_engine
    done = await _ocr_pages(ctx, data, scanned)
    offline: dict[str, Any] = await _in_pool(
        ctx,
        extract_offline,
        data,
        payload.filename,
        payload.issue_date,
        limits_from(settings),
        None,
        done,
    )
    entries: dict[int, dict[str, Any]] = {}
    for entry in offline["pages"]:
        found = done.get(entry["page_number"])
        if found is None:
            continue
        good = isinstance(found, OcrPage) and found.confidence >= settings.pdf_ocr_min_confidence
        if engine == "ocr" or good:
            entries[entry["page_number"]] = entry
    return entries


def _assemble(
    payload: PdfxtractPayload,
    pages: list[PageData],
    outcome: dict[int, VisionPage | str],
    usage: dict[str, Any],
    models: list[str],
    default_model: str,
    ocr_entries: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ocr_entries = ocr_entries or {}
    per_page: list[list[Article]] = []
    for page in pages:
        found = outcome.get(page.page_number)
        articles: list[Article] = []
        if isinstance(found, VisionPage):
            for item in found.articles:
                articles.append(
                    Article(
                        title=item.title.strip(),
                        subtitle=item.subtitle.strip(),
                        author=item.author.strip(),
                        paragraphs=[item.body.strip()],
                        page=page.page_number,
                        jump_to=item.continued_on_page,
                        jump_from=item.continued_from_page,
                        topics=[t for t in item.topics if t],
                        summary=item.summary.strip(),
                    )
                )
        per_page.append(articles)
    join_continuations(per_page, frozenset(), [p.page_number for p in pages])
    result_pages: list[dict[str, Any]] = []
    for page, articles in zip(pages, per_page, strict=True):
        if page.page_number in ocr_entries:
            result_pages.append(ocr_entries[page.page_number])
            continue
        found = outcome.get(page.page_number)
        if isinstance(found, str):
            result_pages.append(
                {
                    "page_number": page.page_number,
                    "status": "skipped",
                    "reason": found,
                    "articles": [],
                }
            )
            continue
        entry: dict[str, Any] = {
            "page_number": page.page_number,
            "status": "processed",
            "reason": None,
            "articles": [a.to_dict() for a in articles],
        }
        if isinstance(found, VisionPage) and found.truncated:
            entry["truncated"] = True  # cut at max_tokens: said, never hidden
        result_pages.append(entry)
    return {
        "filename": payload.filename,
        "issue_date": payload.issue_date or "unknown",
        "pages": result_pages,
        "provider": "openrouter",
        "model": max(set(models), key=models.count) if models else default_model,
        "usage": usage,
    }


async def _summarize_articles(ctx: TaskContext, result: dict[str, Any]) -> None:
    """Replace each long enough article's summary by the provider's summary.

    Each summary is saved as part ``summary:<page>:<index>`` (with a fingerprint of the body and
    the model) as soon as it is paid for; a retry reuses the ones that still fit.
    """
    llm = ctx.services.llm
    usage: dict[str, Any] = result.setdefault("usage", {})
    saved = await ctx.saved_parts()
    for page in result["pages"]:
        for index, article in enumerate(page["articles"]):
            body = article["body"]
            if len(body.split()) < MIN_SUMMARY_WORDS:
                continue
            name = f"summary:{page['page_number']}:{index}"
            fingerprint = _digest([llm.name, llm.model, body])
            part = saved.get(name)
            if (
                isinstance(part, dict)
                and part.get("fp") == fingerprint
                and isinstance(part.get("summary"), str)
            ):
                article["summary"] = part["summary"]
                add_usage(usage, dict(part.get("usage") or {}))
                continue
            summary = await llm.summarize(body)
            article["summary"] = summary.summary
            paid = dict(summary.usage or {})
            add_usage(usage, paid)
            await ctx.save_part(
                name, {"fp": fingerprint, "summary": summary.summary, "usage": paid}
            )


__all__ = [
    "NO_TEXT_LAYER_REASON",
    "PdfxtractPayload",
    "VisionArticle",
    "VisionPage",
    "min_quality",
    "ocr_options",
    "page_messages",
    "page_schema",
    "pages_to_ocr",
    "parse_page",
    "pdfxtract",
    "uses_ocr",
]
