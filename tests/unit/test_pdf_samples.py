"""The sample generator, the bundled archive, the reader's caps and hostile inputs."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen.canvas import Canvas

from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.extract import NO_TEXT_LAYER_REASON, extract_offline, prepare_pages
from taskflow_server.pdf.quality import evaluate_folder
from taskflow_server.pdf.reader import (
    CorruptPdfError,
    EncryptedPdfError,
    Limits,
    NotAPdfError,
    PdfLimitError,
    open_pdf,
)
from taskflow_server.pdf.samples import make_issue, make_samples
from taskflow_server.pdf.stories import TOPICS


def _pdf(pages: int = 1, size: tuple[float, float] = letter, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=size, invariant=1, **kwargs)  # type: ignore[arg-type]
    for n in range(pages):
        canvas.drawString(72, 72, f"page {n + 1}")
        canvas.showPage()
    canvas.save()
    return buf.getvalue()


def test_samples_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = make_samples(tmp_path / "a", count=2, seed=5)
    second = make_samples(tmp_path / "b", count=2, seed=5)
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
        assert a.with_suffix(".json").read_text() == b.with_suffix(".json").read_text()
    other = make_samples(tmp_path / "c", count=1, seed=6)
    assert other[0].read_bytes() != first[0].read_bytes()


def test_ground_truth_matches_the_pdf() -> None:
    pdf, truth = make_issue(seed=2, number=2, used_titles=set())
    with open_pdf(pdf) as doc:
        pages = list(doc.pages())
    assert len(pages) == len(truth["pages"]) >= 3
    for page, true_page in zip(pages, truth["pages"], strict=True):
        if true_page["status"] == "skipped":
            assert not page.has_text_layer and page.char_count == 0
            assert true_page["reason"] == NO_TEXT_LAYER_REASON
            assert true_page["articles"]  # the vision path should find these
        else:
            assert page.has_text_layer
            for article in true_page["articles"]:
                assert article["title"] and len(article["body"].split()) >= 12


def _tokens(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def test_pull_quotes_captions_and_adverts_are_printed_but_no_article() -> None:
    kinds: set[str] = set()
    used: set[str] = set()
    for number in range(1, 7):
        pdf, truth = make_issue(seed=31, number=number, used_titles=used)
        result = extract_offline(pdf, truth["filename"], None)
        with open_pdf(pdf) as doc:
            texts = {p.number: _tokens(" ".join(ln.text for ln in p.lines)) for p in doc.pages()}
        for insert in truth["generator"]["inserts"]:
            page = truth["pages"][insert["page"] - 1]
            if page["status"] != "processed":
                continue
            kinds.add(insert["kind"])
            words = _tokens(insert["text"].split(" / ")[0])
            assert words in texts[insert["page"]]  # printed (the caption may wrap: first words)
            found = result["pages"][insert["page"] - 1]["articles"]
            for article in [*page["articles"], *found]:
                assert words not in _tokens(article["title"])
                body = _tokens(article["body"])
                # A pull quote repeats a quotation: its words are in the body once, not twice.
                assert body.count(words) <= (1 if insert["kind"] == "pull_quote" else 0)
    assert kinds == {"pull_quote", "caption", "advert"}


def test_sample_stories_read_as_news() -> None:
    _, truth = make_issue(seed=3, number=1, used_titles=set())
    articles = [a for p in truth["pages"] for a in p["articles"]]
    assert {tuple(a["topics"]) for a in articles} <= {(t,) for t in TOPICS}
    for article in articles:
        assert " said " in f" {article['body']} " or article["body"].count(".") >= 2
        title_words = set(_tokens(article["title"]).split())
        assert len(title_words & set(_tokens(article["body"]).split())) >= 2


def test_generated_set_meets_the_quality_bar(tmp_path: Path) -> None:
    make_samples(tmp_path, count=6, seed=11)
    quality = evaluate_folder(tmp_path)
    assert quality.documents == 6
    assert quality.title_precision >= 0.9, quality.misses
    assert quality.title_recall >= 0.9, quality.misses
    assert quality.body_similarity >= 0.9


def test_bundled_archive_is_small_and_complete() -> None:
    folder = sample_dir()
    pdfs = sorted(folder.glob("*.pdf"))
    assert len(pdfs) >= 4
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 2 * 1024 * 1024
    for pdf in pdfs:
        truth = json.loads(pdf.with_suffix(".json").read_text(encoding="utf-8"))
        assert truth["filename"] == pdf.name


def test_vision_page_data() -> None:
    pdf = sorted(sample_dir().glob("*.pdf"))[1]
    pages = prepare_pages(pdf.read_bytes(), Limits(render_dpi=50), scanned_as_pdf=True)
    assert all(p.png.startswith(b"\x89PNG\r\n\x1a\n") for p in pages)
    for page in pages:
        if page.has_text_layer:
            assert page.text and page.page_pdf is None
        else:
            assert page.text == "" and page.page_pdf is not None
            with open_pdf(page.page_pdf) as single:
                assert single.page_count == 1


# --- hostile inputs: each a clear error, fast ----------------------------------------------------


def _fails_fast(
    data: bytes, error: type[Exception], words: str, limits: Limits | None = None
) -> None:
    started = time.monotonic()
    with pytest.raises(error) as info:
        extract_offline(data, "x.pdf", None, limits)
    assert time.monotonic() - started < 3.0
    assert words in str(info.value)


def test_not_a_pdf() -> None:
    _fails_fast(b"hello, this is text", NotAPdfError, "not a PDF")
    _fails_fast(b"", NotAPdfError, "empty")


def test_truncated_pdf() -> None:
    data = make_issue(seed=1, number=1, used_titles=set())[0]
    _fails_fast(data[: len(data) // 3], CorruptPdfError, "damaged or truncated")


def test_encrypted_pdf() -> None:
    _fails_fast(_pdf(encrypt="secret"), EncryptedPdfError, "password")


def test_too_many_pages() -> None:
    _fails_fast(_pdf(pages=2000), PdfLimitError, "2000 pages", Limits(max_pages=500))


def test_page_too_large() -> None:
    _fails_fast(_pdf(size=(20000.0, 20000.0)), PdfLimitError, "20000 x 20000 pt")
