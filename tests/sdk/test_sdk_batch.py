"""Batch runs on both clients against a live server: texts, PDFs, resume, retry_failed, export."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pandas as pd
from sdk_support import Api

from taskflow_sdk import TaskState
from taskflow_sdk.batch import ARTICLE_COLUMNS, TEXT_COLUMNS
from taskflow_server.pdf import sample_dir

SENTENCES = (
    "The council approved the harbor plan on Monday. Residents asked about the costs. "
    "The mayor promised monthly reports. Work starts in spring."
)


async def test_batch_of_200_texts_and_rerun_submits_nothing(api: Api) -> None:
    tag = uuid.uuid4().hex
    texts = [f"Item {i} of run {tag}. {SENTENCES}" for i in range(200)]
    run = await api.batch(texts=texts, sentences=2)
    assert run.new_tasks == 200
    await api.run(run, "wait", timeout=120, progress=False)
    frame = run.results()
    assert list(frame.columns) == TEXT_COLUMNS
    assert len(frame) == 200 and list(frame["index"]) == list(range(200))
    assert (frame["state"] == "COMPLETED").all()
    assert frame["summary"].map(lambda s: isinstance(s, str) and len(s) > 10).all()
    assert list(frame["text"]) == texts
    assert run.failures().empty and run.counts() == {"COMPLETED": 200}

    again = await api.batch(texts=texts, sentences=2)
    assert again.new_tasks == 0
    assert [t.task_id for t in again.tasks] == [t.task_id for t in run.tasks]
    await api.run(again, "wait", timeout=30, progress=False)
    pd.testing.assert_frame_equal(again.results(), frame)

    other = await api.batch(texts=texts[:3], sentences=3)  # a different option: new tasks
    assert other.new_tasks == 3


async def test_pdf_batch_with_failures_resume_retry_and_export(api: Api, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    for pdf in sorted(sample_dir().glob("*.pdf")):
        shutil.copy(pdf, folder / pdf.name)
    unique = uuid.uuid4().hex.encode()
    (folder / "broken-1.pdf").write_bytes(b"%PDF-1.4\n" + unique + b" garbage, not a pdf body")
    (folder / "broken-2.pdf").write_bytes(b"%PDF-1.7\n" + unique + b" more garbage")
    (folder / "notes.txt").write_text("ignored by the pattern")

    run = await api.batch(folder=str(folder), summarize=True, tag=uuid.uuid4().hex)
    assert len(run.core.entries) == 6
    await api.run(run, "wait", timeout=180, progress=True)
    frame = run.results()
    assert list(frame.columns) == ARTICLE_COLUMNS
    assert set(frame["file"]) == {p.name for p in sample_dir().glob("*.pdf")}
    assert (frame["summary"].str.len() > 0).all()
    assert (frame["body"].str.len() > 0).all() and frame["page"].min() >= 1

    failures = run.failures()
    assert sorted(failures["item"]) == ["broken-1.pdf", "broken-2.pdf"]
    assert set(failures["state"]) == {"DLQ"}
    assert set(failures["error_class"]) == {"invalid_input"}
    assert failures["message"].map(bool).all()

    failed_ids = set(failures["task_id"])
    retried = await api.run(run, "retry_failed")
    assert {t.task_id for t in retried} == failed_ids
    await api.run(run, "wait", timeout=60, progress=False)
    assert set(run.failures()["task_id"]) == failed_ids
    assert all(t.retry_count == 0 for t in run.tasks if t.task_id in failed_ids)

    resumed = await api.batch(folder=str(folder), summarize=True, tag=run.core.tag)
    assert resumed.new_tasks == 0
    await api.run(resumed, "wait", timeout=60, progress=False)
    assert resumed.new_tasks == 0  # the article summaries were found again, not resubmitted
    pd.testing.assert_frame_equal(resumed.results(), frame)

    csv = run.to_csv(tmp_path / "out.csv")
    parquet = run.to_parquet(tmp_path / "out.parquet")
    assert len(pd.read_csv(csv)) == len(frame)
    assert len(pd.read_parquet(parquet)) == len(frame)
    assert "PDF" not in repr(run) and "COMPLETED" in repr(run)
    assert TaskState.DLQ.is_failure
