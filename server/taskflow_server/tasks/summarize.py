"""The ``summarize`` task: text in, summary out, through the process's LLM provider.

Texts longer than the provider's ``max_input_chars`` are split into chunks at paragraph and
sentence boundaries; the chunks are summarised (a few at a time, progress reported per chunk)
and their summaries summarised again into the final one (repeatedly, if even they are too long).
Empty and oversized texts (over ``max_text_chars``) are ``invalid_input`` and go to the DLQ.

Each chunk's summary is saved with the task as soon as it is paid for (part
``chunk:<round>:<index>:<sha1 of the chunk>``), so a retry sends only the chunks still missing.
When one chunk's call fails, chunks still waiting for a slot are not sent, those already sending
finish and are saved, then the first error ends the attempt.

Result: ``{summary, provider, model, usage, chunks, truncated}``; ``usage`` adds up every call
(chunk summaries saved by an earlier attempt included); ``truncated`` is true when an answer was
cut at ``max_tokens`` even after the client asked again with more room.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from taskflow_server.llm.provider import LLMProvider, SummaryResult
from taskflow_server.resilience.errors import ErrorClass, TaskError
from taskflow_server.tasks._fanout import FanOut
from taskflow_server.tasks.registry import TaskContext, task

CHUNK_CONCURRENCY = 4
"""How many chunks of one text are summarised at the same time."""

MAX_ROUNDS = 4
"""Rounds of summarising summaries before the rest is cut to fit (summaries that do not shrink)."""

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+")  # with CJK full stops


class SummarizePayload(BaseModel):
    """Input of ``summarize``.

    Attributes:
        content: the text (at least one non-blank character); ``text`` is accepted as an alias.
        sentences: how many sentences the summary should have (1-20).
        language: the summary's language (default: the language of the text).
    """

    model_config = ConfigDict(populate_by_name=True)

    content: str = Field(
        min_length=1, validation_alias=AliasChoices("content", "text"), description="the text"
    )
    sentences: int = Field(default=3, ge=1, le=20, description="sentences in the summary")
    language: str | None = Field(default=None, max_length=40, description="summary language")

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must contain at least one non-blank character")
        return value


def _hard_split(piece: str, limit: int) -> list[str]:
    return [piece[i : i + limit] for i in range(0, len(piece), limit)]


def split_chunks(text: str, limit: int) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters, at paragraph boundaries when
    possible, else at sentence ends, else anywhere."""
    if len(text) <= limit:
        return [text]
    units: list[str] = []
    for paragraph in _PARAGRAPHS.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= limit:
            units.append(paragraph)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            units.extend(_hard_split(sentence, limit) if len(sentence) > limit else [sentence])
    chunks: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}\n\n{unit}" if current else unit
        if len(candidate) <= limit:
            current = candidate
        else:
            chunks.append(current)
            current = unit
    if current:
        chunks.append(current)
    return chunks


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        total[key] = int(total.get(key, 0)) + int(usage.get(key) or 0)
    total["cost"] = float(total.get("cost", 0.0)) + float(usage.get("cost") or 0.0)


def chunk_part_name(round_no: int, index: int, chunk: str) -> str:
    """The saved-part name of chunk ``index`` of summarising round ``round_no``."""
    digest = hashlib.sha1(chunk.encode("utf-8")).hexdigest()[:16]
    return f"chunk:{round_no}:{index}:{digest}"


def _fingerprint(llm: LLMProvider, sentences: int, kwargs: dict[str, Any]) -> str:
    """What, besides the chunk's text, decides its summary: a saved one made otherwise is stale."""
    facts = [llm.name, llm.model, sentences, kwargs.get("language")]
    return hashlib.sha1(json.dumps(facts).encode("utf-8")).hexdigest()[:16]


