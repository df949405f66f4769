"""The offline splitter on pages of the second, independent generator (testing.broadsheet).

Fixed seeds 1 to 16 (never used by ``benchmarks/bench_pdf.py``, which draws seeds from one
million up): together they hold every page size, 3 to 6 columns, advertisements, photo
captions, kickers, decks and jumped stories. No advertisement, caption, kicker or deck may
come out as a title, and titles must match the truth (precision and recall at least 0.95).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from taskflow_server.pdf.extract import extract_offline
from taskflow_server.pdf.layout import find_gutters
from taskflow_server.pdf.quality import Quality, compare
from taskflow_server.pdf.reader import Line, open_pdf
from taskflow_server.testing.broadsheet import PAGE_SIZES, make_broadsheet

TEST_SEEDS = range(1, 17)


@pytest.fixture(scope="module")
def issues() -> list[tuple[int, bytes, dict[str, Any]]]:
    """(seed, PDF bytes, truth) for every test seed."""
    return [(seed, *make_broadsheet(seed)) for seed in TEST_SEEDS]


@pytest.fixture(scope="module")
def quality(issues: list[tuple[int, bytes, dict[str, Any]]]) -> Quality:
    """The quality summed over the test seeds."""
    total = Quality()
    for seed, data, truth in issues:
        total.add(compare(extract_offline(data, f"broadsheet-{seed}.pdf", None), truth))
    return total


def test_the_seeds_cover_every_feature(issues: list[tuple[int, bytes, dict[str, Any]]]) -> None:
    kinds: Counter[str] = Counter()
    sizes: set[str] = set()
    columns: set[int] = set()
    jumps = 0
    for _, data, truth in issues:
        sizes.add(truth["generator"]["page_size"])
        columns.add(truth["generator"]["columns"])
        kinds.update(insert["kind"] for insert in truth["generator"]["inserts"])
        for page in truth["pages"]:
            for article in page["articles"]:
                kinds["kicker"] += bool(article["kicker"])
                kinds["deck"] += bool(article["subtitle"])
        with open_pdf(data) as pdf:
            texts = [line.text for page in pdf.pages() for line in page.lines]
        jumps += any(text.startswith("Continued on page") for text in texts)
        assert not any(text.startswith("Continued") for text in _bodies(truth))
    assert sizes == set(PAGE_SIZES)
    assert len(columns) >= 3
    assert min(kinds[k] for k in ("advert", "caption", "kicker", "deck")) >= 5
    assert jumps >= 3


def _bodies(truth: dict[str, Any]) -> list[str]:
    return [a["body"] for page in truth["pages"] for a in page["articles"]]


def test_no_advert_caption_kicker_or_deck_becomes_a_title(quality: Quality) -> None:
    assert quality.insert_titles == []


def test_titles_match_the_truth(quality: Quality) -> None:
    assert quality.title_precision >= 0.95, quality.misses
    assert quality.title_recall >= 0.95, quality.misses
    assert quality.body_similarity >= 0.95


def test_jump_lines_are_not_body_text(issues: list[tuple[int, bytes, dict[str, Any]]]) -> None:
    for seed, data, _ in issues:
        result = extract_offline(data, f"broadsheet-{seed}.pdf", None)
        for page in result["pages"]:
            for article in page["articles"]:
                assert "Continued on page" not in article["body"]
                assert "Continued from page" not in article["body"]


def test_the_generator_is_deterministic() -> None:
    first = make_broadsheet(7)
    again = make_broadsheet(7)
    assert first[0] == again[0]
    assert first[1] == again[1]
    assert make_broadsheet(8)[1] != first[1]


def test_page_boxes_are_inherited_or_per_page() -> None:
    inherited, _ = make_broadsheet(2)
    per_page, truth = make_broadsheet(2, inherit_media_box=False)
    assert inherited.count(b"/MediaBox") == 1
    assert per_page.count(b"/MediaBox") == len(truth["pages"]) + 1
    width, height = PAGE_SIZES[truth["generator"]["page_size"]]
    for data in (inherited, per_page):
        with open_pdf(data) as pdf:
            assert {(p.width, p.height) for p in pdf.pages()} == {(width, height)}


def test_find_gutters_clamps_lines_outside_the_page() -> None:
    lines = [
        Line("running text of the left column", 10.0, 20.0 + 12 * k, 200.0, 30.0 + 12 * k, 9)
        for k in range(10)
    ]
    lines += [
        Line("running text of the right column", 220.0, 20.0 + 12 * k, 900.0, 30.0 + 12 * k, 9)
        for k in range(10)
    ]
    lines.append(Line("bleeding off the left edge", -40.0, 200.0, 150.0, 210.0, 9))
    gutters = find_gutters(lines, 9.0, 612.0)
    assert gutters and gutters[0][0] >= 195.0 and gutters[0][1] <= 225.0
    for width in (0.0, 50.0, 300.0):  # a page box far too small for its text: no IndexError
        assert isinstance(find_gutters(lines, 9.0, width), list)
