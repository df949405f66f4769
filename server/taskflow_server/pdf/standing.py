"""Standing matter of printed documents: what a publication prints on every notice or page
(a notice about the section itself, administrative labels such as contact, dates, agency,
action, docket or billing code, page and column references), as opposed to what a document
says. Summaries (the offline summarizer, an article's lead summary) skip it while anything else
is left.

The patterns describe how such matter is phrased in general, not any one publication's text.
"""

from __future__ import annotations

import re

__all__ = ["is_standing_matter", "own_summary"]

_STANDING_LABEL = re.compile(
    r"^(?:for (?:further|more|additional) information(?: contact)?|further information|"
    r"supplementary information|additional information|contacts?|addresses|address|dates?|"
    r"effective dates?|comment dates?|agency|agencies|action|docket(?: no\.?| number)?|"
    r"billing code|rin|fr doc\.?|filed|file no\.?|reference|ref\.?|distribution|"
    r"copyright)\b\s*[:.]",
    re.I,
)
"""Administrative labels of official and legal documents: contacts, dates, docket lines."""
_STANDING_PATTERNS = (
    # a notice about the section, page or publication itself
    re.compile(
        r"^(?:this|the) (?:section|part|page|column|supplement|issue|edition|publication|"
        r"category|list|listing)\b[^.]{0,80}?\b(?:contains?|lists?|includes?|publish(?:es)?|"
        r"prints?|carries|is reserved|is published)\b",
        re.I,
    ),
    re.compile(
        r"^the purpose of (?:these|this|the) (?:notices?|sections?|pages?|listings?|columns?)\b",
        re.I,
    ),
    # codes and references: billing codes, dockets, page and column references
    re.compile(r"\bbilling code\b\s*[\w-]*\d", re.I),
    re.compile(r"^\[?\s*(?:docket|file|case|reference)\s+(?:no\.?|number)\s*\S*\d", re.I),
    re.compile(r"\b(?:page|p\.)\s*\d+\s*,\s*(?:column|col\.)\s*\d+", re.I),
    re.compile(r"^(?:continued|see|turn to) (?:on |from )?(?:page|p\.) ?[A-Z]?\d+\b", re.I),
)
_CODE_TOKEN = re.compile(r"\d")


def is_standing_matter(sentence: str) -> bool:
    """True for standing matter (see :data:`STANDING`): the publication's furniture, not what
    the document says."""
    body = sentence.strip().lstrip("[(").strip()
    if _STANDING_LABEL.match(body) or any(p.search(body) for p in _STANDING_PATTERNS):
        return True
    tokens = body.split()
    coded = sum(1 for t in tokens if _CODE_TOKEN.search(t))
    return 0 < len(tokens) <= 12 and coded * 2 >= len(tokens)  # "RIN 2120-AA64"


_OWN_SUMMARY = re.compile(
    r"(?:^|(?<=\s))(?:SUMMARY|Summary|ABSTRACT|Abstract|SYNOPSIS|Synopsis)\s*:\s+"
)
"""The label a document puts before its own summary of itself."""
_NEXT_LABEL = re.compile(r"\s[A-Z][A-Z ,]{2,40}:\s")
"""The next all-caps label ("DATES: "), which ends a labelled paragraph."""


def own_summary(text: str) -> str | None:
    """The paragraph a document labels as its own summary ("SUMMARY: ...", "Abstract: ..."),
    up to the next all-caps label; ``None`` when it has none."""
    found = _OWN_SUMMARY.search(text)
    if found is None:
        return None
    rest = text[found.end() :]
    end = _NEXT_LABEL.search(rest)
    paragraph = (rest[: end.start()] if end else rest).strip()
    return paragraph or None