def _reuse(saved: Any, fingerprint: str) -> SummaryResult | None:
    """The summary a saved part holds, when it was made the same way; else ``None``."""
    if not isinstance(saved, dict) or saved.get("fp") != fingerprint:
        return None
    summary, usage = saved.get("summary"), saved.get("usage")
    if not isinstance(summary, str) or not isinstance(usage, dict):
        return None
    return SummaryResult(
        summary=summary,
        provider=str(saved.get("provider", "")),
        model=str(saved.get("model", "")),
        usage=usage,
        truncated=bool(saved.get("truncated", False)),
    )


async def _summarize_all(
    ctx: TaskContext,
    llm: LLMProvider,
    chunks: list[str],
    sentences: int,
    kwargs: dict[str, Any],
    progress_span: tuple[float, float],
    round_no: int,
) -> list[SummaryResult]:
    """Summarise every chunk of one round, reusing the summaries earlier attempts saved."""
    saved = await ctx.saved_parts()
    fingerprint = _fingerprint(llm, sentences, kwargs)
    fan = FanOut(CHUNK_CONCURRENCY)
    done = 0
    start, end = progress_span

    async def one(index: int, chunk: str) -> SummaryResult:
        nonlocal done
        name = chunk_part_name(round_no, index, chunk)
        result = _reuse(saved.get(name), fingerprint)
        if result is None:
            async with fan.slot():
                result = await llm.summarize(chunk, sentences=sentences, **kwargs)
            part = {
                "fp": fingerprint,
                "summary": result.summary,
                "provider": result.provider,
                "model": result.model,
                "usage": dict(result.usage or {}),
                "truncated": result.truncated,
            }
            await ctx.save_part(name, part)
        done += 1
        fraction = start + (end - start) * done / len(chunks)
        await ctx.progress(fraction, f"summarised chunk {done}/{len(chunks)}")
        return result

    return await fan.gather(one(i, c) for i, c in enumerate(chunks))


@task("summarize", payload=SummarizePayload, lane="llm")
async def summarize(ctx: TaskContext, payload: SummarizePayload) -> dict[str, Any]:
    """Summarise a text (chunked when long) with the LLM provider."""
    settings = ctx.services.settings
    text = payload.content.strip()
    if not text:
        raise TaskError(ErrorClass.INVALID_INPUT, "the text is empty")
    if len(text) > settings.max_text_chars:
        raise TaskError(
            ErrorClass.INVALID_INPUT,
            f"the text has {len(text):,} characters; the limit is {settings.max_text_chars:,}",
        )
    llm = ctx.services.llm
    limit = int(getattr(llm, "max_input_chars", settings.summarize_chunk_chars))
    kwargs: dict[str, Any] = {"language": payload.language} if payload.language else {}
    usage: dict[str, Any] = {}
    truncated = False
    chunks = split_chunks(text, limit)
    await ctx.progress(0.0, f"summarising {len(chunks)} chunk(s)")
    if len(chunks) == 1:
        final = await llm.summarize(text, sentences=payload.sentences, **kwargs)
    else:
        current = chunks
        for round_no in range(MAX_ROUNDS):
            if len(current) == 1:
                break
            partial_sentences = max(2, payload.sentences)
            results = await _summarize_all(
                ctx, llm, current, partial_sentences, kwargs, (0.0, 0.9), round_no
            )
            for result in results:
                _add_usage(usage, result.usage)
                truncated = truncated or result.truncated
            current = split_chunks("\n\n".join(r.summary for r in results), limit)
        await ctx.progress(0.9, "combining the chunk summaries")
        combined = current[0] if len(current) == 1 else "\n\n".join(current)[:limit]
        final = await llm.summarize(combined, sentences=payload.sentences, **kwargs)
    _add_usage(usage, final.usage)
    await ctx.progress(1.0, "done")
    return {
        "summary": final.summary,
        "provider": final.provider,
        "model": final.model,
        "usage": usage,
        "chunks": len(chunks),
        # The model's answer was cut at max_tokens even with more room: said, never hidden.
        "truncated": truncated or final.truncated,
    }
