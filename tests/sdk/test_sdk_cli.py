"""The ``taskflow`` command against a live server (and offline, for demo and samples)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sdk_support import TOKEN, LiveServer

from support import free_port
from taskflow_sdk.cli import demo_closing, first_sentence, fit_words, main
from taskflow_server.pdf import sample_dir


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_task_commands(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    url = ["--url", server.url]
    code, out, err = run(
        capsys, *url, "submit", "demo.sleep", '{"seconds": 0.05}', "--wait", "--timeout", "20"
    )
    assert code == 0 and "COMPLETED" in out and not err
    code, out, _ = run(capsys, *url, "submit", "demo.noop")
    task_id = out.strip()
    assert code == 0 and len(task_id) > 10
    assert run(capsys, *url, "wait", task_id, "--timeout", "20")[0] == 0
    code, out, _ = run(capsys, *url, "status", task_id)
    assert code == 0 and "demo.noop" in out and "COMPLETED" in out
    code, out, _ = run(capsys, *url, "list", "--type", "demo.noop", "--limit", "3")
    assert (code == 0 and task_id in out.split()[0:40]) or "demo.noop" in out
    for command in (["queues"], ["workers"], ["health"], ["breaker", "status"]):
        code, out, err = run(capsys, *url, *command)
        assert code == 0 and out and not err, command


def test_dlq_commands(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    url = ["--url", server.url]
    code, out, _ = run(
        capsys,
        *url,
        "submit",
        "demo.fail",
        '{"error_class": "invalid_input"}',
        "--wait",
        "--timeout",
        "20",
    )
    assert code == 1 and "DLQ" in out
    task_id = out.split("task_id", 1)[1].split()[0]
    code, out, _ = run(capsys, *url, "dlq")
    assert code == 0 and task_id in out
    code, out, _ = run(capsys, *url, "dlq", "retry", task_id, "--reset")
    assert code == 0 and out.startswith(task_id)
    code, out, _ = run(capsys, *url, "dlq", "delete", task_id)
    assert code == 0 and "deleted" in out
    code, _, err = run(capsys, *url, "status", task_id)
    assert code == 1 and err.startswith("taskflow: error 404") and err.count("\n") == 1


def test_breaker_commands(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    url = ["--url", server.url]
    try:
        code, out, _ = run(capsys, *url, "breaker", "open", "--reason", "cli test")
        assert code == 0 and "open" in out and "cli test" in out
    finally:
        code, out, _ = run(capsys, *url, "breaker", "reset")
    assert code == 0 and "closed" in out


def test_budget_command(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    url = ["--url", server.url]
    try:
        code, out, _ = run(capsys, *url, "budget", "$2.50")
        assert code == 0 and out.strip() == "$0.00 today / $2.50 budget", out
        code, out, _ = run(capsys, *url, "budget")
        assert code == 0 and "$2.50 budget" in out
        code, _, err = run(capsys, *url, "budget", "lots")
        assert code == 1 and "not a number of dollars" in err and err.count("\n") == 1
        code, _, err = run(capsys, *url, "budget", "-3")
        assert code == 1 and "zero or more" in err
    finally:
        code, out, _ = run(capsys, *url, "budget", "none")
    assert code == 0 and "no budget" in out


def test_unreachable_and_wrong_token_exit_2(
    secured_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--url", f"http://127.0.0.1:{free_port()}", "queues")
    assert code == 2 and not out and err.count("\n") == 1 and "cannot reach" in err
    code, out, err = run(capsys, "--url", secured_server.url, "--token", "wrong", "queues")
    assert code == 2 and err.count("\n") == 1 and "token" in err and "Traceback" not in err
    code, out, _ = run(capsys, "--url", secured_server.url, "--token", TOKEN, "queues")
    assert code == 0 and "primary" in out


def test_bad_input_is_one_line(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", server.url, "submit", "demo.noop", "{not json")
    assert code == 1 and err.startswith("taskflow: the payload is not JSON")
    code, _, err = run(capsys, "--url", server.url, "submit", "nope.type")
    assert code == 1 and "unknown task type" in err
    code, _, err = run(capsys, "--url", server.url, "batch", "/definitely/not/here")
    assert code == 1 and "not a folder" in err


def test_batch_command(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for pdf in sorted(sample_dir().glob("*.pdf"))[:2]:
        shutil.copy(pdf, folder / pdf.name)
    out_csv = tmp_path / "results.csv"
    code, out, _ = run(
        capsys,
        "--url",
        server.url,
        "batch",
        str(folder),
        "--summarize",
        "-o",
        str(out_csv),
        "--quiet",
    )
    assert code == 0 and "wrote" in out
    frame = pd.read_csv(out_csv)
    assert set(frame["file"]) == {p.name for p in folder.iterdir()} and len(frame) > 0


def test_samples_make(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "samples", "make", str(tmp_path / "s"), "--count", "1")
    assert code == 0 and out.strip().endswith(".pdf")
    assert any(p.suffix == ".pdf" for p in (tmp_path / "s").iterdir())


def test_samples_make_scanned_writes_image_only_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pypdfium2 as pdfium

    code, out, _ = run(capsys, "samples", "make", str(tmp_path), "--count", "1", "--scanned")
    assert code == 0
    scans = [Path(line) for line in out.split() if line.endswith("-scan.pdf")]
    assert len(scans) == 1 and scans[0].with_suffix(".json").exists()
    doc = pdfium.PdfDocument(scans[0].read_bytes())
    try:
        for page in doc:  # an image-only page: no text layer at all
            assert page.get_textpage().count_chars() == 0
    finally:
        doc.close()


def test_demo_runs_offline_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKFLOW_REDIS_URL", raising=False)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "demo", "--quiet", "-o", "demo.csv")
    assert code == 0, out
    frame = pd.read_csv(tmp_path / "demo.csv")
    assert len(frame) > 10 and frame["summary"].notna().all()
    lines = out.splitlines()
    rows = [line for line in lines if line.startswith("gazette-")]
    assert len(rows) == len(frame)
    for line in rows:  # one-line summaries cut at a word boundary
        assert len(line) <= 200 and "\n" not in line
        if line.endswith("…"):
            assert not line[:-1].endswith(" ")
    closing = lines[lines.index(next(x for x in lines if x.startswith("Done:"))) :]
    assert len(closing) <= 10
    files = len(list(sample_dir().glob("*.pdf")))
    match = re.fullmatch(
        r"Done: (\d+) file\(s\), (\d+) page\(s\), (\d+) article\(s\) extracted and "
        r"summarized in (\d+\.\d) seconds\.",
        closing[0],
    )
    assert match, closing[0]
    assert int(match[1]) == files and int(match[2]) >= files and int(match[3]) == len(frame)
    assert float(match[4]) > 0
    assert closing[1] == f"Results: {(tmp_path / 'demo.csv').resolve()}"
    rest = "\n".join(closing[2:])
    assert "notebooks/01_quickstart.ipynb" in rest
    assert re.search(r"^  taskflow-server ", rest, re.M)
    assert "OPENROUTER_API_KEY=... taskflow-server" in rest


def test_table_helpers_cut_at_word_boundaries() -> None:
    assert fit_words("Council approves the new tram line", 20) == "Council approves…"
    assert fit_words("short", 20) == "short"
    assert fit_words("Supercalifragilistic", 8) == "Superca…"
    assert len(fit_words("a b " * 40, 30)) <= 30
    assert first_sentence("Dr. J. Ruiz spoke on Monday. The vote was 14 to 5.") == (
        "Dr. J. Ruiz spoke on Monday."
    )
    assert first_sentence("No sentence end here") == "No sentence end here"
    assert first_sentence(None) == "" and first_sentence(float("nan")) == ""
    lines = demo_closing(files=2, pages=5, articles=9, seconds=1.25, csv_path=None)
    assert lines[0].startswith("Done: 2 file(s), 5 page(s), 9 article(s)")
    assert "1.2 seconds" in lines[0] or "1.3 seconds" in lines[0]
    assert not any(line.startswith("Results:") for line in lines)
