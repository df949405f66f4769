"""Our own offline article splitter: text lines -> blocks -> reading order -> articles.

The steps, all pure functions over :class:`~taskflow_server.pdf.reader.PageText`:

1. **Page furniture** (:func:`find_furniture`): lines in the top or bottom margin whose text,
   with digits masked, recurs at about the same height on several pages (running heads, dated
   folios) and bare page numbers ("4", "-4-", "Page 4 of 48") are dropped.
2. **Columns** (:func:`find_gutters`): vertical white stripes that body-size lines never cross
   (a few short lines may: a date line, a two-column caption), found from a coverage profile
   of line x-extents clamped to the page. Each line gets the span of columns it covers, so a
   headline across three columns is never glued to the text of one of them. Display lines
   the reader split at a wide word space are joined again (:func:`merge_spaced_words`), and a
   line holding two side-by-side headlines is cut at the gutter
   (:func:`split_joined_headlines`).
3. **Blocks** (:func:`build_blocks`): lines stacked with body leading, overlapping horizontally,
   same size, boldness and column span.
4. **Reading order** (:func:`order_blocks`): a topological sort of Breuel's partial order:
   ``a`` before ``b`` when they overlap horizontally and ``a`` is higher, or when ``a`` is
   wholly left of ``b`` and no block between them vertically overlaps both. This reads columns
   top to bottom, left to right, and puts a spanning headline before the columns under it.
5. **Articles** (:func:`split_articles`): a block set noticeably larger than the body text is
   a headline. A short label directly above a larger headline and aligned with it is its
   kicker (neither a title nor body text); a smaller or italic block directly under it, flush
   with it or centred under it, is the deck (the subtitle); a "By ..." line the author; the
   rest up to the next headline is the body. A head whose whole compact region is centred on
   one axis in several sizes of type is an advertisement and is dropped (:mod:`.adverts`).
   Hyphenation at line ends is repaired ("infor-" + "mation" -> "information", unless the
   hyphenated form occurs elsewhere).
6. **Jumps** (:func:`join_continuations`): "Continued on page N" / "Continued from page M"
   lines are removed and the two parts joined on the page where the article starts; text at
   the top of a page before any headline continues the previous page's last article.

:func:`analyse_document` runs all of it and returns one list of :class:`Article` per page.
"""

from __future__ import annotations

import heapq
import logging
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from taskflow_server.pdf.adverts import display_matter
from taskflow_server.pdf.reader import Line, PageText, line_bands
from taskflow_server.pdf.standing import is_standing_matter, own_summary
from taskflow_server.pdf.titles import (
    FUNCTION_WORDS,
    acceptable_title,
    has_date,
    headline_case,
    is_junk_line,
    is_noise,
)

logger = logging.getLogger(__name__)


def _wordlist(text: str) -> list[str]:
    """The whitespace-separated words of ``text``."""
    return text.split()


MARGIN_FRACTION = 0.1
"""Lines this close (as a fraction of the page height) to the top or bottom are margin lines."""
HEADLINE_RATIO = 1.25
"""A block whose font is this much larger than the body text is a headline."""
MIN_ARTICLE_WORDS = 12
"""A titled piece with a shorter body (a masthead, a label) is not reported as an article."""
PULL_QUOTE_WORDS = 5
"""Large type repeating at least this many words of the page's text verbatim is a pull quote."""
CAPTION_RATIO = 0.9
"""Italic text this much smaller than the body under an empty stretch of column is a caption."""
PICTURE_LINES = 20
"""A stretch of a column this many body sizes tall with no text is a picture (an engraving,
a photograph, a plan): large type right under it is its caption."""
KICKER_WORDS = 6
"""A kicker (the label set over a headline) has at most this many words."""
KICKER_RATIO = 0.75
"""A kicker's type is at most this fraction of its headline's size."""
PLAIN_KICKER_RATIO = 0.62
"""A kicker in plain type (a scan's lines have no weight or slant) is at most this fraction of
its headline's size."""
KICKER_GAP = 0.5
"""The most white between a kicker and its headline, in the headline's size (or one body
size, when that is more)."""

_WORD_RE = re.compile(r"[^\W\d_][\w'\u2019-]*", re.UNICODE)
_PAGE_NUMBER_RE = re.compile(
    r"^[\W_]*(?:page|p\.|pg\.?|seite|pagina|página)?\s*[A-Z]?\d{1,6}"
    r"(?:\s*(?:of|/|de|di|von)\s*\d{1,4})?[\W_]*$",
    re.IGNORECASE,
)
_JUMP_FROM_RE = re.compile(
    r"^[\W_]*(?:continued|cont(?:'|\u2019)?d\.?|cont\.|suite)\s+(?:from|de\s+la)\s+"
    r"(?:page|p\.|pg\.?)\s*[A-Z]?-?(\d{1,4})[\W_]*$",
    re.IGNORECASE,
)
_JUMP_TO_RE = re.compile(
    r"^[\W_]*(?:(?:continued|cont(?:'|\u2019)?d\.?|cont\.|suite)\s+(?:on|to|in)|see|turn\s+to)\b"
    r".{0,60}?\b(?:page|p\.|pg\.?)\s*[A-Z]?-?(\d{1,4})[\W_]*$",
    re.IGNORECASE,
)
_BYLINE_RE = re.compile(r"^(?:by|par|di|von|por|door|av)\s+(\S.{1,80})$", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)]))\s+(?=[\"'\u201c\u2018(]?[A-Z0-9])"
)
_HYPHENS = "-\u2010\u2011"
_HYPHEN_END_RE = re.compile(r"([^\W\d_]+)[-\u2010\u2011]$")
_STOPWORDS = frozenset(
    _wordlist(
        """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves said says say one two three new may must shall upon per via
    within without among its however many much since yet any every including include
    includes
    """
    )
)


@dataclass
class Block:
    """Consecutive lines of one paragraph-like unit on one page (extents kept up to date)."""

    lines: list[Line]
    span: tuple[int, int]
    page: int
    x0: float = 0.0
    x1: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    _size: float | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.x0 = min(line.x0 for line in self.lines)
        self.x1 = max(line.x1 for line in self.lines)
        self.top = min(line.top for line in self.lines)
        self.bottom = max(line.bottom for line in self.lines)

    def add(self, line: Line) -> None:
        """Append a line below the others and widen the extents."""
        self.lines.append(line)
        self._size = None
        self.x0 = min(self.x0, line.x0)
        self.x1 = max(self.x1, line.x1)
        self.top = min(self.top, line.top)
        self.bottom = max(self.bottom, line.bottom)

    @property
    def cy(self) -> float:
        """Vertical centre."""
        return (self.top + self.bottom) / 2.0

    @property
    def size(self) -> float:
        """Font size of most of the block's characters."""
        if self._size is None:
            weights: Counter[float] = Counter()
            for line in self.lines:
                weights[line.size] += len(line.text)
            self._size = weights.most_common(1)[0][0]
        return self._size

    @property
    def bold(self) -> bool:
        """True when most characters are bold."""
        bold = sum(len(line.text) for line in self.lines if line.bold)
        return bold * 2 > sum(len(line.text) for line in self.lines)

    @property
    def italic(self) -> bool:
        """True when most characters are italic."""
        italic = sum(len(line.text) for line in self.lines if line.italic)
        return italic * 2 > sum(len(line.text) for line in self.lines)

    @property
    def word_count(self) -> int:
        """Number of whitespace-separated words."""
        return sum(len(line.text.split()) for line in self.lines)


@dataclass
class Article:
    """One article found on a page (the fields of the AsyncTaskFlow result, plus jump data)."""

    title: str = ""
    subtitle: str = ""
    author: str = ""
    kicker: str = ""
    paragraphs: list[str] = field(default_factory=list)
    page: int = 0
    jump_to: int | None = None
    jump_from: int | None = None
    title_size: float = 0.0
    topics: list[str] | None = None
    summary: str | None = None
    captions: list[str] = field(default_factory=list)
    """Captions of pictures on the page, kept with the page's first article (not in
    :meth:`to_dict`: the result's keys stay those of the API)."""
    headings: list[int] = field(default_factory=list, repr=False, compare=False)
    """Indices of paragraphs set as headings in body type (bold or capitals, short)."""

    @property
    def body(self) -> str:
        """The body text, paragraphs separated by blank lines."""
        return "\n\n".join(p for p in self.paragraphs if p)

    def to_dict(self) -> dict[str, object]:
        """The article in the result shape ``{title, subtitle, author, body, topics, summary}``."""
        body = self.body
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "author": self.author,
            "body": body,
            "topics": self.topics if self.topics is not None else topics_for(self.title, body),
            "summary": self.summary if self.summary is not None else lead_summary(body),
        }


