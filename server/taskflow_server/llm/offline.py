"""A dependency-free extractive summarizer: the offline provider's engine.

It picks whole sentences of the input and returns them in input order, so it cannot invent
anything and works in any language that separates words with spaces or punctuation. Steps:

1. **Clean**: drop running heads and page furniture (short lines that repeat on three or more
   "pages", page numbers, lines with hardly any letters) and join hyphenated line breaks.
2. **Split** into sentences with a regular expression that knows common abbreviations, initials
   and decimal numbers, and also breaks at paragraph ends and CJK full stops.
3. **Classify** each sentence: a byline ("By Ana Ruiz"), a quote ('"...," said X.'), a
   fragment (a caption, a headline, a form label like "ACTION: Final rule."), standing matter
   (see below) or a real sentence. The **lead** is the paragraph a document labels as its own
   summary ("SUMMARY:", "Abstract:"; the label is dropped) when there is one, else the first
   real sentence; a news dateline before it ("HARBOR CITY —") stays with it but does not count
   as a word of it.
   **Standing matter** is what a publication prints around every document and says nothing
   about this one: notices about the section itself ("This section of ... contains notices to
   the public"), administrative labels (contacts, addresses, dates, agency, docket and billing
   lines: "FOR FURTHER INFORMATION CONTACT:", "BILLING CODE 1234-56-P") and references made of
   numbers and codes ("page 12, column 3", "[Docket No. ABC-2020-0001]"). It is never chosen
   while anything else is left.
4. **Score** each sentence: its cosine similarity to the document's subject, the centroid of
   word weights (term frequency x inverse sentence frequency, so words in every sentence, the
   function words of any language, weigh little) leaning towards the lead's words, plus a lead
   bonus for the first sentences, minus a penalty for quotes, bylines, fragments and run-ons.
5. **Select** the lead, then the best of the others, skipping any that repeat an already chosen
   one (word overlap), and return them in input order.

A few milliseconds per 1,000 words; ``benchmarks/`` holds the timing check.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from taskflow_server.pdf.standing import is_standing_matter

# The patterns below name typographic quotes, dashes and CJK punctuation on purpose.
# ruff: noqa: RUF001

LABEL = "extractive"
"""How results of this summarizer are labelled (the provider's ``model``)."""

_WORD = re.compile(r"[^\W\d_](?:[\w'’-]*\w)?", re.UNICODE)
_PAGE_FURNITURE = re.compile(
    r"^\s*(?:[-–—]?\s*\d{1,4}\s*[-–—]?|page\s+\d+(?:\s+of\s+\d+)?|p\.\s*\d+)\s*$", re.IGNORECASE
)
_ABBREVIATION_TEXT = """
    mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf fig figs no nos vol vols p pp ed eds al inc
    ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k sen rep gov gen col lt
    sgt capt art sec ch approx dept est ca ibid op cit sig sgg dott ing avv
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_TEXT.split())
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s+\S)|[。！？]+[」』”’)]*")
_DIGIT_RUN = re.compile(r"\d+")
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")
_SPACES = re.compile(r"[ \t\f\v]+")
_DATELINE = re.compile(
    r"^[A-Z][A-Z.'’-]+(?:\s+[A-Z][A-Z.'’-]*){0,3}"  # HARBOR CITY, WASHINGTON, ST. LOUIS
    r"(?:,\s*[A-Z][\w.]*(?:\s+[\w.]+){0,2})?"  # , Md. / , March 3
    r"(?:\s*\([A-Z][\w ]{0,15}\))?"  # (AP)
    r"\s*(?:[—–]|--?)\s*"
)
_BYLINE = re.compile(r"^(?:By|BY)\s+[A-Z][\w.'’-]*(?:\s+(?:[A-Z][\w.'’-]*|and|&|de|van|von))*")
_BYLINE_ROLE_TEXT = "and the of for at in staff writer writers reporter correspondent editor"
_BYLINE_ROLES = frozenset(_BYLINE_ROLE_TEXT.split())
_BYLINE_LINE = re.compile(
    r"^By\s+[A-Z][\w.'’-]*(?:\s+[A-Z][\w.'’-]*){0,3}"
    r"(?:\s*(?:,|and|&)\s*[A-Z][\w.'’-]*(?:\s+[A-Z][\w.'’-]*){0,3})*[.]?$"
)
_CAPTION = re.compile(
    r"^[(\[]?(?:photo|pictured|picture|above|below|left|right|caption|credit|image|file photo)"
    r"\b\s*[:(—–-]",
    re.I,
)
_LABEL = re.compile(r"^[A-Z][A-Z ]{1,30}:\s")
_OPEN_QUOTE = '"“‘«„'
_QUOTED_SPAN = re.compile(r"[\"“«„][^\"”»]{12,}[\"”»]|‘[^’]{12,}’")
_ATTRIBUTION = re.compile(
    r"\b(?:said|says|told|added|asked|noted|explained|recalled|warned|according to)\b", re.I
)
_TERMINAL = re.compile(r"[.!?…。！？][\"'”’»)\]]*$")
_CAPS_LABEL = re.compile(r"(?<=\S)\s+(?=[A-Z][A-Z ,]{2,40}:\s)")
"""An all-caps label ("AGENCY: ") after other text on a line: it starts a sentence."""
_LEAD_LABEL = re.compile(
    r"^(?:summary|abstract|synopsis|overview|in brief|at a glance)\s*[:.—–-]\s+(?=\S)", re.I
)
"""A label introducing the document's own summary of itself."""


def _normalise_line(line: str) -> str:
    return _DIGIT_RUN.sub("#", _SPACES.sub(" ", line.strip().lower()))


def strip_boilerplate(text: str) -> str:
    """Drop running heads, page numbers and letter-poor lines; keep paragraph breaks."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    counts = Counter(_normalise_line(line) for line in lines if line.strip())
    kept: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            kept.append("")
            continue
        if _PAGE_FURNITURE.match(stripped):
            continue
        letters = sum(ch.isalpha() for ch in stripped)
        if letters < max(2, len(stripped) // 4):
            continue
        if len(stripped) <= 120 and counts[_normalise_line(stripped)] >= 3:
            continue  # a running head or footer repeated page after page
        kept.append(stripped)
    return _HYPHEN_BREAK.sub(r"\1\2", "\n".join(kept))


def _ends_with_abbreviation(chunk: str) -> bool:
    words = chunk.rstrip().rsplit(None, 1)
    if not words:
        return False
    last = words[-1].rstrip(".").lstrip("(\"'“‘«").lower()
    if len(last) == 1 and last.isalpha():
        return True  # an initial: "J. Smith"
    return last in _ABBREVIATIONS


def _own_paragraphs(text: str) -> str:
    """Give a byline line its own paragraph, and start one at a line opening with a dateline."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        starts_one = _BYLINE_LINE.match(stripped) or _DATELINE.match(stripped)
        if starts_one and out and out[-1].strip():
            out.append("")
        out.append(line)
        if _BYLINE_LINE.match(stripped):
            out.append("")
    return "\n".join(out)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (paragraph breaks always end one).

    A byline on a line of its own is a sentence of its own; a dateline standing alone
    ("HARBOR CITY —") is joined to the sentence that follows it.
    """
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", _own_paragraphs(text)):
        flat = _SPACES.sub(" ", paragraph.replace("\n", " ")).strip()
        start = 0
        for match in _BOUNDARY.finditer(flat):
            piece = flat[start : match.end()].strip()
            following = flat[match.end() :].lstrip()[:1]
            if not piece or following.islower():
                continue  # "e.g. the", "approx. five": no new sentence starts in lower case
            if match.group().startswith(".") and _ends_with_abbreviation(piece):
                continue
            sentences.append(piece)
            start = match.end()
        tail = flat[start:].strip()
        if tail:
            sentences.append(tail)
    merged: list[str] = []
    for sentence in sentences:
        if merged and _is_bare_dateline(merged[-1]):
            merged[-1] = f"{merged[-1]} {sentence}"
        else:
            merged.append(sentence)
    return merged


def _is_bare_dateline(sentence: str) -> bool:
    match = _DATELINE.match(sentence + " ")
    return match is not None and match.end() >= len(sentence)


def strip_dateline(sentence: str) -> str:
    """``sentence`` without a leading news dateline ("HARBOR CITY —", "PARIS (AP) —")."""
    match = _DATELINE.match(sentence)
    return sentence[match.end() :] if match else sentence


BYLINE = "byline"
"""Kind of a sentence that names the writer: "By Ana Ruiz", "By ANA RUIZ, Staff Writer"."""
QUOTE = "quote"
"""Kind of a sentence that opens with a quote, or quotes someone with attribution."""
FRAGMENT = "fragment"
"""Kind of a caption, headline, form label ("ACTION: Final rule.") or other short piece."""
STANDING = "standing"
"""Kind of standing matter: a notice about the section, an administrative label (contact,
dates, docket, billing code) or a reference made of numbers and codes."""
SENTENCE = "sentence"
"""Kind of a real sentence: the lead is the first one."""


def sentence_kind(sentence: str) -> str:
    """Classify ``sentence`` as :data:`BYLINE`, :data:`QUOTE`, :data:`FRAGMENT`,
    :data:`STANDING` or :data:`SENTENCE` (a leading dateline is ignored)."""
    body = strip_dateline(sentence.strip())
    words = body.split()
    if not words:
        return FRAGMENT
    if _LEAD_LABEL.match(body):
        return SENTENCE
    if is_standing_matter(body):
        return STANDING
    byline = _BYLINE.match(body)
    if byline and len(words) <= 12:
        rest = _WORD.findall(body[byline.end() :])
        if all(w[0].isupper() or w.lower() in _BYLINE_ROLES for w in rest):
            return BYLINE
    if body[0] in _OPEN_QUOTE:
        return QUOTE
    if _QUOTED_SPAN.search(body) and _ATTRIBUTION.search(body):
        return QUOTE
    if _CAPTION.match(body):
        return FRAGMENT
    label = _LABEL.match(body)
    if label and len(body[label.end() :].split()) < 8:
        return FRAGMENT
    if len(words) < 5 or (len(words) < 15 and not _TERMINAL.search(body)):
        return FRAGMENT
    return SENTENCE


def _words(sentence: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(sentence)]


_KIND_WEIGHT = {SENTENCE: 1.0, QUOTE: 0.6, FRAGMENT: 0.3, BYLINE: 0.05, STANDING: 0.0}
_LEAD_PULL = 0.5
"""How far the subject leans from the document's centroid towards the lead's words."""


def _score(sentences: list[list[str]], kinds: list[str], lead: int | None) -> list[float]:
    n = len(sentences)
    sentence_freq: Counter[str] = Counter()
    for words in sentences:
        sentence_freq.update(set(words))
    isf = {w: math.log((n + 1) / (f + 0.5)) for w, f in sentence_freq.items()}
    centroid: Counter[str] = Counter()
    vectors: list[dict[str, float]] = []
    for words in sentences:
        vector = {w: c * isf[w] for w, c in Counter(words).items()}
        vectors.append(vector)
        centroid.update(vector)
    centroid_norm = math.sqrt(sum(v * v for v in centroid.values())) or 1.0
    if lead is not None:  # the lead states the subject: lean the centroid towards its words
        lead_vector = vectors[lead]
        lead_norm = math.sqrt(sum(v * v for v in lead_vector.values())) or 1.0
        centroid.update(
            {w: v * _LEAD_PULL * centroid_norm / lead_norm for w, v in lead_vector.items()}
        )
        centroid_norm = math.sqrt(sum(v * v for v in centroid.values())) or 1.0
    scores: list[float] = []
    for index, (words, vector) in enumerate(zip(sentences, vectors, strict=True)):
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        centrality = sum(v * centroid[w] for w, v in vector.items()) / (norm * centroid_norm)
        early = 0.25 / (1 + index) if index < 5 else 0.0
        length = len(words)
        shape = 1.0 if 6 <= length <= 60 else 0.5 if length >= 3 else 0.1
        scores.append((centrality + early) * shape * _KIND_WEIGHT[kinds[index]])
    return scores


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / (min(len(a), len(b)) or 1)


def summarize_text(text: str, sentences: int = 3) -> str:
    """Pick the lead and the most central other sentences of ``text``, joined in input order.

    The lead (the document's own labelled summary, else the first real sentence, see
    :func:`sentence_kind`) is always picked when there is one; standing matter only when
    nothing else is left. Returns every sentence when the text has no more than asked (standing
    matter left out when anything else remains), and ``""`` for empty text.
    """
    if sentences < 1:
        raise ValueError("sentences must be at least 1")
    candidates = split_sentences(_CAPS_LABEL.sub("\n\n", strip_boilerplate(text)))
    kinds = [sentence_kind(s) for s in candidates]
    if any(kind != STANDING for kind in kinds):
        candidates = [s for s, kind in zip(candidates, kinds, strict=True) if kind != STANDING]
        kinds = [kind for kind in kinds if kind != STANDING]
    labelled = next((i for i, s in enumerate(candidates) if _LEAD_LABEL.match(s)), None)
    candidates = [_LEAD_LABEL.sub("", s, count=1) for s in candidates]
    if len(candidates) <= sentences:
        return " ".join(candidates)
    first = next((i for i, kind in enumerate(kinds) if kind == SENTENCE), None)
    lead = labelled if labelled is not None else first
    tokenised = [_words(strip_dateline(s)) for s in candidates]
    scores = _score(tokenised, kinds, lead)
    ranked = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
    chosen: list[int] = [] if lead is None else [lead]
    word_sets = [set(words) for words in tokenised]
    for index in ranked:
        if len(chosen) == sentences:
            break
        if index in chosen or any(_overlap(word_sets[index], word_sets[j]) > 0.7 for j in chosen):
            continue
        chosen.append(index)
    for index in ranked:  # only near-duplicates left: fill up with the best of them
        if len(chosen) == sentences:
            break
        if index not in chosen:
            chosen.append(index)
    return " ".join(candidates[i] for i in sorted(chosen))
