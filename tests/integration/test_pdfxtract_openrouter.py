"""pdfxtract's OpenRouter vision path end to end: real worker, real Redis, the fake over HTTP.

Every test runs the real ``pdfxtract`` handler in an in-process
:class:`~taskflow_server.worker.worker.Worker` whose settings point ``openrouter_base_url`` at a
:class:`FakeOpenRouterThread` on 127.0.0.1 with an API key (so the OpenRouter provider, with its
shared limiter and breaker, is the one used). PDFs are stored with ``services.blobs.put`` and
submitted as ``pdfxtract`` tasks in the ``llm`` lane, exactly as the API does. Faults are
scripted through the fake's real ``POST /_control`` (``fault_rules`` match a page by the text
"Page N of M" the task puts in every request), and what the task sent is read back from the
fake's ``GET /_requests`` log. Every wait polls with a deadline.

The last tests show that work already paid for is kept with its task: a retry after an upstream
failure sends only the pages (and, for a long ``summarize`` text on the same rig, the chunks)
the failed attempt did not get.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from support import fake_control, make_settings, wait_state
from taskflow_server.pdf import sample_dir
from taskflow_server.resilience.errors import POLICIES, ErrorClass
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import TaskQueue
from taskflow_server.store.records import NewTask, TaskRecord
from taskflow_server.tasks.pdfxtract import PAGE_ATTEMPTS, RETRY_PAUSE, page_schema
from taskflow_server.tasks.summarize import chunk_part_name, split_chunks
from taskflow_server.testing.openrouter import FakeConfig, FakeOpenRouterThread
from taskflow_server.worker.worker import Worker

T = TypeVar("T")

KEY = "sk-pdf"
PREFIX = "tfpdfor"
MODEL = "fake/vision"
ISSUE_DATE = "1898-03-14"
ARTICLE_KEYS = {"title", "subtitle", "author", "body", "topics", "summary"}


# ----------------------------------------------------------------------------- helpers


async def fake_requests(fake: FakeOpenRouterThread) -> list[dict[str, Any]]:
    """The fake's log of chat requests (``GET /_requests``), oldest first."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.get(f"{fake.root_url}/_requests")
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()
        return data


