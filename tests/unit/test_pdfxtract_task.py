"""The pdfxtract handler: payload rules, the offline path, the vision path with a fake model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import ValidationError

from support import with_parts
from taskflow_server.config import Settings
from taskflow_server.cpu import CpuPool
from taskflow_server.llm.openrouter import ChatResult
from taskflow_server.llm.provider import SummaryResult
from taskflow_server.pdf import sample_dir
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.tasks.pdfxtract import (
    MIN_SUMMARY_WORDS,
    PdfxtractPayload,
    _summarize_articles,
    page_schema,
    pdfxtract,
)
from taskflow_server.tasks.registry import TaskContext

SHA = "a" * 64


class Blobs:
    def __init__(self, data: bytes | None) -> None:
        self.data = data

    async def get(self, sha: str) -> bytes | None:
        return self.data


class FakeClient:
    """Answers each page from a script: 'ok', 'bad' (unparseable) or a TaskError to raise."""

    def __init__(self, script: dict[int, list[Any]]) -> None:
        self.script = script
        self.calls: list[int] = []

    async def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> ChatResult:
        text = messages[1]["content"][0]["text"]
        page = int(text.split("Page ")[1].split(" ")[0])
        self.calls.append(page)
        assert kwargs["response_format"] == page_schema()
        assert messages[1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
        steps = self.script.get(page, ["ok"])
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, TaskError):
            raise step
        if step == "bad":
            raise TaskError(ErrorClass.BAD_OUTPUT, "not JSON")
        if step == "wrong":
            return ChatResult(content='{"nope": 1}', model="m", provider="p", parsed={"nope": 1})
        article = {
            "title": f"Story of page {page}",
            "subtitle": "",
            "author": "Ann Lee",
            "body": "Body text " * 10,
            "topics": ["news"],
            "summary": "A story.",
            "continued_from_page": None,
            "continued_on_page": None,
        }
        answer = {"articles": [article]}
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "cost": 0.01}
        return ChatResult(
            content=json.dumps(answer), model="vision-1", provider="p", usage=usage, parsed=answer
        )


@pytest.fixture
async def cpu() -> AsyncIterator[CpuPool]:
    pool = CpuPool(1)
    try:
        yield pool
    finally:
        pool.shutdown()


def _ctx(data: bytes | None, llm: Any, cpu: CpuPool) -> TaskContext:
    settings = Settings(pdf_render_dpi=40, pdf_page_concurrency=2, pdf_time_limit=60)
    # The OpenRouter path runs when ``services.openrouter`` (the typed provider) is set.
    upstream = llm if llm.name == "openrouter" else None
    services = SimpleNamespace(
        settings=settings, blobs=Blobs(data), llm=llm, openrouter=upstream, cpu=cpu
    )
    progress: list[tuple[float, str]] = []

    async def record(fraction: float, message: str) -> None:
        progress.append((fraction, message))

    ctx = TaskContext("t1", "pdfxtract", 0, cast(Any, services), _progress=record)
    ctx.progress_log = progress  # type: ignore[attr-defined]
    return ctx


def _sample(n: int = 1) -> bytes:
    return sorted(sample_dir().glob("*.pdf"))[n].read_bytes()


def test_payload_refuses_paths_and_bad_digests() -> None:
    with pytest.raises(ValidationError):
        PdfxtractPayload.model_validate({"blob": SHA, "path": "/etc/passwd"})
    with pytest.raises(ValidationError):
        PdfxtractPayload.model_validate({"blob": "../x"})
    assert PdfxtractPayload.model_validate({"blob": SHA}).filename == "upload.pdf"


async def test_offline_path(cpu: CpuPool) -> None:
    llm = SimpleNamespace(name="offline", model="extractive")
    ctx = _ctx(_sample(1), llm, cpu)
    payload = PdfxtractPayload(blob=SHA, filename="g.pdf", issue_date="2024-05-01")
    result = await pdfxtract(ctx, payload)
    assert result["filename"] == "g.pdf" and result["issue_date"] == "2024-05-01"
    assert result["provider"] == "offline" and result["model"] == "layout"
    pages = result["pages"]
    assert [p["status"] for p in pages] == ["processed"] * len(pages)
    # The scanned page is read by the offline OCR engine (it carries ``ocr`` and a
    # confidence); the others come from their text layer.
    scanned = [p for p in pages if p.get("ocr")]
    assert len(scanned) == 1 and 0.5 < scanned[0]["confidence"] <= 1.0, scanned
    assert scanned[0]["articles"] and not any(p.get("ocr") for p in pages if p not in scanned)
    n = len(result["pages"])
    log = ctx.progress_log  # type: ignore[attr-defined]
    assert (1 / n, f"page 1/{n}") in log and log[-1][0] == 1.0


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"GIF89a not a pdf", "not a PDF"),
        (b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n", "damaged or truncated"),
        (None, "no longer stored"),
    ],
)
async def test_unusable_files_are_invalid_input(
    cpu: CpuPool, data: bytes | None, words: str
) -> None:
    ctx = _ctx(data, SimpleNamespace(name="offline", model="x"), cpu)
    with pytest.raises(TaskError) as info:
        await pdfxtract(ctx, PdfxtractPayload(blob=SHA))
    assert info.value.error_class is ErrorClass.INVALID_INPUT
    assert words in info.value.message


async def test_vision_path_retries_then_skips_a_bad_page(cpu: CpuPool) -> None:
    client = FakeClient({1: ["bad", "ok"], 2: ["wrong"]})
    llm = SimpleNamespace(name="openrouter", model="default-model", client=client)
    result = await pdfxtract(_ctx(_sample(1), llm, cpu), PdfxtractPayload(blob=SHA))
    pages = {p["page_number"]: p for p in result["pages"]}
    assert pages[1]["status"] == "processed"
    assert pages[1]["articles"][0]["title"] == "Story of page 1"
    assert pages[2]["status"] == "skipped" and "bad_output" in pages[2]["reason"]
    assert client.calls.count(1) == 2 and client.calls.count(2) == 3
    assert result["provider"] == "openrouter" and result["model"] == "vision-1"
    # engine=auto: the scanned page is read offline first and, read well, never sent upstream.
    read = [p for p in pages.values() if p["status"] == "processed" and not p.get("ocr")]
    assert [p["page_number"] for p in pages.values() if p.get("ocr")] == [4]
    assert result["usage"]["total_tokens"] == 120 * len(read)


async def test_vision_path_all_pages_failing_raises(cpu: CpuPool) -> None:
    client = FakeClient({n: ["bad"] for n in range(1, 10)})
    llm = SimpleNamespace(name="openrouter", model="m", client=client)
    with pytest.raises(TaskError) as info:
        await pdfxtract(_ctx(_sample(0), llm, cpu), PdfxtractPayload(blob=SHA))
    assert info.value.error_class is ErrorClass.BAD_OUTPUT


async def test_vision_path_upstream_failure_ends_the_attempt(cpu: CpuPool) -> None:
    limited = TaskError(ErrorClass.RATE_LIMITED, "429", retry_after=5)
    client = FakeClient({2: [limited]})
    llm = SimpleNamespace(name="openrouter", model="m", client=client)
    with pytest.raises(TaskError) as info:
        await pdfxtract(_ctx(_sample(0), llm, cpu), PdfxtractPayload(blob=SHA))
    assert info.value.error_class is ErrorClass.RATE_LIMITED


class Summarizer:
    """Counts summary calls; the one for the body containing ``fail_on`` fails once."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.calls: list[str] = []

    async def summarize(self, text: str, **kwargs: Any) -> SummaryResult:
        self.calls.append(text)
        if self.fail_on and self.fail_on in text:
            self.fail_on = ""
            raise TaskError(ErrorClass.UNAVAILABLE, "503")
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        return SummaryResult(f"Summary of {text[:12]}", "p", "s-1", usage)


