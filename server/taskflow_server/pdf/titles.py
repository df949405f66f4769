"""Whether a line of text could be a title a reader would accept, from the text alone.

A headline is set in words: a fragment of one ("tails of the Fire.", "Harbor to"), a page
number, a lone article word ("THE", "It"), punctuation (a caution sign's "!") or OCR noise
(``f.a iwfrt:w i Wr?``) is not one, however large its type. The layout (:mod:`.layout`) uses
these tests to decide whether large type heads an article; type that fails them joins the
text around it, or is dropped when it is noise.

The rules, all about how titles are written in any Latin-script language:

- **Mostly real words**: each token is judged by :func:`~.textscore.judge_token`; a title
  has no junk token, except one among five or more words (a long OCR'd headline with one
  misread word is still that headline).
- **At least two real words** (of two letters or more, one of them not a function word), or
  one word of four letters or more that is not a function word (a one-word headline: the
  caller checks that it is set large, bold or in capitals, and apart).
- **Starts like a sentence**: its first letter is a capital (or it starts with a digit or
  a quotation mark before one); a title starting in lower case is the tail of a line.
- **Not a date line**: a line giving a full date ("NOVEMBER 10, 1898") is a masthead's
  dateline or a form's field, not a headline.
- **Ends like a phrase**: not on a hyphen or on an article, preposition or conjunction
  without punctuation after it ("Cold Harbor to"), which is a line cut before its end; not a
  one-word title on a comma ("Rides,"), a piece of a longer line; and not on a comma unless in
  capitals or title case (an advertiser's "WAKEFIELD & HOWE," is a head, "the 21st," is not).

One more test needs the type size, so the layout applies it: a head set at (about) the text's
own size stands out only by its case, so it must be in capitals or title case
(:func:`headline_case`). A line of running text that OCR measured a little tall ("Let the eye
of the child, with great success up to the very period") is in sentence case.
"""

from __future__ import annotations

import re
import unicodedata

from taskflow_server.pdf.textscore import judge_token

FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "he",
        "she",
        "they",
        "we",
        "i",
        "you",
        "of",
        "in",
        "on",
        "at",
        "to",
        "by",
        "for",
        "and",
        "or",
        "but",
        "if",
        "as",
        "is",
        "was",
        "be",
        "de",
        "la",
        "le",
        "les",
        "el",
        "los",
        "das",
        "der",
        "die",
        "und",
        "et",
        "y",
        "e",
        "o",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "did",
        "do",
        "does",
        "has",
        "had",
        "have",
        "were",
        "are",
        "not",
        "with",
        "from",
        "into",
        "than",
        "then",
        "there",
    ]
)
"""Words that alone carry no title (articles, pronouns, prepositions, conjunctions)."""

DANGLING_WORDS = frozenset(
    ["a", "an", "the", "of", "and", "or", "to", "from", "with", "by", "at", "in", "into", "for"]
)
"""Words a headline never ends on without punctuation: a cut line ends there."""

TITLES_OF_ADDRESS = frozenset(["mr.", "mrs.", "messrs.", "dr.", "rev.", "hon.", "gen.", "col."])
"""Words that are always followed by a name: a line ending on one was cut."""

ONE_WORD_MIN_LETTERS = 4
"""A one-word title has at least this many letters ("Obituaries", "Sports")."""

_LETTER_RE = re.compile(r"[^\W\d_]")
_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    "sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DATE_RE = re.compile(
    rf"\b(?:{_MONTHS})\b[\W_]{{0,3}}\d{{1,2}}[\W_]{{1,3}}\d{{4}}\b", re.IGNORECASE
)
_BOX_DRAWING = frozenset("|¦‖│┃┆┇┊┋═║╎╏─━_=~^`'\".,:;!?*+#%&/\\<>()[]{}-–—•·°")  # noqa: RUF001


def _words(text: str) -> tuple[list[str], int]:
    """The word tokens of ``text`` (letters only, outer punctuation stripped), and the number
    of junk tokens."""
    words: list[str] = []
    junk = 0
    for token in text.split():
        verdict = judge_token(token)
        if verdict.kind == "junk":
            junk += 1
        elif verdict.kind == "word":
            words.append(verdict.token)
    return words, junk


