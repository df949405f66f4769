"""A dependency-free extractive summarizer: the offline provider's engine.

It picks whole sentences of the input and returns them in input order, so it cannot invent
anything and works in any language that separates words with spaces or punctuation. Steps:

1. **Clean**: drop running heads and page furniture (short lines that repeat on three or more
   "pages", page numbers, lines with hardly any letters) and join hyphenated line breaks.
2. **Split** into sentences with a regular expression that knows common abbreviations, initials
   and decimal numbers, and also breaks at paragraph ends and CJK full stops.
3. **Score** each sentence: its cosine similarity to the document's centroid of word weights
   (term frequency x inverse sentence frequency, so words in every sentence, the function words
   of any language, weigh little), plus a lead bonus for the first sentences, minus a penalty
   for fragments and run-ons.
4. **Select** the best sentences, skipping any that repeat an already chosen one (word overlap),
   and return them in input order.

Around 1 ms per 1,000 words; ``benchmarks/`` holds the timing check.
"""

from __future__ import annotations

import math
import re
from collections import Counter

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


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (paragraph breaks always end one)."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
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
    return sentences


def _words(sentence: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(sentence)]


def _score(sentences: list[list[str]]) -> list[float]:
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
    scores: list[float] = []
    for index, (words, vector) in enumerate(zip(sentences, vectors, strict=True)):
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        centrality = sum(v * centroid[w] for w, v in vector.items()) / (norm * centroid_norm)
        lead = 0.25 / (1 + index) if index < 5 else 0.0
        length = len(words)
        shape = 1.0 if 6 <= length <= 60 else 0.5 if length >= 3 else 0.1
        scores.append((centrality + lead) * shape)
    return scores


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / (min(len(a), len(b)) or 1)


def summarize_text(text: str, sentences: int = 3) -> str:
    """Pick the ``sentences`` most central sentences of ``text``, joined in input order.

    Returns every sentence when the text has no more than asked, and ``""`` for empty text.
    """
    if sentences < 1:
        raise ValueError("sentences must be at least 1")
    candidates = split_sentences(strip_boilerplate(text))
    if len(candidates) <= sentences:
        return " ".join(candidates)
    tokenised = [_words(s) for s in candidates]
    scores = _score(tokenised)
    ranked = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    word_sets = [set(words) for words in tokenised]
    for index in ranked:
        if any(_overlap(word_sets[index], word_sets[j]) > 0.7 for j in chosen):
            continue
        chosen.append(index)
        if len(chosen) == sentences:
            break
    for index in ranked:  # only near-duplicates left: fill up with the best of them
        if len(chosen) == sentences:
            break
        if index not in chosen:
            chosen.append(index)
    return " ".join(candidates[i] for i in sorted(chosen))
