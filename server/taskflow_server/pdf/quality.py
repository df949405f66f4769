"""Measure extraction quality against ground truth (the JSON written by :mod:`.samples`).

:func:`evaluate` runs the offline extractor on one PDF (or takes a result already computed)
and compares it with the ground truth, page by page:

- **titles**: an extracted title matches a true one on the same page when their normalised
  words are equal (or nearly: a difflib ratio of at least 0.9); precision = matched /
  extracted, recall = matched / true;
- **bodies**: for every matched title, a token-level difflib ratio between the two bodies after
  normalisation (lower case, dashes unified, punctuation dropped);
- **status**: pages whose status (processed / skipped) differs from the ground truth;
- **inserts taken as titles**: extracted titles that are no article's title but the text of
  something that is not an article: a part of an advertisement or a caption (the truth's
  ``generator.inserts``), or an article's kicker or deck (its ``kicker`` / ``subtitle``).

Pages the ground truth marks ``skipped`` (no text layer) only count towards the status check.
:func:`evaluate_folder` sums the counts over every ``*.pdf`` with a ``.json`` beside it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from taskflow_server.pdf.extract import extract_offline
from taskflow_server.pdf.layout import normalise_title

logger = logging.getLogger(__name__)

TITLE_MATCH_RATIO = 0.9
"""Two normalised titles this similar (difflib ratio) count as the same title."""


def normalise_text(text: str) -> list[str]:
    """Lower-case word tokens with dashes unified and punctuation dropped."""
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text.lower())
    text = re.sub(r"([a-z])-\s*\n\s*([a-z])", r"\1\2", text)
    return re.sub(r"[^0-9a-z]+", " ", text).split()


def body_similarity(extracted: str, truth: str) -> float:
    """Token-level similarity (0..1) of two bodies."""
    a, b = normalise_text(extracted), normalise_text(truth)
    if not a and not b:
        return 1.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


@dataclass
class Quality:
    """Counts and scores for one document or a folder of them."""

    true_titles: int = 0
    found_titles: int = 0
    matched_titles: int = 0
    similarities: list[float] = field(default_factory=list)
    status_errors: int = 0
    documents: int = 0
    misses: list[str] = field(default_factory=list)
    insert_titles: list[str] = field(default_factory=list)

    @property
    def title_precision(self) -> float:
        """Matched titles / extracted titles (1.0 when nothing was extracted nor expected)."""
        return self.matched_titles / self.found_titles if self.found_titles else 1.0

    @property
    def title_recall(self) -> float:
        """Matched titles / true titles."""
        return self.matched_titles / self.true_titles if self.true_titles else 1.0

    @property
    def body_similarity(self) -> float:
        """Mean body similarity over matched articles."""
        return sum(self.similarities) / len(self.similarities) if self.similarities else 0.0

    def add(self, other: Quality) -> None:
        """Accumulate another document's counts."""
        self.true_titles += other.true_titles
        self.found_titles += other.found_titles
        self.matched_titles += other.matched_titles
        self.similarities.extend(other.similarities)
        self.status_errors += other.status_errors
        self.documents += other.documents
        self.misses.extend(other.misses)
        self.insert_titles.extend(other.insert_titles)


def _same_title(a: str, b: str) -> bool:
    na, nb = normalise_title(a), normalise_title(b)
    if not na or not nb:
        return False
    return na == nb or SequenceMatcher(None, na, nb).ratio() >= TITLE_MATCH_RATIO


def compare(result: dict[str, Any], truth: dict[str, Any]) -> Quality:
    """Compare an extraction result with ground truth (both in the result shape)."""
    quality = Quality(documents=1)
    found_pages = {p["page_number"]: p for p in result.get("pages", [])}
    inserts: dict[int, list[str]] = {}
    for insert in (truth.get("generator") or {}).get("inserts", []):
        parts = str(insert.get("text", "")).split(" / ")
        inserts.setdefault(int(insert.get("page", 0)), []).extend(parts)
    for true_page in truth.get("pages", []):
        number = true_page["page_number"]
        found = found_pages.get(number, {"status": "missing", "articles": []})
        if found.get("status") != true_page.get("status"):
            quality.status_errors += 1
        if true_page.get("status") != "processed":
            continue
        true_articles = list(true_page.get("articles", []))
        found_articles = list(found.get("articles", []))
        quality.true_titles += len(true_articles)
        quality.found_titles += len(found_articles)
        unused = list(found_articles)
        for article in true_articles:
            match = next((f for f in unused if _same_title(f["title"], article["title"])), None)
            if match is None:
                quality.misses.append(f"{truth.get('filename')} p{number}: {article['title']}")
                continue
            unused.remove(match)
            quality.matched_titles += 1
            quality.similarities.append(body_similarity(match["body"], article["body"]))
        not_titles = list(inserts.get(number, []))
        for article in true_articles:
            not_titles += [str(article.get(key) or "") for key in ("kicker", "subtitle")]
        for extra in unused:
            if any(_same_title(extra["title"], text) for text in not_titles if text):
                quality.insert_titles.append(f"{truth.get('filename')} p{number}: {extra['title']}")
    return quality


def evaluate(pdf: bytes | str | Path, ground_truth: dict[str, Any] | str | Path) -> Quality:
    """Extract ``pdf`` offline and compare it with ``ground_truth`` (a dict or a JSON path)."""
    data = pdf if isinstance(pdf, bytes) else Path(pdf).read_bytes()
    truth = (
        ground_truth
        if isinstance(ground_truth, dict)
        else json.loads(Path(ground_truth).read_text(encoding="utf-8"))
    )
    result = extract_offline(data, str(truth.get("filename", "")), truth.get("issue_date"))
    return compare(result, truth)


def evaluate_folder(folder: str | Path) -> Quality:
    """Aggregate :func:`evaluate` over every PDF in ``folder`` that has a JSON beside it."""
    total = Quality()
    for path in sorted(Path(folder).glob("*.pdf")):
        truth = path.with_suffix(".json")
        if truth.exists():
            total.add(evaluate(path, truth))
    return total
