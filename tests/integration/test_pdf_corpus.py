"""Offline extraction on the real PDF corpus (../shared/corpus/pdfs; skipped when absent).

Reading-order checks follow the corpus notes: lower-case, every dash to ``-``, ``letter-\\n
letter`` joined, non-alphanumerics to spaces, whitespace collapsed; each sentence must then
appear contiguously in the extracted text of its page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from taskflow_server.pdf.extract import NO_TEXT_LAYER_REASON, extract_offline
from taskflow_server.pdf.reader import CorruptPdfError, PdfError

SENTENCES = [
    (
        "federal-register-2020-17221.pdf",
        1,
        "The FAA proposes to supersede Airworthiness Directive (AD) 2018\u201323\u201351, "
        "which applies to all The Boeing Company Model 737\u20138 and 737\u20139 "
        "(737 MAX) airplanes.",
    ),
    (
        "federal-register-2020-17221.pdf",
        1,
        "CBI is commercial or financial information that is both customarily and actually "
        "treated as private by its owner.",
    ),
    (
        "pr-00530-ml-lines.pdf",
        1,
        "CBI is commercial or financial information that is both customarily and actually "
        "treated as private by its owner.",
    ),
    (
        "sample-color-newsletter.pdf",
        1,
        "Late in April, in Ljubljana, Slovenia, the International Internet Preservation "
        "Consortium gathered for its annual General Assembly.",
    ),
    (
        "i1040nr.pdf",
        4,
        "If you are claiming a refund of U.S. tax withheld from portfolio interest, include a "
        "description of the relevant debt obligation, including the name of the issuer, CUSIP "
        "number (if any), interest rate, and the date the debt was issued.",
    ),
]


def normalise(text: str) -> str:
    """The corpus notes' normalisation."""
    text = re.sub(r"[\u2010-\u2015\u2212\u00ad-]", "-", text.lower())
    text = re.sub(r"([a-z])-\n([a-z])", r"\1\2", text)
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def _page_text(result: dict[str, Any], number: int) -> str:
    page = result["pages"][number - 1]
    parts = []
    for article in page["articles"]:
        parts += [article["title"], article["subtitle"], article["author"], article["body"]]
    return "\n".join(parts)


def _document_text(result: dict[str, Any]) -> str:
    return "\n".join(_page_text(result, p["page_number"]) for p in result["pages"])


@pytest.mark.parametrize(("name", "page", "sentence"), SENTENCES)
def test_reading_order(corpus_dir: Path, name: str, page: int, sentence: str) -> None:
    result = extract_offline((corpus_dir / name).read_bytes(), name, None)
    assert normalise(sentence) in normalise(_document_text(result))
    if name != "i1040nr.pdf":
        assert normalise(sentence) in normalise(_page_text(result, page))
    # i1040nr p4: the sentence sits in text above the page's first headline, which continues
    # the last article of page 3 and is therefore reported there (joined across the page).


def test_every_file_extracts_or_is_invalid_input(corpus_dir: Path) -> None:
    files = sorted(corpus_dir.glob("*.pdf"))
    assert len(files) >= 9
    for path in files:
        try:
            result = extract_offline(path.read_bytes(), path.name, None)
        except PdfError as exc:
            assert path.name == "broken-truncated.pdf", f"{path.name}: {exc}"
            continue
        assert result["filename"] == path.name
        assert result["pages"]
        for page in result["pages"]:
            assert page["status"] in ("processed", "skipped")
            for article in page["articles"]:
                assert set(article) == {"title", "subtitle", "author", "body", "topics", "summary"}


def test_truncated_file_is_a_clear_error(corpus_dir: Path) -> None:
    with pytest.raises(CorruptPdfError, match="damaged or truncated"):
        extract_offline((corpus_dir / "broken-truncated.pdf").read_bytes(), "b.pdf", None)


def test_scanned_issue_pages_are_skipped(corpus_dir: Path) -> None:
    result = extract_offline((corpus_dir / "sample-4page-issue.pdf").read_bytes(), "s.pdf", None)
    assert len(result["pages"]) == 4
    for page in result["pages"]:
        assert page["status"] == "skipped"
        assert page["reason"] == NO_TEXT_LAYER_REASON
        assert page["articles"] == []


def test_running_heads_removed(corpus_dir: Path) -> None:
    result = extract_offline(
        (corpus_dir / "federal-register-2020-17221.pdf").read_bytes(), "fr.pdf", None
    )
    text = _document_text(result)
    assert "Federal Register / Vol. 85" not in text
    assert "VerDate" not in text  # the rotated printer's slug in the margin
