"""Titles a person would accept, on real archive pages (issue 21; the shared corpus).

The junk rule here is the test's own, independent of the layout code: a title is junk when
it is empty, has fewer than two words of two letters or more (unless it is one word of four
letters or more that is no article or pronoun), or holds a token the text-quality judge
(:mod:`taskflow_server.pdf.textscore`) calls junk. The National Tribune page is read the way
the worker reads it: its hidden OCR layer scores under the threshold, so the page is OCR'd
(once per module, at the default resolution: lower ones misread its heads) and the better
reading kept.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import pytest

from taskflow_server.pdf.extract import extract_offline
from taskflow_server.pdf.ocr import OcrOptions, engine_available, ocr_page
from taskflow_server.pdf.textscore import DEFAULT_MIN_QUALITY, judge_token

ONE_WORD_STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "it",
        "its",
        "this",
        "that",
        "he",
        "she",
        "they",
        "we",
        "you",
        "which",
        "what",
    ]
)
TRIBUNE_STORIES = [
    "Pennsylvania Reserves. Career of These Veterans from Cold Harbor to Appomattox.",
    "The United States Capitol. A Destructive Fire in the Supreme Court Apartments.",
]

needs_ocr = pytest.mark.skipif(not engine_available(), reason="no OCR engine installed")


def is_junk(title: str) -> bool:
    """The test's junk rule (see the module docstring)."""
    tokens = title.split()
    if any(judge_token(t).kind == "junk" for t in tokens):
        return True
    words = [w for w in (re.sub(r"[^A-Za-z]", "", t) for t in tokens) if len(w) >= 2]
    if len(words) >= 2:
        return False
    return not (len(words) == 1 and len(words[0]) >= 4 and words[0].lower() not in ONE_WORD_STOP)


def normalise(text: str) -> str:
    """Lower case, letters and digits only, single spaces."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def heading_matches(expected: str, article: dict[str, Any]) -> float:
    """How well the article's title and the start of its deck read as ``expected`` (0..1)."""
    want = normalise(expected)
    got = normalise(f"{article['title']} {article['subtitle']}")[: len(want) + 4]
    return SequenceMatcher(None, want, got).ratio()


def titles(result: dict[str, Any]) -> list[str]:
    """Every article title of a result."""
    return [a["title"] for p in result["pages"] for a in p["articles"]]


@pytest.fixture(scope="module")
def tribune(corpus_dir: Path) -> dict[str, Any]:
    """The National Tribune page read as the worker reads it (OCR: its text layer is poor)."""
    if not engine_available():
        pytest.skip("no OCR engine installed")
    data = (corpus_dir / "ndnp-sample1.pdf").read_bytes()
    return extract_offline(
        data, "ndnp-sample1.pdf", None, None, OcrOptions(), None, DEFAULT_MIN_QUALITY
    )


@needs_ocr
def test_tribune_is_read_by_ocr(tribune: dict[str, Any]) -> None:
    assert tribune["pages"][0]["reader"] == "ocr"


@needs_ocr
def test_tribune_gives_its_two_stories(tribune: dict[str, Any]) -> None:
    articles = tribune["pages"][0]["articles"]
    for story in TRIBUNE_STORIES:
        best = max(heading_matches(story, a) for a in articles)
        assert best >= 0.8, (story, [(a["title"], a["subtitle"][:60]) for a in articles])
    # Captions are kept off the article list (with the first article), so nothing else.
    assert len(articles) <= len(TRIBUNE_STORIES)


@needs_ocr
def test_tribune_has_no_junk_title(tribune: dict[str, Any]) -> None:
    assert [t for t in titles(tribune) if is_junk(t)] == []


@needs_ocr
def test_tribune_subheads_stay_in_their_story(tribune: dict[str, Any]) -> None:
    found = {normalise(t) for t in titles(tribune)}
    assert not found & {"what the building is", "the fire", "the final campaign"}


def test_federal_register_title_is_the_rule_s_own(corpus_dir: Path) -> None:
    name = "federal-register-2020-17221.pdf"
    result = extract_offline((corpus_dir / name).read_bytes(), name, None)
    found = titles(result)
    assert found, "no article"
    assert "Proposed Rules" not in found
    assert found[0].startswith("Airworthiness Directives")
    # Its lead summary is what the rule is about (its own SUMMARY paragraph), not the
    # section's standing notice or the agency and docket lines.
    (article,) = [a for page in result["pages"] for a in page["articles"]]
    assert article["summary"].startswith("The FAA proposes"), article["summary"][:200]
    assert "this section of the federal register" not in article["summary"].lower()


def test_no_page_number_becomes_an_untitled_article(corpus_dir: Path) -> None:
    name = "pr-00530-ml-lines.pdf"
    result = extract_offline((corpus_dir / name).read_bytes(), name, None)
    for page in result["pages"]:
        for article in page["articles"]:
            assert article["title"], article["body"][:80]
            assert not re.fullmatch(r"\W*\d+\W*", article["body"].strip())


@pytest.mark.parametrize(
    "name",
    [
        "dmca.pdf",
        "federal-register-2020-17221.pdf",
        "i1040nr.pdf",
        "issue-33-lorem-ipsum.pdf",
        "pr-00530-ml-lines.pdf",
        "sample-color-newsletter.pdf",
    ],
)
def test_no_junk_title_in_the_corpus(corpus_dir: Path, name: str) -> None:
    result = extract_offline((corpus_dir / name).read_bytes(), name, None)
    assert [t for t in titles(result) if is_junk(t)] == []


@needs_ocr
def test_weekly_journal_still_gives_articles_through_ocr(corpus_dir: Path) -> None:
    name = "sample-4page-issue.pdf"
    data = (corpus_dir / name).read_bytes()
    first = ocr_page(data, 1, OcrOptions())
    skipped = dict.fromkeys((2, 3, 4), "not read in this test (time)")
    result = extract_offline(data, name, None, None, None, {1: first, **skipped})
    articles = result["pages"][0]["articles"]
    assert articles
    found = titles(result)
    # Every article has a title (the specks above the nameplate are no article), none is
    # junk, and none is a line of the running text that OCR measured a little tall.
    assert all(found), [a["body"][:60] for a in articles if not a["title"]]
    assert [t for t in found if is_junk(t)] == []
    assert [t for t in found if reads_as_running_text(t)] == []


def reads_as_running_text(title: str) -> bool:
    """The test's own rule for a sentence mistaken for a head: six words or more, and most
    of the words of three letters or more start in lower case (a head is in capitals or
    title case; "Let the eyo of the child, with great success" is a line of a story)."""
    words = [re.sub(r"[^A-Za-z]", "", t) for t in title.split()]
    long_words = [w for w in words if len(w) >= 3]
    if len(words) < 6 or not long_words:
        return False
    return sum(w[0].islower() for w in long_words) > len(long_words) / 2


def test_running_text_rule_of_this_test() -> None:
    assert reads_as_running_text("Let the eyo of the child, with great success up to the very")
    assert reads_as_running_text("“Ah, Anna!” said I, laughing at her,")
    assert not reads_as_running_text("The Greatest Wonder of the World")
    assert not reads_as_running_text("PENNSYLVANIA RESERVES. Career of These Veterans")