async def fake_stats(fake: FakeOpenRouterThread) -> dict[str, Any]:
    """The fake's counters (``GET /_stats``)."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.get(f"{fake.root_url}/_stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


def for_page(log: list[dict[str, Any]], page: int, total: int) -> list[dict[str, Any]]:
    """The logged requests about page ``page`` of a ``total``-page PDF."""
    return [entry for entry in log if f"Page {page} of {total}." in entry["text"]]


def sample(name: str) -> bytes:
    """A bundled sample issue (``gazette-01.pdf``: 3 pages with text; ``gazette-02.pdf``:
    4 pages, the last one a scan without a text layer)."""
    return (sample_dir() / name).read_bytes()


def assert_strict_schema(schema: Any, where: str = "$") -> None:
    """Every object in ``schema`` lists all its properties as required and forbids others
    (what OpenAI-style ``strict: true`` structured output demands)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            props = set(schema.get("properties", {}))
            assert set(schema.get("required", [])) == props, f"{where}: not all required"
            assert schema.get("additionalProperties") is False, f"{where}: extra allowed"
        for key, value in schema.items():
            assert_strict_schema(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            assert_strict_schema(value, f"{where}[{i}]")


@dataclass
class Rig:
    """A worker running against the fake, and a queue handle on the same store."""

    worker: Worker
    queue: TaskQueue

    async def submit_pdf(self, data: bytes, filename: str) -> str:
        """Store ``data`` as a blob and submit a ``pdfxtract`` task for it; returns the id."""
        sha = await self.worker.services.blobs.put(data)
        payload = {"blob": sha, "filename": filename, "issue_date": ISSUE_DATE}
        return (await self.queue.submit(NewTask("pdfxtract", payload, lane="llm"))).task_id

    async def wait_state(self, task_id: str, states: set[str], timeout: float = 30.0) -> TaskRecord:
        """Poll until the task is in one of ``states``."""
        return await wait_state(self.queue, task_id, states, timeout)

    async def completed(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for COMPLETED (failing at once on the DLQ) and return the result."""
        rec = await self.wait_state(task_id, {"COMPLETED", "DLQ"}, timeout)
        assert rec.state == "COMPLETED", (rec.error_type, rec.last_error)
        assert isinstance(rec.result, dict)
        return rec.result


StartRig = Callable[..., Awaitable[Rig]]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake(fake_server: FakeOpenRouterThread) -> FakeOpenRouterThread:
    """The module's fake with a fresh state: one accepted key, no faults, no latency."""
    return fake_server.reset(FakeConfig(keys=frozenset({KEY}), retry_after=1.0, seed=3))


@pytest.fixture
async def start_rig(redis: Redis) -> AsyncIterator[StartRig]:
    """Factory: ``await start_rig(fake, **settings)`` starts one worker; all stop afterwards."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(fake: FakeOpenRouterThread, **overrides: Any) -> Rig:
        base: dict[str, Any] = {
            "key_prefix": PREFIX,
            "openrouter_api_key": KEY,
            "openrouter_base_url": fake.base_url,
            "openrouter_model": MODEL,
            "openrouter_timeout": 10.0,
            "openrouter_connect_timeout": 2.0,
            "rate_limit": None,
            "max_in_flight": 16,
            "breaker_failure_threshold": 3,
            "breaker_min_calls": 1000,
            "breaker_open_seconds": 0.3,
            "breaker_max_open_seconds": 1.0,
            "pdf_render_dpi": 40,
            "pdf_page_concurrency": 2,
            "pdf_pool_size": 1,
            "pdf_time_limit": 60.0,
        }
        base.update(overrides)
        settings = make_settings(**base)
        worker = Worker(settings, redis, concurrency=4, worker_id=f"pdf-or-{len(running)}")
        running.append((worker, asyncio.create_task(worker.run(), name=worker.id)))
        queue = TaskQueue(redis, Keys(PREFIX), settings)
        await queue.load()
        return Rig(worker, queue)

    yield start
    for worker, _ in running:
        worker.request_stop()
    await asyncio.wait_for(asyncio.gather(*(task for _, task in running)), timeout=30)


# ----------------------------------------------------------------------------- tests


async def test_schema_valid_answers_complete_every_page(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    rig = await start_rig(fake)
    task_id = await rig.submit_pdf(sample("gazette-01.pdf"), "gazette-01.pdf")
    result = await rig.completed(task_id)

    assert result["filename"] == "gazette-01.pdf" and result["issue_date"] == ISSUE_DATE
    assert result["provider"] == "openrouter" and result["model"] == MODEL
    assert [p["page_number"] for p in result["pages"]] == [1, 2, 3]
    for page in result["pages"]:
        assert page["status"] == "processed" and page["reason"] is None
        assert page["articles"], f"page {page['page_number']} has no article"
        for article in page["articles"]:
            assert set(article) == ARTICLE_KEYS
            assert article["title"] and article["body"]

    log = await fake_requests(fake)
    assert len(log) == 3 and all(entry["status"] == 200 for entry in log)
    for entry in log:
        assert entry["model"] == MODEL and entry["response_format"] == "json_schema"
        spec = entry["json_schema"]
        assert spec["strict"] is True and spec["schema"] == page_schema()
        Draft202012Validator.check_schema(spec["schema"])
        Draft202012Validator(spec["schema"]).validate(json.loads(entry["content"]))
        assert entry["parts"] == ["text", "image_url"] and entry["plugins"] is None
        assert "Text layer of this page" in entry["text"]
    assert_strict_schema(page_schema())

    stats = await fake_stats(fake)
    usage = result["usage"]
    assert usage["prompt_tokens"] == stats["prompt_tokens"] > 0
    assert usage["completion_tokens"] == stats["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_invalid_json_for_one_page_is_retried_twice_then_skipped(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    rig = await start_rig(fake)
    await fake_control(
        fake.root_url,
        fault_rules=[
            {"match": "Page 2 of 3.", "fault": "bad_json", "times": None},  # never recovers
            {"match": "Page 3 of 3.", "fault": "bad_json", "times": 2},  # third try works
        ],
    )
    task_id = await rig.submit_pdf(sample("gazette-01.pdf"), "gazette-01.pdf")
    result = await rig.completed(task_id)

    pages = {p["page_number"]: p for p in result["pages"]}
    assert pages[1]["status"] == "processed" and pages[3]["status"] == "processed"
    assert pages[3]["articles"]
    assert pages[2]["status"] == "skipped" and pages[2]["articles"] == []
    assert pages[2]["reason"].startswith("bad_output: ")
    assert "not valid JSON" in pages[2]["reason"]

    rec = await rig.queue.get(task_id)
    assert rec is not None and rec.retry_count == 0  # the page was retried, not the task
    assert "SCHEDULED" not in [h.get("state") for h in rec.state_history]

    log = await fake_requests(fake)
    assert len(for_page(log, 1, 3)) == 1
    page2 = for_page(log, 2, 3)
    assert [e["fault"] for e in page2] == ["bad_json"] * PAGE_ATTEMPTS
    assert [e["fault"] for e in for_page(log, 3, 3)] == ["bad_json", "bad_json", None]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(page2)]
    assert all(RETRY_PAUSE * 0.9 <= gap < 5.0 for gap in gaps), gaps

    # A bad answer still costs tokens: the usage covers every call, failed ones included.
    stats = await fake_stats(fake)
    assert result["usage"]["prompt_tokens"] == stats["prompt_tokens"]


async def test_every_page_invalid_is_bad_output_retried_then_dead_lettered(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    rig = await start_rig(fake)
    await fake_control(
        fake.root_url, fault_rules=[{"match": "", "fault": "bad_json", "times": None}]
    )
    task_id = await rig.submit_pdf(sample("gazette-01.pdf"), "gazette-01.pdf")

    first = await rig.wait_state(task_id, {"SCHEDULED", "DLQ"})
    assert first.state == "SCHEDULED" and first.error_type == "bad_output"
    assert first.retry_count == 1 and "no page of the PDF" in (first.last_error or "")
    assert first.retry_after is not None and first.scheduled_at is not None
    schedule = POLICIES[ErrorClass.BAD_OUTPUT].delays
    assert schedule[0] <= first.retry_after - first.scheduled_at <= schedule[0] * 1.1 + 0.05

    rec = await rig.wait_state(task_id, {"DLQ"}, timeout=40)
    assert rec.error_type == "bad_output" and rec.retry_count == len(schedule)
    assert [e["error_type"] for e in rec.error_history] == ["bad_output"] * (len(schedule) + 1)
    states = [h.get("state") for h in rec.state_history]
    assert states.count("SCHEDULED") == len(schedule) and states.count("ACTIVE") == 3

    log = await fake_requests(fake)
    assert len(log) == 3 * PAGE_ATTEMPTS * (len(schedule) + 1)
    assert all(e["fault"] == "bad_json" for e in log)


async def test_scanned_page_is_read_offline_first_and_sent_only_when_poorly_read(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    """engine=auto (the default): a scan that OCR reads well never costs an upstream call; one
    whose OCR confidence is under the threshold goes to the vision model."""
    rig = await start_rig(fake)
    result = await rig.completed(await rig.submit_pdf(sample("gazette-02.pdf"), "g2.pdf"))
    pages = result["pages"]
    assert [p["status"] for p in pages] == ["processed"] * 4
    assert pages[3]["ocr"] is True and pages[3]["articles"]
    log = await fake_requests(fake)
    assert for_page(log, 4, 4) == [] and len(log) == 3
    assert all(len(for_page(log, page, 4)) == 1 for page in (1, 2, 3))


async def test_a_poorly_read_scan_goes_to_the_vision_model(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    rig = await start_rig(fake, pdf_ocr_min_confidence=0.999)
    result = await rig.completed(await rig.submit_pdf(sample("gazette-02.pdf"), "g2.pdf"))
    assert [p["status"] for p in result["pages"]] == ["processed"] * 4
    (scan,) = for_page(await fake_requests(fake), 4, 4)
    assert scan["parts"] == ["text", "image_url"]
    assert not result["pages"][3].get("ocr")


async def test_scanned_page_is_sent_as_an_image(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    rig = await start_rig(fake, pdf_engine="vision")
    result = await rig.completed(await rig.submit_pdf(sample("gazette-02.pdf"), "g2.pdf"))
    assert [p["status"] for p in result["pages"]] == ["processed"] * 4

    log = await fake_requests(fake)
    (scan,) = for_page(log, 4, 4)
    assert "no text layer" in scan["text"]
    assert scan["parts"] == ["text", "image_url"] and scan["plugins"] is None
    for page in (1, 2, 3):
        (entry,) = for_page(log, page, 4)
        assert entry["parts"] == ["text", "image_url"]
    assert (await fake_stats(fake))["content_parts"] == {"text": 4, "image_url": 4}


async def test_scanned_page_goes_to_the_file_parser_when_enabled(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    rig = await start_rig(
        fake, pdf_engine="vision", pdf_use_file_parser=True, pdf_file_parser_engine="mistral-ocr"
    )
    result = await rig.completed(await rig.submit_pdf(sample("gazette-02.pdf"), "g2.pdf"))
    assert [p["status"] for p in result["pages"]] == ["processed"] * 4

    log = await fake_requests(fake)
    (scan,) = for_page(log, 4, 4)
    assert scan["parts"] == ["text", "file"] and scan["file_pages"] == [1]
    assert scan["plugins"] == [{"id": "file-parser", "pdf": {"engine": "mistral-ocr"}}]
    assert "1 pages" in scan["content"]  # the fake echoes the page count of the file part
    for page in (1, 2, 3):  # pages with a text layer still go as an image, without the plugin
        (entry,) = for_page(log, page, 4)
        assert entry["parts"] == ["text", "image_url"] and entry["plugins"] is None


async def test_scanned_corpus_issue_through_the_file_parser(
    fake: FakeOpenRouterThread, start_rig: StartRig, corpus_dir: Path
) -> None:
    rig = await start_rig(fake, pdf_engine="vision", pdf_use_file_parser=True)
    data = (corpus_dir / "sample-4page-issue.pdf").read_bytes()
    result = await rig.completed(await rig.submit_pdf(data, "sample-4page-issue.pdf"), 60)
    assert [p["status"] for p in result["pages"]] == ["processed"] * 4
    log = await fake_requests(fake)
    assert sorted(e["parts"][-1] for e in log) == ["file"] * 4
    assert all(e["file_pages"] == [1] for e in log)


async def test_outage_retries_the_task_instead_of_skipping_pages(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    rig = await start_rig(fake)
    # Warm the worker up (CPU pool started) so the outage surely covers the first page calls.
    await rig.completed(await rig.submit_pdf(sample("gazette-01.pdf"), "warm-up.pdf"))
    await fake_control(fake.root_url, reset_stats=True, outage_seconds=1.5)
    task_id = await rig.submit_pdf(sample("gazette-01.pdf"), "gazette-01.pdf")
    result = await rig.completed(task_id, timeout=40)

    assert [p["status"] for p in result["pages"]] == ["processed"] * 3
    rec = await rig.queue.get(task_id)
    assert rec is not None and rec.retry_count == 1
    (failure,) = rec.error_history
    assert failure["error_type"] == "unavailable" and "503" in failure["error"]
    assert failure["state_transition"] == "ACTIVE -> SCHEDULED"
    states = [h["state"] for h in rec.state_history]
    assert states == ["PENDING", "ACTIVE", "FAILED", "SCHEDULED", "PENDING", "ACTIVE", "COMPLETED"]

    log = await fake_requests(fake)
    outage = [e for e in log if e["status"] == 503]
    assert outage and len(outage) <= 2  # at most the pages in flight (pdf_page_concurrency)
    for page in (1, 2, 3):
        assert [e["status"] for e in for_page(log, page, 3)][-1] == 200


async def test_a_failed_attempt_stops_its_other_pages(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    """When one page hits an upstream failure the attempt ends: pages still waiting for a
    slot are not sent, so a failed attempt costs no more calls than were already in flight."""
    rig = await start_rig(fake, pdf_page_concurrency=2)
    # Page 2 answers slowly the first time, so page 1's failure surely arrives while page 3
    # still waits for a slot (otherwise page 2's success could free a slot for it first).
    await fake_control(
        fake.root_url,
        latency=0.3,
        slow_seconds=2.0,
        fault_rules=[
            {"match": "Page 1 of 3.", "fault": "503_retry_after", "times": 1},
            {"match": "Page 2 of 3.", "fault": "slow", "times": 1},
        ],
    )
    task_id = await rig.submit_pdf(sample("gazette-01.pdf"), "gazette-01.pdf")
    result = await rig.completed(task_id, timeout=40)
    assert [p["status"] for p in result["pages"]] == ["processed"] * 3

    log = await fake_requests(fake)
    assert [e["status"] for e in for_page(log, 1, 3)] == [503, 200]
    assert len(for_page(log, 3, 3)) == 1, "page 3 was sent by the failed attempt too"


# ----------------------------------------------------------------------------- never pay twice


def _same_usage(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Token counts equal; the cost equal up to float summing order."""
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert got[key] == want[key], key
    assert got["cost"] == pytest.approx(want["cost"])


async def test_a_retry_sends_only_the_pages_the_failed_attempt_did_not_get(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    """Page 1 gets a 503 while page 2 is in flight and page 3 waits: page 2 finishes and is
    kept, page 3 is not sent, and the retry sends pages 1 and 3 only. The result equals a run
    without failure, usage included (page 2's tokens were paid by the first attempt)."""
    rig = await start_rig(fake, pdf_page_concurrency=2)
    data = sample("gazette-01.pdf")
    reference = await rig.completed(await rig.submit_pdf(data, "gazette-01.pdf"))
    before = len(await fake_requests(fake))

    await fake_control(
        fake.root_url,
        latency=0.2,
        slow_seconds=1.5,
        fault_rules=[
            {"match": "Page 1 of 3.", "fault": "503_retry_after", "times": 1},
            {"match": "Page 2 of 3.", "fault": "slow", "times": 1},
        ],
    )
    task_id = await rig.submit_pdf(data, "gazette-01.pdf")
    failed = await rig.wait_state(task_id, {"SCHEDULED"})
    assert failed.error_type == "unavailable"
    assert set(await rig.queue.parts(task_id)) == {"page:2"}  # finished though the attempt failed
    result = await rig.completed(task_id, timeout=40)

    log = (await fake_requests(fake))[before:]
    assert [e["status"] for e in for_page(log, 1, 3)] == [503, 200]
    assert [e["status"] for e in for_page(log, 2, 3)] == [200]
    assert [e["status"] for e in for_page(log, 3, 3)] == [200]
    assert len(log) == 3 + 1
    rec = await rig.queue.get(task_id)
    assert rec is not None and rec.retry_count == 1

    _same_usage(result.pop("usage"), reference.pop("usage"))
    assert result == reference
    assert not await rig.queue.redis.exists(rig.queue.keys.parts(task_id))  # gone on complete


def _report(names: list[str]) -> str:
    """A text of one ~800-character paragraph per name: each is a chunk of its own at 1,000."""
    paragraphs = []
    for name in names:
        lines = " ".join(f"Line {i} about {name} says little of note." for i in range(20))
        paragraphs.append(f"Section {name} opens here. It is part {name} of the report. {lines}")
    return "\n\n".join(paragraphs)


async def test_a_chunked_summary_retry_sends_only_the_missing_chunks(
    fake: FakeOpenRouterThread, start_rig: StartRig
) -> None:
    """One chunk's call gets a 503: the chunks already sending finish and are kept, and the
    retry sends the missing chunks only (each chunk is paid once), then the final summary."""
    names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    text = _report(names)
    chunks = split_chunks(text, 1000)
    assert len(chunks) == len(names)
    rig = await start_rig(fake, summarize_chunk_chars=1000)
    payload = {"content": text, "sentences": 3}

    async def run() -> str:
        return (await rig.queue.submit(NewTask("summarize", payload, lane="llm"))).task_id

    reference = await rig.completed(await run())
    before = len(await fake_requests(fake))

    await fake_control(
        fake.root_url,
        latency=0.2,
        fault_rules=[{"match": "Section gamma", "fault": "503_retry_after", "times": 1}],
    )
    task_id = await run()
    await rig.wait_state(task_id, {"SCHEDULED"})
    saved = set(await rig.queue.parts(task_id))
    in_flight = {chunk_part_name(0, i, chunks[i]) for i in (0, 1, 3)}  # sent with gamma
    assert in_flight <= saved and chunk_part_name(0, 2, chunks[2]) not in saved
    result = await rig.completed(task_id, timeout=40)

    log = (await fake_requests(fake))[before:]
    # The log keeps a request's first 300 characters: a chunk's names one section, the final
    # call (the summaries joined) several.
    calls = [e for e in log if e["text"].count("Section ") == 1]
    for i, name in enumerate(names):
        statuses = [e["status"] for e in calls if e["text"].startswith(f"Section {name} opens")]
        assert statuses == ([503, 200] if i == 2 else [200]), (name, statuses)
    assert len(calls) == len(chunks) + 1  # every chunk once, plus the 503
    assert len(log) == len(calls) + 1  # and the final summary

    _same_usage(result.pop("usage"), reference.pop("usage"))
    assert result == reference
    assert not await rig.queue.redis.exists(rig.queue.keys.parts(task_id))
