"""The summarize task: payload validation, chunking and the handler (no Redis, no network)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import ValidationError

from support import with_parts
from taskflow_server.config import Settings
from taskflow_server.llm.offline import split_sentences
from taskflow_server.llm.provider import OfflineProvider, SummaryResult
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.tasks.registry import TaskContext
from taskflow_server.tasks.summarize import SummarizePayload, split_chunks, summarize

PARAGRAPH = (
    "The harbour authority opened a new pier on Monday. Ships up to 300 metres can now dock. "
    "Local fishermen fear the traffic will scare the fish away. The mayor promised a study."
)


class RecordingProvider:
    """A provider that answers the first sentence of what it gets and records every call."""

    name = "recording"
    model = "rec-1"

    def __init__(self, max_input_chars: int) -> None:
        self.max_input_chars = max_input_chars
        self.calls: list[dict[str, Any]] = []

    async def summarize(
        self, text: str, *, sentences: int = 3, language: str | None = None
    ) -> SummaryResult:
        self.calls.append({"text": text, "sentences": sentences, "language": language})
        first = text.split(". ")[0].strip().rstrip(".") + "."
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost": 0.5}
        return SummaryResult(summary=first, provider=self.name, model=self.model, usage=usage)

    async def aclose(self) -> None:
        pass


def context(llm: Any, **settings: Any) -> tuple[TaskContext, list[tuple[float, str]]]:
    progress: list[tuple[float, str]] = []

    async def report(fraction: float, message: str) -> None:
        progress.append((fraction, message))

    services = SimpleNamespace(settings=Settings(**settings), llm=llm)
    ctx = TaskContext(
        task_id="t1",
        task_type="summarize",
        attempt=0,
        services=cast(Any, services),
        _progress=report,
    )
    return ctx, progress


def test_payload_accepts_text_alias_and_rejects_blank() -> None:
    assert SummarizePayload.model_validate({"text": "Hello."}).content == "Hello."
    payload = SummarizePayload.model_validate({"content": "Hi.", "sentences": 2, "language": "it"})
    assert (payload.sentences, payload.language) == (2, "it")
    for bad in ({"content": ""}, {"content": "  \n "}, {}, {"content": "x", "sentences": 0}):
        with pytest.raises(ValidationError):
            SummarizePayload.model_validate(bad)


def test_split_chunks_respects_the_limit_and_keeps_every_word() -> None:
    text = "\n\n".join([PARAGRAPH] * 30) + "\n\n" + "x" * 2500
    chunks = split_chunks(text, 1000)
    assert len(chunks) > 5
    assert all(len(c) <= 1000 for c in chunks)
    assert "".join(text.split()) == "".join("".join(chunks).split())
    assert split_chunks("short", 1000) == ["short"]


async def test_offline_short_text() -> None:
    ctx, progress = context(OfflineProvider())
    result = await summarize(ctx, SummarizePayload(content=PARAGRAPH, sentences=2))
    assert result["provider"] == "offline" and result["model"] == "extractive"
    assert result["chunks"] == 1
    picked = split_sentences(result["summary"])
    assert len(picked) == 2 and all(sentence in PARAGRAPH for sentence in picked)
    assert progress[-1] == (1.0, "done")


async def test_long_text_is_chunked_and_combined() -> None:
    llm = RecordingProvider(max_input_chars=1000)
    ctx, progress = context(llm)
    text = "\n\n".join(f"Paragraph {i}. {PARAGRAPH}" for i in range(20))
    result = await summarize(ctx, SummarizePayload(content=text, sentences=3, language="en"))
    chunks = result["chunks"]
    assert chunks == len(split_chunks(text, 1000)) > 1
    assert len(llm.calls) == chunks + 1  # one per chunk, then the combination
    assert all(len(call["text"]) <= 1000 for call in llm.calls)
    assert llm.calls[-1]["sentences"] == 3
    assert all(call["language"] == "en" for call in llm.calls)
    assert result["usage"]["total_tokens"] == 12 * (chunks + 1)
    assert result["usage"]["cost"] == pytest.approx(0.5 * (chunks + 1))
    chunk_reports = [p for p in progress if p[1].startswith("summarised chunk")]
    assert len(chunk_reports) == chunks
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert result["model"] == "rec-1"


async def test_oversized_and_empty_text_are_invalid_input() -> None:
    ctx, _ = context(RecordingProvider(1000), max_text_chars=100)
    with pytest.raises(TaskError) as info:
        await summarize(ctx, SummarizePayload(content="word " * 50))
    assert info.value.error_class is ErrorClass.INVALID_INPUT
    with pytest.raises(TaskError) as info:
        await summarize(ctx, SummarizePayload.model_construct(content="   ", sentences=3))
    assert info.value.error_class is ErrorClass.INVALID_INPUT


async def test_registered_in_the_llm_lane() -> None:
    from taskflow_server.tasks.registry import _REGISTRY

    spec = _REGISTRY["summarize"]
    assert spec.lane == "llm" and spec.payload_model is SummarizePayload


class FailsOnce(RecordingProvider):
    """A recording provider whose call for the text containing ``marker`` fails once (503)."""

    def __init__(self, max_input_chars: int, marker: str) -> None:
        super().__init__(max_input_chars)
        self.marker = marker

    async def summarize(
        self, text: str, *, sentences: int = 3, language: str | None = None
    ) -> SummaryResult:
        if self.marker and self.marker in text:
            self.marker = ""
            self.calls.append({"text": text, "sentences": sentences, "language": language})
            raise TaskError(ErrorClass.UNAVAILABLE, "503 no provider available")
        return await super().summarize(text, sentences=sentences, language=language)


async def test_a_retry_summarises_only_the_chunks_still_missing() -> None:
    text = "\n\n".join(f"Paragraph {i}. {PARAGRAPH}" for i in range(20))
    payload = SummarizePayload(content=text, sentences=3)
    chunks = split_chunks(text, 1000)
    reference = await summarize(context(RecordingProvider(1000))[0], payload)

    llm = FailsOnce(1000, marker="Paragraph 7.")
    store: dict[str, Any] = {}
    with pytest.raises(TaskError) as info:
        await summarize(with_parts(context(llm)[0], store), payload)
    assert info.value.error_class is ErrorClass.UNAVAILABLE
    assert store and all(name.startswith("chunk:0:") for name in store)
    result = await summarize(with_parts(context(llm)[0], store), payload)

    for chunk in chunks:  # each chunk paid once; the failed one asked twice
        expected = 2 if "Paragraph 7." in chunk else 1
        assert sum(call["text"] == chunk for call in llm.calls) == expected
    assert result["usage"]["cost"] == pytest.approx(reference["usage"].pop("cost"))
    result["usage"].pop("cost")
    assert result == reference

    # Saved summaries made with another model are not reused.
    other = RecordingProvider(1000)
    other.model = "rec-2"
    await summarize(with_parts(context(other)[0], store), payload)
    assert len(other.calls) == len(chunks) + 1


class CuttingProvider(RecordingProvider):
    """Answers like RecordingProvider, but says the answer to ``cut_call`` was cut short."""

    def __init__(self, max_input_chars: int, cut_call: int) -> None:
        super().__init__(max_input_chars)
        self.cut_call = cut_call

    async def summarize(
        self, text: str, *, sentences: int = 3, language: str | None = None
    ) -> SummaryResult:
        result = await super().summarize(text, sentences=sentences, language=language)
        result.truncated = len(self.calls) == self.cut_call
        return result


@pytest.mark.parametrize("cut_call", [0, 1, 3])
async def test_a_cut_answer_is_said_in_the_result(cut_call: int) -> None:
    # 0: nothing cut; 1: a chunk's summary was cut; 3: the final combining answer was cut.
    text = "\n\n".join([PARAGRAPH] * 2)
    llm = CuttingProvider(max_input_chars=len(PARAGRAPH) + 10, cut_call=cut_call)
    ctx, _ = context(llm)
    result = await summarize(ctx, SummarizePayload(content=text, sentences=1))
    assert result["chunks"] == 2
    assert len(llm.calls) == 3
    assert result["truncated"] is (cut_call != 0)
