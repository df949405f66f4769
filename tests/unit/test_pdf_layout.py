"""The offline article splitter: text helpers, furniture, reading order, the sample archive."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.extract import NO_TEXT_LAYER_REASON, extract_offline
from taskflow_server.pdf.layout import (
    Block,
    find_furniture,
    is_page_number,
    join_lines,
    lead_summary,
    order_blocks,
    topics_for,
)
from taskflow_server.pdf.quality import evaluate_folder
from taskflow_server.pdf.reader import Line, PageText


def _line(text: str, x0: float, top: float, x1: float, size: float = 9.0) -> Line:
    return Line(text=text, x0=x0, top=top, x1=x1, bottom=top + size * 1.1, size=size)


def test_hyphenation_repaired() -> None:
    assert join_lines(["the infor-", "mation age"]) == "the information age"
    assert join_lines(["a soft\u00ad", "hyphen"]) == "a soft\u00ad hyphen"  # not a line-end hyphen
    assert join_lines(["year 2018-", "23 data"]) == "year 2018- 23 data"  # digits stay apart
    assert join_lines(["the State-", "Department"]) == "the State- Department"  # capital: keep


def test_hyphenated_compound_kept_when_the_document_uses_it() -> None:
    vocab = frozenset({"long-term", "plans"})
    assert join_lines(["long-", "term plans"], vocab) == "long-term plans"
    assert join_lines(["long-", "term plans"]) == "longterm plans"


@pytest.mark.parametrize("text", ["4", "- 4 -", "Page 4", "page 12 of 48", "A7", "p. 3"])
def test_page_numbers(text: str) -> None:
    assert is_page_number(text)


@pytest.mark.parametrize("text", ["4 dead in crash", "Page One Stories", "2020 budget passes"])
def test_not_page_numbers(text: str) -> None:
    assert not is_page_number(text)


def test_running_heads_found_on_repeated_margin_lines() -> None:
    pages = []
    for n in range(1, 4):
        lines = [
            _line(f"THE DAILY PLANET - May {n}, 2024", 36, 20, 300, 7),
            _line("An article line that is different on every page " + "x" * n, 36, 300, 500),
            _line(str(n), 300, 770, 310, 7),
        ]
        pages.append(PageText(n, 612, 792, lines))
    found = find_furniture(pages)
    assert {(p, 0) for p in range(3)} <= found
    assert {(p, 2) for p in range(3)} <= found
    assert not any(i == 1 for _, i in found)


def test_reading_order_spanning_headline_then_columns() -> None:
    head = Block([_line("Big headline across both columns", 36, 40, 560, 24)], (0, 1), 1)
    left_top = Block([_line("left column first", 36, 80, 290)], (0, 0), 1)
    left_bottom = Block([_line("left column second", 36, 400, 290)], (0, 0), 1)
    right_top = Block([_line("right column first", 310, 80, 560)], (1, 1), 1)
    right_bottom = Block([_line("right column second", 310, 400, 560)], (1, 1), 1)
    ordered = order_blocks([right_bottom, left_bottom, right_top, head, left_top])
    assert [b.lines[0].text for b in ordered] == [
        "Big headline across both columns",
        "left column first",
        "left column second",
        "right column first",
        "right column second",
    ]


def test_reading_order_stops_at_a_spanning_block_between_rows() -> None:
    a1 = Block([_line("row one left", 36, 80, 290)], (0, 0), 1)
    b1 = Block([_line("row one right", 310, 80, 560)], (1, 1), 1)
    band = Block([_line("A second headline across the page", 36, 300, 560, 20)], (0, 1), 1)
    a2 = Block([_line("row two left", 36, 360, 290)], (0, 0), 1)
    b2 = Block([_line("row two right", 310, 360, 560)], (1, 1), 1)
    ordered = order_blocks([b2, a2, band, b1, a1])
    assert [b.lines[0].text for b in ordered] == [
        "row one left",
        "row one right",
        "A second headline across the page",
        "row two left",
        "row two right",
    ]


def test_summary_and_topics() -> None:
    body = (
        "The harbor bridge opened on Monday. Traffic on the harbor bridge was light. "
        "Officials expect more cars next week."
    )
    assert lead_summary(body) == (
        "The harbor bridge opened on Monday. Traffic on the harbor bridge was light."
    )
    assert topics_for("Harbor bridge opens", body)[:2] == ["harbor", "bridge"]


# --- the bundled sample archive ----------------------------------------------------------------


def _archive() -> list[tuple[Path, dict[str, object]]]:
    pairs = []
    for pdf in sorted(sample_dir().glob("*.pdf")):
        pairs.append((pdf, json.loads(pdf.with_suffix(".json").read_text(encoding="utf-8"))))
    return pairs


def test_archive_quality_meets_the_bar() -> None:
    quality = evaluate_folder(sample_dir())
    assert quality.documents >= 4
    assert quality.title_precision >= 0.9, quality.misses
    assert quality.title_recall >= 0.9, quality.misses
    assert quality.body_similarity >= 0.9
    assert quality.status_errors == 0


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def test_continued_articles_are_joined_on_their_first_page() -> None:
    joined = 0
    for pdf, truth in _archive():
        result = extract_offline(pdf.read_bytes(), pdf.name, None)
        pages = result["pages"]
        for true_page, page in zip(truth["pages"], pages, strict=True):  # type: ignore[call-overload]
            for article in page["articles"]:
                assert "continued on page" not in article["body"].lower()
                assert "continued from page" not in article["body"].lower()
            if true_page["status"] != "processed":
                continue
            titles = {a["title"]: a for a in page["articles"]}
            for true_article in true_page["articles"]:
                found = titles[true_article["title"]]
                tail = _words(true_article["body"])[-200:]
                assert tail in _words(found["body"])
        # the jump headline on the continuation page is not reported as its own article
        first_titles = {a["title"] for a in pages[0]["articles"]}
        for page in pages[1:]:
            for article in page["articles"]:
                short = " ".join(article["title"].split()[:3])
                assert not any(t.startswith(short) and t != article["title"] for t in first_titles)
        joined += 1
    assert joined >= 4


def test_running_heads_and_folios_are_gone() -> None:
    for pdf, truth in _archive():
        result = extract_offline(pdf.read_bytes(), pdf.name, None)
        for page in result["pages"]:
            for article in page["articles"]:
                text = article["title"] + " " + article["body"]
                assert "Page " + str(page["page_number"]) not in text
                assert " - " + str(truth["issue_date"]) not in text
                assert "GAZETTE" not in text and "LEDGER" not in text


def test_scanned_sample_pages_are_skipped() -> None:
    skipped = 0
    for pdf, truth in _archive():
        result = extract_offline(pdf.read_bytes(), pdf.name, "2024-01-01")
        assert result["issue_date"] == "2024-01-01"
        for true_page, page in zip(truth["pages"], result["pages"], strict=True):  # type: ignore[call-overload]
            if true_page["status"] == "skipped":
                skipped += 1
                assert page == {
                    "page_number": true_page["page_number"],
                    "status": "skipped",
                    "reason": NO_TEXT_LAYER_REASON,
                    "articles": [],
                }
    assert skipped >= 2