# --- text helpers -----------------------------------------------------------------------------


def vocabulary(pages: Iterable[PageText]) -> frozenset[str]:
    """Lower-cased words of a document, including words with inner hyphens."""
    words: set[str] = set()
    for page in pages:
        for line in page.lines:
            for token in line.text.split():
                token = token.strip(".,;:!?\"'()[]\u201c\u201d\u2018\u2019").lower()
                if token:
                    words.add(token)
    return frozenset(words)


def join_lines(texts: Sequence[str], vocab: frozenset[str] = frozenset()) -> str:
    """Join text lines with spaces, repairing words hyphenated at a line end.

    ``infor-`` + ``mation`` becomes ``information``. When the document spells the hyphenated
    form elsewhere ("long-term") and never the closed form, the hyphen is kept instead.
    """
    out = ""
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if not out:
            out = text
            continue
        out = _join_two(out, text, vocab)
    return out


def _join_two(left: str, right: str, vocab: frozenset[str]) -> str:
    match = _HYPHEN_END_RE.search(left[-48:]) if left[-1:] in _HYPHENS else None
    if match and right[:1].isalpha() and right[:1].islower():
        head = match.group(1)
        tail_word = right.split(maxsplit=1)[0].rstrip(".,;:!?\"')]\u201d\u2019")
        closed = (head + tail_word).lower()
        hyphenated = f"{head}-{tail_word}".lower()
        if hyphenated in vocab and closed not in vocab:
            return left[:-1] + "-" + right
        return left[:-1] + right
    return left + " " + right


def normalise_title(text: str) -> str:
    """A title reduced to lower-case words, for comparisons."""
    return " ".join(_WORD_RE.findall(text.lower()))


def topics_for(title: str, body: str, count: int = 4) -> list[str]:
    """A few keywords: frequent non-stop-words of the body, words of the title counted twice."""
    scores: Counter[str] = Counter()
    for word in _WORD_RE.findall(body.lower()):
        if len(word) > 3 and word not in _STOPWORDS:
            scores[word] += 1
    for word in _WORD_RE.findall(title.lower()):
        if len(word) > 3 and word not in _STOPWORDS:
            scores[word] += 2
    return [word for word, n in scores.most_common(count) if n > 1]


def lead_summary(body: str, max_sentences: int = 2, max_chars: int = 400) -> str:
    """The first sentences of the body (an extractive lead summary): of the document's own
    "SUMMARY:" paragraph when it has one, skipping standing matter (a section's notice about
    itself, contact and docket lines: :func:`~taskflow_server.pdf.standing.is_standing_matter`)
    while anything else is left."""
    text = " ".join(body.split())
    if not text:
        return ""
    text = own_summary(text) or text  # a document's own "SUMMARY:" paragraph leads
    sentences = _SENTENCE_END_RE.split(text)
    substance = [s for s in sentences if not is_standing_matter(s)]
    sentences = substance or sentences
    summary = ""
    for sentence in sentences[:max_sentences]:
        candidate = f"{summary} {sentence}".strip()
        if summary and len(candidate) > max_chars:
            break
        summary = candidate
    return summary[:max_chars].rstrip()


# --- 1. page furniture ------------------------------------------------------------------------