async def test_vision_path_retry_sends_only_the_missing_pages(cpu: CpuPool) -> None:
    payload = PdfxtractPayload(blob=SHA, filename="g.pdf")
    reference_llm = SimpleNamespace(name="openrouter", model="m", client=FakeClient({}))
    reference = await pdfxtract(_ctx(_sample(0), reference_llm, cpu), payload)
    pages = len(reference["pages"])

    limited = TaskError(ErrorClass.RATE_LIMITED, "429", retry_after=5)
    client = FakeClient({2: [limited, "ok"]})
    llm = SimpleNamespace(name="openrouter", model="m", client=client)
    store: dict[str, Any] = {}
    with pytest.raises(TaskError):
        await pdfxtract(with_parts(_ctx(_sample(0), llm, cpu), store), payload)
    assert "page:1" in store and "page:2" not in store
    result = await pdfxtract(with_parts(_ctx(_sample(0), llm, cpu), store), payload)
    assert sorted(client.calls) == sorted([*range(1, pages + 1), 2])  # page 2 twice, others once
    assert result["usage"]["cost"] == pytest.approx(reference["usage"].pop("cost"))
    result["usage"].pop("cost")
    assert result == reference

    # Another model (or input) has another fingerprint: its saved pages are not reused.
    other = SimpleNamespace(name="openrouter", model="m2", client=FakeClient({}))
    await pdfxtract(with_parts(_ctx(_sample(0), other, cpu), store), payload)
    assert sorted(other.client.calls) == list(range(1, pages + 1))


async def test_article_summaries_are_saved_and_reused(cpu: CpuPool) -> None:
    words = " ".join(f"word{i}" for i in range(MIN_SUMMARY_WORDS + 5))
    result = {"pages": [{"page_number": 1, "articles": [{"body": words}, {"body": "short"}]}]}
    summarizer = Summarizer(fail_on="word0")
    llm = SimpleNamespace(name="openrouter", model="s-1", summarize=summarizer.summarize)
    store: dict[str, Any] = {}

    def attempt() -> TaskContext:
        return with_parts(_ctx(None, llm, cpu), store)

    with pytest.raises(TaskError):
        await _summarize_articles(attempt(), json.loads(json.dumps(result)))
    assert store == {}
    first = json.loads(json.dumps(result))
    await _summarize_articles(attempt(), first)
    assert list(store) == ["summary:1:0"] and len(summarizer.calls) == 2
    again = json.loads(json.dumps(result))
    await _summarize_articles(attempt(), again)
    assert len(summarizer.calls) == 2  # reused, not asked again
    assert again == first and again["usage"]["total_tokens"] == 6
    assert again["pages"][0]["articles"][0]["summary"] == "Summary of word0 word1 "