def is_noise(text: str) -> bool:
    """True for text with no real word in it: punctuation, digits, box-drawing residue, a
    lone letter, or tokens that are mostly junk (OCR noise such as ``ilnnnnnnnRnnnQOa``)."""
    words, junk = _words(text)
    real = [w for w in words if len(_LETTER_RE.findall(w)) >= 2]
    if not real:
        return True
    return junk > len(real)


def title_problem(text: str) -> str | None:
    """Why ``text`` is not an acceptable title (None: it is one). See the module docstring."""
    text = " ".join(text.split())
    if not text or not _LETTER_RE.search(text):
        return "no letters"
    words, junk = _words(text)
    if junk and (junk > 1 or len(words) < 5):
        return "noise"
    real = [w for w in words if len(_LETTER_RE.findall(w)) >= 2]
    content = [w for w in real if w.lower() not in FUNCTION_WORDS]
    if not content:
        return "no real word"
    if len(real) < 2 and len(real[0]) < ONE_WORD_MIN_LETTERS:
        return "too short"
    if has_date(text):
        return "a date line"
    first = _LETTER_RE.search(text)
    assert first is not None
    lead = text[: first.start()]
    if first.group().islower() and not any(ch.isdigit() for ch in lead):
        return "starts in lower case"
    last = text.split()[-1]
    if last[-1:] in "-\u2010\u2011\u00ad":
        return "ends on a hyphen"
    if last.lower() in DANGLING_WORDS:
        return "ends on a function word"
    if last.lower() in TITLES_OF_ADDRESS:
        return "ends on a title of address"  # "... of his speech, Mr." (the name is next)
    if len(real) == 1 and last[-1:] in ",;":
        return "one word of a list"  # "Rides," "SHOES,": the start or end of a longer line
    if last[-1:] in ",;" and not headline_case(text):
        return "ends mid-sentence"  # "17th, state that. Wednesday, the 21st,"
    return None


HEADLINE_CASE_SHARE = 0.6
"""The share of a text-size head's content words that start with a capital, at least."""


def headline_case(text: str) -> bool:
    """True when ``text`` is set as a heading is in text type: in capitals, or in title case
    (most words that are not function words start with a capital: "The Greatest Wonder of the
    World", "WAKEFIELD & HOWE"). Sentence-case running text ("said I, laughing at her") is not.
    """
    words, _junk = _words(text)
    content = [
        w
        for w in words
        if len(_LETTER_RE.findall(w)) >= 2
        and w[:1].isalpha()  # "17th", "1898": no case to judge
        and w.lower() not in FUNCTION_WORDS
    ]
    if not content:
        return False
    capitalised = sum(1 for w in content if w[:1].isupper())
    return capitalised >= HEADLINE_CASE_SHARE * len(content)


def acceptable_title(text: str) -> bool:
    """True when ``text`` reads as a title (see :func:`title_problem`)."""
    return title_problem(text) is None


def has_date(text: str) -> bool:
    """True when ``text`` gives a full date ("NOVEMBER 10, 1898", "May 2, 2025"): a
    masthead's dateline, a form's field."""
    return bool(_DATE_RE.search(text))


def is_junk_line(text: str) -> bool:
    """True for an OCR line that is residue, not text: rules, box edges and specks read as
    ``|``, ``—``, ``:``, ``i:``, or a run of symbols, with at most one letter in it."""
    stripped = "".join(ch for ch in text if not ch.isspace())
    if not stripped:
        return True
    letters = [ch for ch in stripped if ch.isalpha()]
    digits = [ch for ch in stripped if ch.isdigit()]
    if digits and not letters:
        return False  # a number (a folio, a price) is text
    if len(letters) <= 1 and len(letters) < len(stripped):
        return all(
            ch in _BOX_DRAWING or ch.isalpha() or unicodedata.category(ch).startswith(("P", "S"))
            for ch in stripped
        )
    return False


__all__ = [
    "DANGLING_WORDS",
    "FUNCTION_WORDS",
    "HEADLINE_CASE_SHARE",
    "ONE_WORD_MIN_LETTERS",
    "TITLES_OF_ADDRESS",
    "acceptable_title",
    "has_date",
    "headline_case",
    "is_junk_line",
    "is_noise",
    "title_problem",
]