def _furniture_key(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def is_page_number(text: str) -> bool:
    """True for a bare folio: "4", "-4-", "A4", "Page 4", "Page 4 of 48", "47698" (a journal
    numbers its pages through the volume)."""
    return bool(_PAGE_NUMBER_RE.match(text.strip()))


def find_furniture(pages: Sequence[PageText]) -> set[tuple[int, int]]:
    """(page index, line index) of running heads, running feet and page numbers."""
    found: set[tuple[int, int]] = set()
    occurrences: dict[tuple[str, int], set[int]] = defaultdict(set)
    margin_lines: list[tuple[int, int, str, int]] = []
    headline_size = HEADLINE_RATIO * body_font_size(pages)
    for p, page in enumerate(pages):
        zone = MARGIN_FRACTION * page.height
        for i, line in enumerate(page.lines):
            if line.top > zone and line.bottom < page.height - zone:
                continue
            if is_page_number(line.text):
                found.add((p, i))
                continue
            if line.size >= headline_size:
                continue  # running heads are small type; two headlines may start alike
            key = _furniture_key(line.text)
            bucket = round(line.cy / 8.0)
            margin_lines.append((p, i, key, bucket))
            occurrences[(key, bucket)].add(p)
    if len(pages) < 2:
        return found
    needed = max(2, round(0.2 * len(pages)))
    for p, i, key, bucket in margin_lines:
        seen = set().union(
            *(occurrences.get((key, b), set()) for b in (bucket - 1, bucket, bucket + 1))
        )
        if len(seen) >= needed:
            found.add((p, i))
    _running_head_parts(pages, found)
    return found


_RUNNING_HEAD_SPLIT_RE = re.compile(r"\s+[/|\u2022\u00b7\u2014]\s+|\s{3,}")


def _running_head_parts(pages: Sequence[PageText], found: set[tuple[int, int]]) -> None:
    """Add the margin lines that repeat a part of a running head (in place).

    A running head is often built of parts ("Federal Register / Vol. 85, No. 152 / Thursday,
    August 6, 2020 / Proposed Rules"), and the first page of a section or issue sets the same
    parts on lines of their own, the section's name in large type. Those lines are furniture
    too: a section name is no document's title.
    """
    parts: set[str] = set()
    for p, i in found:
        pieces = _RUNNING_HEAD_SPLIT_RE.split(pages[p].lines[i].text)
        if len(pieces) >= 2:
            parts.update(_furniture_key(piece) for piece in pieces if piece.strip())
    if not parts:
        return
    for p, page in enumerate(pages):
        zone = MARGIN_FRACTION * page.height
        for i, line in enumerate(page.lines):
            if line.top <= zone and _furniture_key(line.text.strip(" .,;:")) in parts:
                found.add((p, i))


def body_font_size(pages: Iterable[PageText]) -> float:
    """The font size carrying the most characters (the body text), rounded to 0.5 pt."""
    weights: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            weights[round(line.size * 2) / 2] += len(line.text)
    if not weights:
        return 10.0
    return weights.most_common(1)[0][0]


# --- 2. columns -------------------------------------------------------------------------------


def find_gutters(
    lines: Sequence[Line], body_size: float, width: float
) -> list[tuple[float, float]]:
    """Vertical white stripes between columns, as (x0, x1) pairs, left to right."""
    body = [ln for ln in lines if ln.size <= 1.2 * body_size and len(ln.text) >= 8]
    if len(body) < 6:
        return []
    bins = max(1, int(width) + 2)
    diff = [0] * (bins + 1)
    for ln in body:
        a = max(0, min(bins - 1, int(ln.x0 + 0.5)))
        b = max(0, min(bins, int(ln.x1 - 0.5)))
        if b > a:
            diff[a] += 1
            diff[b] -= 1
    cover = []
    running = 0
    for k in range(bins):
        running += diff[k]
        cover.append(running)
    # Lines may lie partly outside the page box (a wrong or inherited page size, text bleeding
    # off the edge): every index into the profile is clamped to it.
    left = max(0, min(bins - 1, min(int(ln.x0) for ln in body)))
    right = max(0, min(bins - 1, max(int(ln.x1) for ln in body)))
    # Running text never crosses a gutter, but a few short lines may: a date line centred
    # under the masthead, the caption of a photo set across two columns, an advert's small
    # print. On a small page those few are more than 2 % of the body lines, so stripes crossed
    # by up to two lines are added where they do not overlap the strict ones (a looser scan
    # alone would let a sparse column, an advert's, merge with the gutter beside it).
    strict = max(0, int(0.02 * len(body)))
    gutters = _stripes(cover, body, left, right, strict, body_size)
    if strict < 2:
        for extra in _stripes(cover, body, left, right, 2, body_size):
            if all(extra[1] <= a or b <= extra[0] for a, b in gutters):
                gutters.append(extra)
        gutters.sort()
    return gutters


def _stripes(
    cover: Sequence[int],
    body: Sequence[Line],
    left: int,
    right: int,
    threshold: int,
    body_size: float,
) -> list[tuple[float, float]]:
    """Stripes of the coverage profile crossed by at most ``threshold`` lines, with at least
    three lines wholly on each side."""
    min_width = 0.6 * body_size
    gutters: list[tuple[float, float]] = []
    k = left + 1
    while k < right:
        if cover[k] <= threshold:
            start = k
            while k < right and cover[k] <= threshold:
                k += 1
            if k - start >= min_width and k < right:
                left_support = sum(1 for ln in body if ln.x1 <= start + 1)
                right_support = sum(1 for ln in body if ln.x0 >= k - 1)
                if left_support >= 3 and right_support >= 3:
                    gutters.append((float(start), float(k)))
        k += 1
    return gutters


def _plausible_box(line: Line) -> bool:
    """False for a "line" far narrower than its characters at its size could be set (a
    vertical label or the hatching of a drawing read by OCR)."""
    chars = len(line.text.strip())
    return chars < 2 or line.width >= 0.2 * line.size * chars


def settle_sizes(
    lines: Sequence[Line], gutters: Sequence[tuple[float, float]], body_size: float
) -> list[Line]:
    """Give text-size type back to large "lines" that sit inside running text.

    A headline stands in white of its own: no line of text type shares its row within its
    column, and none lies inside its box. When an OCR engine measures a line's size from its
    box, a speck or a rule beside a word fragment makes it look like display type; such a
    line, touching text-type lines of its column, takes their size instead.
    """
    limit = HEADLINE_RATIO * body_size
    small = sorted(
        (ln for ln in lines if ln.size < limit and ln.text.strip()), key=lambda ln: ln.top
    )
    if not small:
        return list(lines)
    tops = [ln.top for ln in small]
    reach = 3.0 * limit
    out: list[Line] = []
    for line in lines:
        if line.size < limit:
            out.append(line)
            continue
        start = bisect_right(tops, line.top - reach)
        touching: list[float] = []
        for other in small[start:]:
            if other.top > line.bottom:
                break
            rows = min(other.bottom, line.bottom) - max(other.top, line.top)
            if rows <= 0.3 * other.height:
                continue
            if other.top >= line.top + 0.6 * line.height:
                continue  # starts in the foot of its box (room for descenders): the line under
            gap = max(other.x0 - line.x1, line.x0 - other.x1)
            if gap > 1.5 * body_size:
                continue
            if gap > 0 and any(
                min(line.x1, other.x1) - 1.0 <= a and b <= max(line.x0, other.x0) + 1.0
                for a, b in gutters
            ):
                continue  # beside it, across a gutter: another column
            touching.append(other.size)
        if touching:
            line = replace(line, size=sorted(touching)[len(touching) // 2])
        out.append(line)
    return out


def merge_spaced_words(
    lines: Sequence[Line], gutters: Sequence[tuple[float, float]], body_size: float
) -> list[Line]:
    """Join display-type pieces of one line that the reader split at a wide word space.

    Monospaced or letter-spaced display type puts more white between words than the reader
    allows inside a line; two pieces on one baseline, in the same type, closer than about
    four fifths of an em and with no column gutter between them, are one line again.
    """
    big = [
        line
        for band in line_bands([ln for ln in lines if ln.size >= HEADLINE_RATIO * body_size], 0.2)
        for line in band
    ]
    if len(big) < 2:
        return list(lines)
    merged: dict[int, Line] = {}
    replaced: set[int] = set()
    previous: Line | None = None
    for line in big:
        if previous is not None:
            gap = line.x0 - previous.x1
            if (
                abs(previous.cy - line.cy) <= 0.2 * line.size
                and abs(previous.size - line.size) <= 0.05 * line.size
                and (previous.bold, previous.italic) == (line.bold, line.italic)
                and 0.0 <= gap <= 0.8 * line.size
                and not any(a >= previous.x1 - 1.0 and b <= line.x0 + 1.0 for a, b in gutters)
            ):
                joined = Line(
                    f"{previous.text} {line.text}",
                    previous.x0,
                    min(previous.top, line.top),
                    line.x1,
                    max(previous.bottom, line.bottom),
                    previous.size,
                    previous.bold,
                    previous.italic,
                )
                first = next(k for k, v in merged.items() if v is previous)
                merged[first] = joined
                replaced.add(id(line))
                previous = joined
                continue
        merged[id(line)] = line
        previous = line
    out: list[Line] = []
    for line in lines:
        if id(line) in replaced:
            continue
        out.append(merged.get(id(line), line))
    return out


def split_joined_headlines(
    lines: Sequence[Line], gutters: Sequence[tuple[float, float]], body_size: float
) -> list[Line]:
    """Split a headline line that the reader joined with its neighbour across a gutter.

    Two stories side by side often set their headlines at the same height, and a gutter is
    narrower than a large word space, so one line can hold the end of one headline and the
    start of the next. It is two lines when, next to it, same-size headline lines stand on
    both sides of the gutter without crossing it: one flush with the line's start, one flush
    with the next column's left edge. The cut goes at the word boundary whose position,
    estimated from the character counts, is nearest the gutter.
    """
    big = [ln for ln in lines if ln.size >= HEADLINE_RATIO * body_size]
    if not gutters or len(big) < 3:
        return list(lines)
    headline_ids = {id(ln) for ln in big}
    out: list[Line] = []
    for line in lines:
        pieces = [line]
        if id(line) in headline_ids:
            for a, b in gutters:
                last = pieces[-1]
                if not (last.x0 < a and b < last.x1):
                    continue
                if _neighbours_apart(last, big, a, b):
                    cut = _cut_at_gutter(last, a, b)
                    if cut is not None:
                        pieces[-1:] = list(cut)
        out.extend(pieces)
    return out


def _neighbours_apart(line: Line, big: Sequence[Line], a: float, b: float) -> bool:
    """True when headline lines of about its size stand near ``line`` on each side of the
    gutter (a, b) without crossing it."""
    reach = 1.6 * line.height
    left = right = False
    for other in big:
        if other is line or abs(other.size - line.size) > 0.2 * line.size:
            continue
        if abs(other.cy - line.cy) > reach:
            continue
        if other.x1 <= a + 1.0 and abs(other.x0 - line.x0) <= 0.5 * line.size:
            left = True
        elif other.x0 >= b - 1.0 and other.x0 <= b + 0.5 * line.size:
            right = True
    return left and right


def _cut_at_gutter(line: Line, a: float, b: float) -> tuple[Line, Line] | None:
    """``line`` cut in two at the word boundary estimated nearest the gutter (a, b)."""
    words = line.text.split()
    if len(words) < 2:
        return None
    chars = sum(len(w) for w in words) + len(words) - 2  # the spaces, less the gutter's
    inked = (line.x1 - line.x0) - (b - a)
    best: tuple[float, int] | None = None
    count = 0
    for i in range(1, len(words)):
        count += len(words[i - 1]) + (1 if i > 1 else 0)
        where = line.x0 + inked * count / max(chars, 1)
        distance = abs(where - a)
        if best is None or distance < best[0]:
            best = (distance, i)
    assert best is not None
    i = best[1]
    left = " ".join(words[:i])
    right = " ".join(words[i:])
    return (
        Line(left, line.x0, line.top, a, line.bottom, line.size, line.bold, line.italic),
        Line(right, b, line.top, line.x1, line.bottom, line.size, line.bold, line.italic),
    )


def column_span(line: Line, gutters: Sequence[tuple[float, float]]) -> tuple[int, int]:
    """Indices of the first and last column (between gutters) the line covers."""
    if not gutters:
        return (0, 0)
    centres = [(a + b) / 2.0 for a, b in gutters]
    first = bisect_right(centres, line.x0 + 1.0)
    last = bisect_right(centres, line.x1 - 1.0)
    return (first, max(first, last))


# --- 3. blocks --------------------------------------------------------------------------------


def build_blocks(
    lines: Sequence[Line], gutters: Sequence[tuple[float, float]], body_size: float, page: int
) -> list[Block]:
    """Group a page's lines into blocks (see the module docstring)."""
    order = sorted(lines, key=lambda ln: (ln.top, ln.x0))
    blocks: list[Block] = []
    open_blocks: list[Block] = []
    for line in order:
        span = column_span(line, gutters)
        best: Block | None = None
        best_gap = 0.0
        still_open: list[Block] = []
        for block in open_blocks:
            last = block.lines[-1]
            size = max(last.size, line.size)
            if last.bottom < line.top - 3.0 * size:
                continue
            still_open.append(block)
            gap = line.top - last.bottom
            if not _can_join(block, last, line, span, gap, size, body_size, bool(gutters)):
                continue
            if best is None or gap < best_gap:
                best, best_gap = block, gap
        open_blocks = still_open
        if best is None:
            best = Block([line], span, page)
            blocks.append(best)
            open_blocks.append(best)
        else:
            best.add(line)
    return blocks


def _can_join(
    block: Block,
    last: Line,
    line: Line,
    span: tuple[int, int],
    gap: float,
    size: float,
    body_size: float,
    has_gutters: bool,
) -> bool:
    if last.bold != line.bold:
        return False
    if span != block.span and line.size <= 1.15 * body_size:
        return False
    if abs(last.size - line.size) > 0.12 * size:
        return False
    if not -0.3 * size <= gap <= 0.8 * size:
        return False
    overlap = min(last.x1, line.x1) - max(last.x0, line.x0)
    if overlap < 0.3 * min(last.width, line.width):
        return False
    if line.size > HEADLINE_RATIO * body_size or has_gutters:
        return True  # the column span already keeps columns apart
    x0, x1 = block.x0, block.x1
    return line.x0 >= x0 - 2.5 * size and line.x1 <= x1 + 2.5 * size


# --- 4. reading order -------------------------------------------------------------------------


def order_blocks(blocks: Sequence[Block]) -> list[Block]:
    """Blocks in reading order (Breuel's partial order, topologically sorted)."""
    n = len(blocks)
    if n < 2:
        return list(blocks)
    if n > 600:
        return sorted(blocks, key=lambda b: (b.span[0], b.top, b.x0))
    tol = 1.5
    box = [(b.x0, b.top, b.x1, b.bottom, b.cy) for b in blocks]
    overlaps: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        xi0, _, xi1, _, _ = box[i]
        for j in range(i + 1, n):
            xj0, _, xj1, _, _ = box[j]
            if min(xi1, xj1) - max(xi0, xj0) > tol:
                overlaps[i].add(j)
                overlaps[j].add(i)
    succ: list[list[int]] = [[] for _ in range(n)]
    indegree = [0] * n
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if j in overlaps[i]:
                before = box[i][4] < box[j][4] or (box[i][4] == box[j][4] and i < j)
            elif box[i][2] <= box[j][0] + tol:
                before = not _separated(i, j, box, overlaps)
            else:
                before = False
            if before:
                succ[i].append(j)
                indegree[j] += 1
    heap = [(box[k][1], box[k][0], k) for k in range(n) if indegree[k] == 0]
    heapq.heapify(heap)
    done = [False] * n
    result: list[Block] = []
    while len(result) < n:
        if not heap:  # a cycle: release the highest remaining block
            k = min((k for k in range(n) if not done[k]), key=lambda k: (box[k][1], box[k][0]))
            indegree[k] = 0
            heap.append((box[k][1], box[k][0], k))
        _, _, k = heapq.heappop(heap)
        if done[k]:
            continue
        done[k] = True
        result.append(blocks[k])
        for j in succ[k]:
            indegree[j] -= 1
            if indegree[j] == 0 and not done[j]:
                heapq.heappush(heap, (box[j][1], box[j][0], j))
    return result


def _separated(
    a: int,
    b: int,
    box: Sequence[tuple[float, float, float, float, float]],
    overlaps: Sequence[set[int]],
) -> bool:
    """True when a block overlapping both a and b horizontally lies between them vertically."""
    upper, lower = (a, b) if box[a][1] <= box[b][1] else (b, a)
    upper_bottom, lower_top = box[upper][3], box[lower][1]
    if lower_top <= upper_bottom:
        return False
    for c in overlaps[a] & overlaps[b]:
        if box[c][1] >= upper_bottom - 1.5 and box[c][3] <= lower_top + 1.5:
            return True
    return False


# --- 5. articles ------------------------------------------------------------------------------


def _paragraphs(block: Block, vocab: frozenset[str], body_size: float) -> list[str]:
    """A block's text split into paragraphs at indented or short-ended lines."""
    paragraphs: list[list[str]] = [[]]
    x0, x1 = block.x0, block.x1
    size = max(block.size, body_size * 0.5)
    previous: Line | None = None
    for line in block.lines:
        if previous is not None:
            indented = line.x0 > x0 + 0.8 * size and previous.x0 <= x0 + 0.8 * size
            short_end = previous.x1 < x1 - 3.0 * size and previous.text.rstrip()[-1:] in '.!?:"”'
            if indented or short_end:
                paragraphs.append([])
        paragraphs[-1].append(line.text)
        previous = line
    return [join_lines(p, vocab) for p in paragraphs if p]


def _jump(text: str) -> tuple[str, int] | None:
    text = text.strip()
    if len(text.split()) > 10:
        return None
    match = _JUMP_FROM_RE.match(text)
    if match:
        return "from", int(match.group(1))
    match = _JUMP_TO_RE.match(text)
    if match:
        return "to", int(match.group(1))
    return None


def _is_headline(block: Block, body_size: float) -> bool:
    return (
        block.size >= HEADLINE_RATIO * body_size
        and block.word_count <= 40
        and len(block.lines) <= 6
    )


def _tokens(text: str) -> list[str]:
    return re.findall(r"[0-9a-z]+", text.lower())


def _is_pull_quote(text: str, page_tokens: str) -> bool:
    """Large type that repeats a run of the page's other text word for word (a pull quote)."""
    tokens = _tokens(text)
    if len(tokens) < PULL_QUOTE_WORDS:
        return False
    return f" {' '.join(tokens)} " in page_tokens


def _is_caption(k: int, blocks: Sequence[Block], body_size: float) -> bool:
    """Small italic text under an empty stretch of its column (a figure's caption)."""
    block = blocks[k]
    if not block.italic or block.size > CAPTION_RATIO * body_size or block.word_count > 40:
        return False
    if any(_jump(ln.text) or _BYLINE_RE.match(ln.text.strip()) for ln in block.lines):
        return False
    above = [
        b.bottom
        for j, b in enumerate(blocks)
        if j != k and b.bottom <= block.top + 1.0 and _x_overlap(b, block) > 0
    ]
    return not above or block.top - max(above) >= 5.0 * body_size


def _x_overlap(a: Block, b: Block) -> float:
    return min(a.x1, b.x1) - max(a.x0, b.x0)


def _article_heads(blocks: Sequence[Block], body_size: float) -> dict[int, int]:
    """Map each headline block (by index) to the index of the head of its article.

    A headline directly under a larger one (a deck) or one of the same size right under it (a
    headline set as two blocks) belongs to that one's article.
    """
    head_of: dict[int, int] = {}
    headlines = [k for k, b in enumerate(blocks) if _is_headline(b, body_size)]
    for k in headlines:
        block = blocks[k]
        parent: int | None = None
        for j in headlines:
            above = blocks[j]
            if j == k or above.bottom > block.top + 2.0:
                continue
            # The white under a headline grows with its type: a deck sits about half the
            # headline's size below it (the size of the head the line above belongs to).
            size = max(above.size, blocks[head_of.get(j, j)].size)
            if block.top - above.bottom > max(1.5 * body_size, 0.4 * size):
                continue
            if _x_overlap(above, block) < 0.5 * min(above.x1 - above.x0, block.x1 - block.x0):
                continue
            if _between(blocks, j, k) or not _aligned_under(block, above):
                continue  # a masthead over a headline, or a neighbouring story's headline
            if block.size <= above.size * 1.1 or _head_line_measured_taller(above, block):
                parent = j
        head_of[k] = head_of.get(parent, parent) if parent is not None else k
    return head_of


OCR_HEAD_JITTER = 1.5
"""On a scan, the next line of one headline may measure up to this much taller than the line
above it: OCR sizes come from ink boxes, and a "Q" or a "y" makes one line's box taller."""


def _head_line_measured_taller(above: Block, block: Block) -> bool:
    """Whether ``block``, a little larger than the headline line ``above`` it, goes on that
    headline: both in title case, ``above`` not ended (no full stop, colon or mark), and the
    difference within OCR's jitter ("Orchard Council Blames Picking" / "Season in Quillon").
    A different head stands over its own story, never right on top of another head."""
    if block.size > above.size * OCR_HEAD_JITTER:
        return False
    upper = " ".join(ln.text for ln in above.lines).strip()
    lower = " ".join(ln.text for ln in block.lines).strip()
    if not upper or upper[-1] in ".:!?":
        return False
    return headline_case(upper) and headline_case(lower)


def _aligned_under(block: Block, above: Block) -> bool:
    """True when ``block`` starts at ``above``'s left edge or is centred under it."""
    em = max(block.size, 0.5 * above.size)
    if abs(block.x0 - above.x0) <= em or abs(block.x1 - above.x1) <= em:
        return True  # flush left or flush right
    if abs((block.x0 + block.x1) - (above.x0 + above.x1)) <= 2.0 * em:
        return True
    # A deck set flush left in the story's columns under a centred headline: it starts a
    # little left of the headline and is a fair share of its width (a headline in the first
    # column under a masthead is neither).
    width = block.x1 - block.x0
    return (
        block.x0 < above.x0
        and width >= 0.4 * (above.x1 - above.x0)
        and _x_overlap(block, above) >= 0.5 * width
    )


def _between(blocks: Sequence[Block], upper: int, lower: int) -> bool:
    """True when some block lies between ``upper`` and ``lower`` (a date line under a masthead)."""
    a, b = blocks[upper], blocks[lower]
    for k, other in enumerate(blocks):
        if k in (upper, lower) or not a.cy < other.cy < b.cy:
            continue
        if other.top < a.top or other.bottom > b.bottom:
            continue
        if _x_overlap(other, a) > 0 or _x_overlap(other, b) > 0:
            return True
    return False


def _owners(
    blocks: Sequence[Block],
    head_of: dict[int, int],
    gutters: Sequence[tuple[float, float]],
    body_size: float,
) -> dict[int, int]:
    """Map body blocks to the head of the article whose region holds them.

    An article head (with its deck) owns the columns it touches, from its top down to the next
    head in those columns: a body block belongs to the lowest head above it whose columns
    include the block's. Without gutters (one column, or columns not found) the head must also
    overlap the block horizontally.
    """
    extent: dict[int, tuple[float, float, float]] = {}
    for k, head in head_of.items():
        x0, x1, top = extent.get(head, (blocks[head].x0, blocks[head].x1, blocks[head].top))
        extent[head] = (min(x0, blocks[k].x0), max(x1, blocks[k].x1), top)
    regions = {
        head: (x0, x1, top, _span_of(x0, x1, gutters)) for head, (x0, x1, top) in extent.items()
    }
    owners: dict[int, int] = {}
    tol = 0.5 * body_size
    for k, block in enumerate(blocks):
        if k in head_of:
            continue
        best: int | None = None
        best_top = -1.0
        span = _span_of(block.x0, block.x1, gutters)
        for head, (x0, x1, top, head_span) in regions.items():
            if top > block.top - tol or top <= best_top:
                continue
            if head_span[1] < span[0] or span[1] < head_span[0]:
                continue
            overlap = min(x1, block.x1) - max(x0, block.x0)
            if overlap <= (0.0 if gutters else 0.5 * (block.x1 - block.x0)):
                if not gutters:
                    continue
                if head_span[0] > span[0] or head_span[1] < span[1]:
                    continue
            best, best_top = head, top
        if best is not None:
            owners[k] = best
    _follow_cut_sentences(blocks, head_of, owners)
    return owners


def _follow_cut_sentences(
    blocks: Sequence[Block], head_of: dict[int, int], owners: dict[int, int]
) -> None:
    """A block that starts mid-sentence continues the column to its left (in place).

    When a headline is narrower than its article, the article's last columns lie outside the
    headline's region; the text itself shows where they belong: the column before ends without
    a full stop (often on a hyphen) and this one starts in lower case.
    """
    for k, block in enumerate(blocks):
        if k in head_of or not block.lines[0].text[:1].islower():
            continue
        best: int | None = None
        for j, other in enumerate(blocks):
            if j == k or j in head_of or other.x1 > block.x0 + 2.0:
                continue
            if abs(other.size - block.size) > 0.1 * block.size:
                continue  # a cut sentence goes on in the same type (not an advert's lines)
            if min(other.bottom, block.bottom) - max(other.top, block.top) <= 0:
                continue
            if best is None or (other.x1, other.bottom) > (blocks[best].x1, blocks[best].bottom):
                best = j
        # Only the nearest column to the left can be the one cut: when it ends a sentence, the
        # block goes on from something else (text above it interrupted by a pull quote, say).
        if best is not None and blocks[best].lines[-1].text.rstrip()[-1:] in '.!?"\u201d\u2019':
            continue
        if best is not None and best in owners:
            owners[k] = owners[best]


def _span_of(x0: float, x1: float, gutters: Sequence[tuple[float, float]]) -> tuple[int, int]:
    if not gutters:
        return (0, 0)
    centres = [(a + b) / 2.0 for a, b in gutters]
    return (bisect_right(centres, x0 + 1.0), bisect_right(centres, max(x0 + 1.0, x1 - 1.0)))


def split_articles(
    blocks: Sequence[Block],
    body_size: float,
    vocab: frozenset[str],
    page: int,
    gutters: Sequence[tuple[float, float]] = (),
    page_text_size: float | None = None,
) -> list[Article]:
    """Articles of one page from its blocks in reading order.

    Each article head claims the blocks in its region (see :func:`_owners`); a block outside
    every region continues whichever article the reading order last touched.
    ``page_text_size`` is this page's own text size when it differs from the document's
    ``body_size`` (an issue's advertising pages are set smaller than its news pages).
    """
    blocks = [
        b
        for b in blocks
        if not (_is_headline(b, body_size) and is_noise(" ".join(ln.text for ln in b.lines)))
    ]
    blocks = _drop_inserts(blocks, body_size, vocab)
    blocks, kickers = _take_kickers(blocks, body_size, vocab)
    head_of = _article_heads(blocks, body_size)
    captions = _picture_captions(blocks, head_of, body_size)
    caption_text = [
        join_lines([ln.text for k in group for ln in blocks[k].lines], vocab) for group in captions
    ]
    in_caption = {k for group in captions for k in group}
    blocks = [b for k, b in enumerate(blocks) if k not in in_caption]
    head_of = _article_heads(blocks, body_size)
    owners = _owners(blocks, head_of, gutters, body_size)
    display = display_matter(blocks, head_of, owners, body_size, HEADLINE_RATIO)
    head_bottom: dict[int, float] = {}
    heads: dict[int, tuple[float, float]] = {}
    articles: list[Article] = []
    by_head: dict[int, Article] = {}
    stage: dict[int, str] = {}
    current: Article | None = None
    pending_from: int | None = None
    for k, block in enumerate(blocks):
        if k in display:
            continue
        kept: list[Line] = []
        target = by_head.get(owners[k]) if k in owners else current
        for line in block.lines:
            jump = _jump(line.text)
            if jump is None:
                kept.append(line)
            elif jump[0] == "to":
                if target is not None:
                    target.jump_to = jump[1]
            elif k in owners and target is not None and not target.paragraphs:
                target.jump_from = jump[1]
            else:
                pending_from = jump[1]
        if not kept:
            continue
        text = join_lines([ln.text for ln in kept], vocab)
        if k in head_of:
            head = head_of[k]
            if head != k and head in by_head:
                article = by_head[head]
                same_type = block.italic == blocks[head].italic
                capitals = _capitals(article.title) and _capitals(text.split(".")[0])
                big = block.size > (0.6 if capitals else 0.9) * article.title_size
                if same_type and not big and not article.subtitle:
                    big = _head_goes_on(article.title, text, block.size / article.title_size)
                if same_type and big and not article.subtitle:
                    article.title = f"{article.title} {text}".strip()
                    x0, x1 = heads.get(id(article), (block.x0, block.x1))
                    heads[id(article)] = (min(x0, block.x0), max(x1, block.x1))
                else:  # smaller or in another type: the deck
                    article.subtitle = f"{article.subtitle} {text}".strip()
                head_bottom[id(article)] = max(head_bottom[id(article)], block.bottom)
                current = article
                continue
            current = Article(title=text, page=page, title_size=block.size)
            current.kicker = kickers.get(id(block), "")
            head_bottom[id(current)] = block.bottom
            heads[id(current)] = (block.x0, block.x1)
            if pending_from is not None:
                current.jump_from, pending_from = pending_from, None
            by_head[k] = current
            stage[id(current)] = "head"
            articles.append(current)
            continue
        owned = by_head.get(owners[k]) if k in owners else None
        if owned is None:
            if current is None or pending_from is not None:
                current = Article(page=page)
                if pending_from is not None:
                    current.jump_from, pending_from = pending_from, None
                stage[id(current)] = "body"
                articles.append(current)
            owned = current
        article = current = owned
        block = Block(kept, block.span, block.page)
        if stage.get(id(article)) == "head" and not article.paragraphs:
            first = kept[0].text.strip()
            byline = _BYLINE_RE.match(first)
            if byline and not article.author and len(first.split()) <= 12:
                article.author = byline.group(1).strip()
                if len(kept) == 1:
                    continue
                block = Block(kept[1:], block.span, block.page)
            elif (
                not article.subtitle
                and block.word_count <= 40
                and _is_deck(block, head_bottom.get(id(article)), body_size)
            ):
                article.subtitle = text
                continue
        stage[id(article)] = "body"
        if _is_minor_heading(block):
            article.headings.append(len(article.paragraphs))
            article.paragraphs.append(text)
            continue
        _append_paragraphs(article, _paragraphs(block, vocab, body_size), vocab)
    text_size = max(body_size, page_text_size or 0.0)
    articles = _merge_untitled_heads(articles, vocab, heads, text_size)
    if articles:
        articles[0].captions.extend(t for t in caption_text if t)
    return articles


def _merge_untitled_heads(
    articles: list[Article],
    vocab: frozenset[str],
    heads: dict[int, tuple[float, float]],
    body_size: float,
) -> list[Article]:
    """Articles whose large type does not read as a title (a fragment, a lone word, noise:
    :func:`~.titles.acceptable_title`; a head at about the text's size in sentence case:
    :func:`_reads_as_head`) are no articles: their text, title first, continues the article
    before them in reading order. A head with almost no text of its own that
    smaller large type follows, set to the head's measure (``heads``: the x-extent of each
    article's head, by ``id()``), is a head with its deck, unless its text is a dateline
    (a nameplate over the lead story's headline)."""
    out: list[Article] = []
    for article in articles:
        previous = out[-1] if out else None
        if (
            previous is not None
            and article.title
            and previous.title
            and article.title_size < previous.title_size
            and len(previous.body.split()) < MIN_ARTICLE_WORDS
            and not previous.author
            and not any(has_date(p) for p in previous.paragraphs)  # a nameplate's dateline
            and _deck_under(heads.get(id(previous)), heads.get(id(article)), article.title_size)
        ):
            # A head with (almost) no text of its own followed by smaller large type: that
            # is its deck, set in pieces (the fragments under the head belong to it too).
            parts = [previous.subtitle, *previous.paragraphs, article.title, article.subtitle]
            previous.subtitle = join_lines([p for p in parts if p], vocab)
            previous.paragraphs = list(article.paragraphs)
            previous.headings = list(article.headings)
            previous.author = previous.author or article.author
            previous.captions.extend(article.captions)
            previous.jump_to = article.jump_to
            continue
        if not article.title or _reads_as_head(article, body_size):
            out.append(article)
            continue
        lead = [t for t in (article.title, article.subtitle) if t and not is_noise(t)]
        article.paragraphs = lead + article.paragraphs
        article.headings = [k + len(lead) for k in article.headings]
        if not out:
            article.title = article.subtitle = ""
            out.append(article)
            continue
        target = out[-1]
        before = len(target.paragraphs)
        _append_paragraphs(target, article.paragraphs, vocab)
        glued = len(target.paragraphs) - before < len(article.paragraphs)
        target.headings.extend(k + before - glued for k in article.headings if k or not glued)
        target.captions.extend(article.captions)
        if article.jump_to is not None:
            target.jump_to = article.jump_to
    return out


HEAD_LINE_SIZE_JITTER = 0.75
"""A head's next line measured at least this share of the head's size may be the same type
(OCR sizes of one headline vary with the letters each line holds)."""


def _head_goes_on(title: str, text: str, ratio: float) -> bool:
    """Whether a line under a head, a little smaller, is the head's next line rather than its
    deck: both in title case (a deck is a sentence: "Shop owners say the charges cannot
    wait"), and the smaller one within OCR's jitter of the head's size."""
    return ratio >= HEAD_LINE_SIZE_JITTER and headline_case(title) and headline_case(text)


TEXT_SIZE_HEAD = 1.35
"""A head under this multiple of the text size stands out by case alone (OCR heights of one
type size vary by about a quarter)."""


def _reads_as_head(article: Article, body_size: float) -> bool:
    """Whether an article's head is a title: acceptable text and, when it is set at about the
    text's size, in capitals or title case (:func:`~.titles.headline_case`)."""
    if not acceptable_title(article.title):
        return False
    return article.title_size >= TEXT_SIZE_HEAD * body_size or headline_case(article.title)


def _deck_under(
    head: tuple[float, float] | None, deck: tuple[float, float] | None, size: float
) -> bool:
    """True when a deck's extent fills its head's measure (a masthead is wider than the
    headline under it; a deck is set to its headline's measure)."""
    if head is None or deck is None:
        return False
    inside = deck[0] >= head[0] - size and deck[1] <= head[1] + size
    return inside and deck[1] - deck[0] >= 0.7 * (head[1] - head[0])


def _picture_captions(
    blocks: Sequence[Block], head_of: dict[int, int], body_size: float
) -> list[list[int]]:
    """Groups of blocks that caption a picture (each group in reading order).

    A picture is white to the text layer (or to OCR): a tall stretch with no text. Large
    type right under such a stretch, across its width, is the picture's title and legend, not
    an article's headline; lines stacked right under it in large type belong to the caption
    too. A headline stands under other text (a masthead, the end of another story) or at
    the top of the page.
    """
    tall = PICTURE_LINES * body_size
    found: dict[int, list[int]] = {}
    member: set[int] = set()
    for k in sorted(head_of, key=lambda k: blocks[k].top):
        block = blocks[k]
        parent = next(
            (
                j
                for j in member
                if 0 <= block.top - blocks[j].bottom <= 2.0 * body_size
                and _x_overlap(blocks[j], block) > 0
            ),
            None,
        )
        if parent is not None:
            root = next(r for r, g in found.items() if parent in g)
            found[root].append(k)
            member.add(k)
            continue
        above = [
            b.bottom
            for j, b in enumerate(blocks)
            if j != k and b.bottom <= block.top + 1.0 and _x_overlap(b, block) > 0
        ]
        if above and block.top - max(above) >= tall and not _heads_a_story(blocks, k, body_size):
            found[k] = [k]
            member.add(k)
    return [sorted(g) for g in found.values()]


def _heads_a_story(blocks: Sequence[Block], k: int, body_size: float) -> bool:
    """True when the first text under block ``k`` hangs from it as a story from its head.

    A headline under white (the empty foot of an advertisement's box, a short story's
    column) has its own story right under it: a deck, a byline or the text, flush with the
    head's left or right edge or centred under it, a deck no wider than the head. A caption
    spans its picture, and the running text under it belongs to columns that do not line up
    with it.
    """
    block = blocks[k]
    reach = max(2.0 * body_size, 0.5 * block.size)
    under = [
        b
        for j, b in enumerate(blocks)
        if j != k and -1.0 <= b.top - block.bottom <= reach and _x_overlap(b, block) > 0
    ]
    if not under:
        return False
    first = min(under, key=lambda b: b.top)
    wider = first.x1 - first.x0 > block.x1 - block.x0 + 2.0 * first.size
    if _is_headline(first, body_size) and wider:
        return False  # a deck is set to its head's measure: this is a caption's wider line
    return _aligned_under(first, block)


def _capitals(text: str) -> bool:
    """True when (nearly) all of the letters of ``text`` are capitals (four or more)."""
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 4 and sum(ch.isupper() for ch in letters) >= 0.8 * len(letters)


def _is_minor_heading(block: Block) -> bool:
    """A heading set in text type: one to three short lines, bold or in capitals."""
    if len(block.lines) > 3 or block.word_count > 20:
        return False
    text = " ".join(ln.text for ln in block.lines)
    letters = [ch for ch in text if ch.isalpha()]
    capitals = len(letters) >= 4 and sum(ch.isupper() for ch in letters) >= 0.8 * len(letters)
    return block.bold or capitals


def _is_deck(block: Block, head_bottom: float | None, body_size: float) -> bool:
    """The first text under a headline is its deck when set larger than the body, or in
    italics right under the headline (a caption under a photo is dropped before this)."""
    if block.size >= 1.08 * body_size:
        return True
    if not block.italic or head_bottom is None:
        return False
    text = " ".join(ln.text for ln in block.lines)
    if _jump(text) or _BYLINE_RE.match(text.strip()):
        return False
    return block.top - head_bottom <= 2.0 * body_size


def _is_kicker(block: Block, head: Block, body_size: float) -> bool:
    """A short label directly above a larger headline and aligned with it (a kicker).

    Newspapers set it as a small line of capitals, bold or italic type, or in a size of its
    own, left-aligned with the headline or centred over it, with little white between the two.
    A page number, a byline or a jump line is never one.
    """
    if len(block.lines) > 2 or block.word_count > KICKER_WORDS:
        return False
    text = " ".join(ln.text for ln in block.lines).strip()
    if not text or _jump(text) or _BYLINE_RE.match(text) or is_page_number(text):
        return False
    if block.size > KICKER_RATIO * head.size:
        return False
    gap = head.top - block.bottom
    # OCR boxes hug the ink, so the white between a kicker and its head measures more on a
    # scan than on the page that was scanned.
    if not -0.2 * block.size <= gap <= max(body_size, KICKER_GAP * head.size):
        return False
    em = block.size
    if _x_overlap(block, head) <= 0:
        return False
    # Flush with the headline, centred over it, or flush left in the story's column over a
    # centred headline (a little left of it: less than two of the headline's ems).
    aligned_left = head.x0 - 2.0 * head.size <= block.x0 <= head.x0 + em
    centred = abs((block.x0 + block.x1) - (head.x0 + head.x1)) <= 2.0 * em
    if not (aligned_left or centred):
        return False
    if (
        len(text.split()) >= 3
        and block.size > PLAIN_KICKER_RATIO * head.size
        and _head_line_measured_taller(block, head)
    ):
        return False  # the head's own first lines, measured smaller on a scan
    letters = [ch for ch in text if ch.isalpha()]
    capitals = bool(letters) and sum(ch.isupper() for ch in letters) >= 0.8 * len(letters)
    distinct_size = abs(block.size - body_size) > 0.1 * body_size
    if block.bold or block.italic or capitals or distinct_size:
        return True
    # A scan's lines carry no weight or slant: a lone line of one to three capitalised words,
    # no sentence, in much smaller type right over a head is still its label ("Rail" over
    # "Station Board ..."; a headline's own first line is near its size).
    words = text.split()
    return (
        len(block.lines) == 1
        and block.size <= PLAIN_KICKER_RATIO * head.size
        and len(words) <= 3
        and headline_case(text)
        and all(w[:1].isupper() for w in words if w.lower() not in FUNCTION_WORDS)
        and text[-1:] not in ".,;:"
    )


def _take_kickers(
    blocks: Sequence[Block], body_size: float, vocab: frozenset[str]
) -> tuple[list[Block], dict[int, str]]:
    """The blocks without kickers, and each kicker's text keyed by ``id()`` of its headline.

    A kicker is neither an article's title nor a line of any body, even when it is set in
    headline-size type.
    """
    kickers: dict[int, str] = {}
    taken: set[int] = set()
    heads = [k for k, b in enumerate(blocks) if _is_headline(b, body_size)]
    for j, block in enumerate(blocks):
        best: int | None = None
        for k in heads:
            if k == j or not _is_kicker(block, blocks[k], body_size):
                continue
            if best is None or blocks[k].top < blocks[best].top:
                best = k
        if best is not None and id(blocks[best]) not in kickers:
            kickers[id(blocks[best])] = join_lines([ln.text for ln in block.lines], vocab)
            taken.add(j)
    return [b for k, b in enumerate(blocks) if k not in taken], kickers


def _drop_inserts(blocks: Sequence[Block], body_size: float, vocab: frozenset[str]) -> list[Block]:
    """The blocks without pull quotes and captions, which are no article's text."""
    headline = [_is_headline(b, body_size) for b in blocks]
    texts = [join_lines([ln.text for ln in b.lines], vocab) for b in blocks]
    drop: set[int] = set()
    for k, block in enumerate(blocks):
        if headline[k] and not block.bold:
            # The rest of the page in reading order, so a word hyphenated across the insert
            # ("cle-" above it, "ared" below) is joined again.
            others = join_lines(
                [t for j, t in enumerate(texts) if j != k and not headline[j]], vocab
            )
            if _is_pull_quote(texts[k], f" {' '.join(_tokens(others))} "):
                drop.add(k)
        elif _is_caption(k, blocks, body_size):
            drop.add(k)
    return [b for k, b in enumerate(blocks) if k not in drop]


def _append_paragraphs(article: Article, paragraphs: list[str], vocab: frozenset[str]) -> None:
    """Add paragraphs, gluing one that was cut by a column or page break back together."""
    if not paragraphs:
        return
    if article.paragraphs and len(article.paragraphs) - 1 not in article.headings:
        last = article.paragraphs[-1]
        first = paragraphs[0]
        ends_open = last[-1:] not in '.!?:"\u201d\u2019)' or last[-1:] in _HYPHENS
        if ends_open and (first[:1].islower() or last[-1:].islower() or last[-1:] in ",;"):
            article.paragraphs[-1] = _join_two(last, first, vocab)
            paragraphs = paragraphs[1:]
    article.paragraphs.extend(paragraphs)


# --- 6. jumps and the whole document ----------------------------------------------------------


def _title_similarity(a: str, b: str) -> float:
    wa, wb = set(normalise_title(a).split()), set(normalise_title(b).split())
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / min(len(wa), len(wb))


def join_continuations(
    pages: list[list[Article]], vocab: frozenset[str], page_numbers: Sequence[int]
) -> None:
    """Join "continued" parts to the article they continue, on the start page (in place)."""
    index = {number: k for k, number in enumerate(page_numbers)}
    # Parts that say where they come from ("Continued from page 1") are joined first, so a
    # guess from a similar title cannot take the jump that belongs to them.
    for explicit in (True, False):
        for k, articles in enumerate(pages):
            for article in list(articles):
                if (article.jump_from is not None) == explicit:
                    _join_part(pages, k, article, index, vocab, page_numbers)


def _join_part(
    pages: list[list[Article]],
    k: int,
    article: Article,
    index: dict[int, int],
    vocab: frozenset[str],
    page_numbers: Sequence[int],
) -> None:
    """Join one article of page ``k`` to the part it continues, if any (in place)."""
    articles = pages[k]
    source = article.jump_from
    target: Article | None = None
    if source is not None and source in index:
        candidates = [
            a for a in pages[index[source]] if a.jump_to == page_numbers[k] and a is not article
        ]
        if candidates:
            target = max(candidates, key=lambda a: _title_similarity(a.title, article.title))
    if target is None and source is None and article.title:
        for earlier in pages[:k]:
            for candidate in earlier:
                if (
                    candidate.jump_to == page_numbers[k]
                    and _title_similarity(candidate.title, article.title) >= 0.6
                ):
                    target = candidate
    if target is None and source is None and not article.title and articles[0] is article:
        previous = next((p for p in reversed(pages[:k]) if p), None)
        if previous and previous[-1].jump_to is None:
            target = previous[-1]
    if target is None:
        return
    _append_paragraphs(target, article.paragraphs, vocab)
    target.jump_to = None
    articles.remove(article)


def analyse_document(pages: Sequence[PageText]) -> list[list[Article]]:
    """Articles per page (same order as ``pages``); pages without a text layer get none."""
    furniture = find_furniture(pages)
    cleaned: list[PageText] = []
    for p, page in enumerate(pages):
        lines = [ln for i, ln in enumerate(page.lines) if (p, i) not in furniture]
        cleaned.append(
            PageText(
                page.number, page.width, page.height, lines, page.char_count, page.has_text_layer
            )
        )
    text_pages = [pg for pg in cleaned if pg.has_text_layer]
    body_size = body_font_size(text_pages)
    vocab = vocabulary(text_pages)
    per_page: list[list[Article]] = []
    for page in cleaned:
        if not page.has_text_layer or not page.lines:
            per_page.append([])
            continue
        lines = [ln for ln in page.lines if not is_junk_line(ln.text) and _plausible_box(ln)]
        gutters = find_gutters(lines, body_size, page.width)
        lines = settle_sizes(lines, gutters, body_size)
        lines = merge_spaced_words(lines, gutters, body_size)
        lines = split_joined_headlines(lines, gutters, body_size)
        blocks = order_blocks(build_blocks(lines, gutters, body_size, page.number))
        own_size = body_font_size([page])
        per_page.append(split_articles(blocks, body_size, vocab, page.number, gutters, own_size))
    join_continuations(per_page, vocab, [pg.number for pg in cleaned])
    for articles in per_page:
        articles[:] = [a for a in articles if _keep(a)]
        for article in articles:
            if not article.title and article.paragraphs:
                _title_from_body(article)
    return per_page


def _title_from_body(article: Article) -> None:
    """Give an article without a headline the first real heading of its body (in place).

    Official documents set their heads in text type: a stack of bold or capital lines (the
    agency, the docket, then the document's own name) over the text. The title is the last
    acceptable heading of the first stack, the one nearest the text it heads. Without
    headings, a short first paragraph that reads as a title is taken.
    """
    run: list[int] = []
    for k in article.headings:
        if run and k != run[-1] + 1:
            break
        run.append(k)
    choice = next((k for k in reversed(run) if _text_type_title(article.paragraphs[k])), None)
    if choice is None and article.paragraphs:
        first = article.paragraphs[0]
        if len(first.split()) <= 12 and len(article.paragraphs) > 1 and _text_type_title(first):
            choice = 0
    if choice is None:
        return
    article.title = article.paragraphs.pop(choice)
    article.headings = [k - (k > choice) for k in article.headings if k != choice]


def _text_type_title(text: str) -> bool:
    """A heading set in text type is a title when it reads as one and is in capitals or title
    case (in sentence case it is a line of the text)."""
    return acceptable_title(text) and headline_case(text)


def _keep(article: Article) -> bool:
    # Untitled text (above a page's first head) is kept when it is text, not a speck: a few
    # letters over a masthead are as little an article as an ear beside it.
    # Words, not separators: a nameplate's dateline "Monday, May 24, 2025 | Volume 131 |
    # Price 2 dollars" is eight words however many rules divide it.
    words = sum(1 for token in article.body.split() if any(ch.isalnum() for ch in token))
    return words >= MIN_ARTICLE_WORDS or (not article.title and article.jump_from is not None)
