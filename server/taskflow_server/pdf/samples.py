"""Generate newspaper-style sample PDFs, each with a ground-truth JSON beside it.

``make_samples(out_dir, count=4, seed=0)`` writes ``gazette-01.pdf`` + ``gazette-01.json`` ...
The stories read as local news (see :mod:`.stories`: a lead, details with figures that agree,
quotes with attribution, a headline built from the story's key nouns, sometimes a dateline),
so a reader can judge the extraction and the summaries. Every issue is deterministic for a
seed and has what makes real newspapers hard to read:

- 2 to 4 columns per page, a masthead on page 1, headlines in several sizes spanning one or
  more columns, optional italic subtitles (decks) and "By ..." bylines;
- words hyphenated at line ends ("infor-" / "mation"), some real compounds ("seven-member");
- running heads and folios on every page (furniture a reader must drop);
- an image box (no text) inside an article, with a small italic caption under it;
- a pull quote: a quotation from the story repeated in larger italic type between two rules
  inside one of the article's columns;
- usually an advertisement: a boxed column slot of centred display type;
- an article that jumps: "Continued on page N" at the foot of its last column on page 1 and a
  jump headline with "Continued from page 1" on page N;
- usually one page with **no text layer**: the page is rasterised and replaced by an image,
  as a scan would be.

The ground truth has the AsyncTaskFlow result shape; its bodies are exactly the words printed,
with hyphenation undone and a jumped article joined on the page where it starts. Captions,
pull quotes and advertisements are in no article (not as titles, not in a body); the
``generator`` entry lists them as ``inserts`` (page, kind, text). A page
without a text layer is ``skipped`` with the offline reason and still lists the articles drawn
on it (what the vision path should find).

With ``scanned=True`` every issue also gets an image-only copy (``gazette-XX-scan.pdf``, a grey,
slightly skewed, noisy 150-dpi scan of every page) for the offline OCR path.

Run as ``python -m taskflow_server.pdf.samples OUT_DIR [--count N] [--seed S] [--scanned]``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportlab.lib.pagesizes import letter
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from taskflow_server.pdf.extract import NO_TEXT_LAYER_REASON
from taskflow_server.pdf.stories import TOPICS, Advert, write_advert, write_story

logger = logging.getLogger(__name__)


_ID_RE = re.compile(rb"/ID\s*\[\s*<([0-9A-Fa-f]+)>\s*<[0-9A-Fa-f]+>\s*\]")

PAGE_W, PAGE_H = letter
MARGIN = 36.0
GUTTER = 14.0
BODY_FONT, BODY_SIZE, BODY_LEADING = "Times-Roman", 9.0, 11.0
HEAD_FONTS = ("Helvetica-Bold", "Times-Bold")
HEAD_SIZES = (15.0, 17.0, 19.0, 22.0, 26.0)
DECK_FONT, DECK_SIZE, DECK_LEADING = "Times-Italic", 11.5, 13.5
BYLINE_FONT, BYLINE_SIZE = "Helvetica-Oblique", 8.0
JUMP_FONT, JUMP_SIZE = "Times-Italic", 8.0
PULL_FONT, PULL_SIZE, PULL_LEADING = "Times-Italic", 13.0, 15.5
CAPTION_FONT, CAPTION_SIZE, CAPTION_LEADING = "Times-Italic", 7.0, 8.5
AD_STYLES = {
    "head": ("Helvetica-Bold", 16.0, 19.0),
    "offer": ("Times-Roman", 10.5, 13.0),
    "shop": ("Times-Bold", 13.0, 16.0),
    "address": ("Helvetica", 7.5, 9.5),
}
PAPER_NAMES = (
    "The Meridian Gazette",
    "The Harbor Courier",
    "Valley Evening Post",
    "The Northfield Ledger",
    "Riverside Chronicle",
)


@dataclass
class _Article:
    """One article as planned: its text and what actually got printed."""

    title: str
    subtitle: str
    author: str
    topic: str
    paragraphs: list[list[str]]
    pull_quote: str = ""
    caption: str = ""
    printed: list[list[str]] = field(default_factory=list)
    jump_page: int | None = None

    def gt(self) -> dict[str, Any]:
        body = "\n\n".join(" ".join(p) for p in self.printed if p)
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "author": self.author,
            "body": body,
            "topics": [self.topic],
            "summary": "",
        }


@dataclass
class _Frame:
    x: float
    top: float
    width: float
    bottom: float


class _Writer:
    """Writes the stories of one issue (see :mod:`.stories`) from a seeded random generator."""

    def __init__(self, rng: random.Random, used_titles: set[str], issue_date: str) -> None:
        self.rng = rng
        self.used_titles = used_titles
        self.issue_date = issue_date
        self.page_topics: set[str] = set()
        self.ad_done = False
        self.openings: set[str] = set()
        self.inserts: list[dict[str, Any]] = []

    def new_page(self) -> None:
        """Forget the topics used so far: a page mixes topics, an issue may repeat them."""
        self.page_topics.clear()

    def article(self, words_needed: int) -> _Article:
        """A story not yet printed in this set of issues, on a topic new to the page."""
        topics = [t for t in TOPICS if t not in self.page_topics] or list(TOPICS)
        for _ in range(1000):
            topic = self.rng.choice(topics)
            story = write_story(self.rng, self.issue_date, topic, min_words=words_needed)
            # A title new to the set, opening unlike any other in the issue (a jump headline
            # is the title's first words, so it must point at one story only).
            opening = " ".join(story.title.lower().split()[:3])
            if story.title.lower() not in self.used_titles and opening not in self.openings:
                break
        else:
            raise RuntimeError("ran out of distinct titles")
        self.used_titles.add(story.title.lower())
        self.openings.add(" ".join(story.title.lower().split()[:3]))
        self.page_topics.add(topic)
        return _Article(
            title=story.title,
            subtitle=story.deck,
            author=story.author,
            topic=topic,
            paragraphs=story.paragraphs,
            pull_quote=story.pull_quote,
            caption=story.caption,
        )


def _wrap(words: list[str], font: str, size: float, width: float) -> list[str]:
    """Greedy line breaking without hyphenation (headlines, decks)."""
    lines: list[str] = []
    line = ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if line and stringWidth(candidate, font, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


@dataclass
class _Flow:
    """Lays body paragraphs into column frames, hyphenating long words at line ends."""

    canvas: Canvas
    frames: list[_Frame]
    frame: int = 0
    y: float = 0.0
    reserve_last_line: bool = False

    def __post_init__(self) -> None:
        if self.frames:
            self.y = self.frames[0].top

    def _room(self) -> bool:
        while self.frame < len(self.frames):
            frame = self.frames[self.frame]
            limit = frame.bottom - (
                BODY_LEADING if self._is_last_frame() and self.reserve_last_line else 0
            )
            if self.y + BODY_LEADING <= limit:
                return True
            self.frame += 1
            if self.frame < len(self.frames):
                self.y = self.frames[self.frame].top
        return False

    def _is_last_frame(self) -> bool:
        return self.frame == len(self.frames) - 1

    def lines_for(self, words: list[str], width: float) -> list[tuple[str, int]]:
        """Break a paragraph into (text, words completed) lines; the first line is indented."""
        out: list[tuple[str, int]] = []
        line = ""
        done = 0
        indent = 9.0
        k = 0
        carry = ""
        while k < len(words) or carry:
            word = carry or words[k]
            avail = width - (indent if not out else 0.0)
            candidate = f"{line} {word}".strip()
            if stringWidth(candidate, BODY_FONT, BODY_SIZE) <= avail:
                line = candidate
                if carry:
                    carry = ""
                k += 1
                done = k
                continue
            split = self._hyphenate(line, word, avail) if word.isalpha() else None
            if split is not None:
                head, tail = split
                out.append((f"{line} {head}-".strip(), done))
                carry, line = tail, ""
                if not carry:
                    k += 1
                continue
            if not line:  # a single over-long word: print it anyway
                out.append((word, k + 1))
                k += 1
                done = k
                carry = ""
                continue
            out.append((line, done))
            line = ""
        if line:
            out.append((line, len(words)))
        return out

    @staticmethod
    def _hyphenate(line: str, word: str, avail: float) -> tuple[str, str] | None:
        if len(word) < 7:
            return None
        for cut in range(len(word) - 3, 2, -1):
            head = word[:cut]
            if stringWidth(f"{line} {head}-".strip(), BODY_FONT, BODY_SIZE) <= avail:
                return head, word[cut:]
        return None

    def place(self, paragraphs: list[list[str]]) -> list[list[str]]:
        """Print whole sentences while they fit; returns the words printed per paragraph."""
        printed: list[list[str]] = []
        for para in paragraphs:
            if not self._room():
                break
            # Only whole sentences are printed, so the ground truth never ends mid-sentence.
            ends = [i + 1 for i, w in enumerate(para) if w.endswith(".")]
            width = self.frames[self.frame].width
            fitted = 0
            for end in ends:
                if self._fits(para[:end], width):
                    fitted = end
                else:
                    break
            if fitted == 0:
                break
            self._draw(para[:fitted], width)
            printed.append(para[:fitted])
            if fitted < len(para):
                break
        return printed

    def _fits(self, words: list[str], width: float) -> bool:
        lines = self.lines_for(words, width)
        frame, y = self.frame, self.y
        for _ in lines:
            while True:
                if frame >= len(self.frames):
                    return False
                f = self.frames[frame]
                last = frame == len(self.frames) - 1
                limit = f.bottom - (BODY_LEADING if last and self.reserve_last_line else 0)
                if y + BODY_LEADING <= limit:
                    break
                frame += 1
                if frame < len(self.frames):
                    y = self.frames[frame].top
            y += BODY_LEADING
        return True

    def _draw(self, words: list[str], width: float) -> None:
        self.canvas.setFont(BODY_FONT, BODY_SIZE)
        for n, (text, _) in enumerate(self.lines_for(words, width)):
            self._room()
            frame = self.frames[self.frame]
            x = frame.x + (9.0 if n == 0 else 0.0)
            self.canvas.drawString(x, PAGE_H - self.y - BODY_SIZE, text)
            self.y += BODY_LEADING

    def jump_line(self, text: str) -> None:
        """Print a jump line in the space reserved at the foot of the last frame."""
        frame = self.frames[-1]
        self.canvas.setFont(JUMP_FONT, JUMP_SIZE)
        self.canvas.drawRightString(frame.x + frame.width, PAGE_H - frame.bottom + 2.0, text)


def _columns(ncols: int) -> list[tuple[float, float]]:
    width = (PAGE_W - 2 * MARGIN - (ncols - 1) * GUTTER) / ncols
    return [(MARGIN + k * (width + GUTTER), width) for k in range(ncols)]


def _draw_headline(
    canvas: Canvas, article: _Article, x: float, width: float, top: float, size: float, font: str
) -> float:
    lines = _wrap(article.title.split(), font, size, width)
    while len(lines) > 3 and size > 14:
        size -= 1
        lines = _wrap(article.title.split(), font, size, width)
    y = top
    canvas.setFont(font, size)
    for line in lines:
        canvas.drawString(x, PAGE_H - y - size, line)
        y += size * 1.15
    return y + 4.0


def _headline_size(title: str, font: str, size: float, width: float, reach: float) -> float:
    """A size at which the headline reaches into the last of its article's columns.

    A headline sits over all the columns of its story; a short one set small would leave the
    last column outside it (a reader could not tell which story that column belongs to).
    """
    for candidate in (size, *(s for s in (22.0, 26.0, 30.0, 34.0) if s > size)):
        lines = _wrap(title.split(), font, candidate, width)
        if len(lines) > 3 or max(stringWidth(ln, font, candidate) for ln in lines) > reach + 12:
            return candidate
    return size


def _draw_deck_and_byline(
    canvas: Canvas, article: _Article, x: float, width: float, top: float
) -> float:
    y = top
    if article.subtitle:
        canvas.setFont(DECK_FONT, DECK_SIZE)
        for line in _wrap(article.subtitle.split(), DECK_FONT, DECK_SIZE, width):
            canvas.drawString(x, PAGE_H - y - DECK_SIZE, line)
            y += DECK_LEADING
        y += 4.0
    if article.author:
        canvas.setFont(BYLINE_FONT, BYLINE_SIZE)
        canvas.drawString(x, PAGE_H - y - BYLINE_SIZE, f"By {article.author}")
        y += BYLINE_SIZE + 8.0
    return y


def _image_box(canvas: Canvas, x: float, top: float, width: float, height: float) -> None:
    canvas.saveState()
    canvas.setFillGray(0.82)
    canvas.setStrokeGray(0.35)
    canvas.rect(x, PAGE_H - top - height, width, height, stroke=1, fill=1)
    canvas.line(x, PAGE_H - top - height, x + width, PAGE_H - top)
    canvas.line(x, PAGE_H - top, x + width, PAGE_H - top - height)
    canvas.restoreState()


def _caption(canvas: Canvas, text: str, x: float, top: float, width: float) -> float:
    """A small italic caption under an image; returns where the text below may start."""
    y = top + 3.0
    canvas.setFont(CAPTION_FONT, CAPTION_SIZE)
    for line in _wrap(text.split(), CAPTION_FONT, CAPTION_SIZE, width):
        canvas.drawString(x, PAGE_H - y - CAPTION_SIZE, line)
        y += CAPTION_LEADING
    return y + 8.0


def _pull_quote_height(text: str, width: float) -> float:
    return (
        len(_wrap(f"\u201c{text}\u201d".split(), PULL_FONT, PULL_SIZE, width)) * PULL_LEADING + 18
    )


def _pull_quote(canvas: Canvas, text: str, x: float, top: float, width: float) -> None:
    """A quotation from the story in larger italic type between two rules."""
    lines = _wrap(f"\u201c{text}\u201d".split(), PULL_FONT, PULL_SIZE, width)
    bottom = top + len(lines) * PULL_LEADING + 12.0
    canvas.saveState()
    canvas.setLineWidth(1.2)
    canvas.line(x, PAGE_H - top, x + width, PAGE_H - top)
    canvas.line(x, PAGE_H - bottom, x + width, PAGE_H - bottom)
    canvas.setFont(PULL_FONT, PULL_SIZE)
    y = top + 6.0
    for line in lines:
        canvas.drawCentredString(x + width / 2, PAGE_H - y - PULL_SIZE, line)
        y += PULL_LEADING
    canvas.restoreState()


def _advert(
    canvas: Canvas, advert: Advert, x: float, top: float, width: float, bottom: float
) -> None:
    """A boxed advertisement of centred display type, filling a column slot."""
    inner = width - 16.0
    rows: list[tuple[str, str, float, float]] = []
    for text, role in advert.lines:
        font, size, leading = AD_STYLES[role]
        while size > 7.0 and any(stringWidth(w, font, size) > inner for w in text.split()):
            size -= 0.5
        for line in _wrap(text.split(), font, size, inner):
            rows.append((line, font, size, leading * size / AD_STYLES[role][1]))
    height = sum(r[3] for r in rows) + 6.0 * (len(advert.lines) - 1)
    canvas.saveState()
    canvas.setLineWidth(1.5)
    canvas.rect(x, PAGE_H - bottom, width, bottom - top, stroke=1, fill=0)
    canvas.rect(x + 3, PAGE_H - bottom + 3, width - 6, bottom - top - 6, stroke=1, fill=0)
    y = top + max(10.0, (bottom - top - height) / 2)
    previous_font = ""
    for text, font, size, leading in rows:
        if previous_font and font != previous_font:
            y += 6.0
        previous_font = font
        canvas.setFont(font, size)
        canvas.drawCentredString(x + width / 2, PAGE_H - y - size, text)
        y += leading
    canvas.restoreState()


@dataclass
class _Issue:
    name: str
    date_text: str
    issue_date: str
    pages: int
    scanned: int | None
    jump_target: int | None


def _furniture(canvas: Canvas, issue: _Issue, page: int) -> float:
    """Masthead or running head, and the folio; returns where the content starts."""
    canvas.setFont("Helvetica", 7.5)
    canvas.drawCentredString(PAGE_W / 2, 20.0, f"Page {page}")
    if page == 1:
        canvas.setFont("Times-Bold", 30.0)
        canvas.drawCentredString(PAGE_W / 2, PAGE_H - 62.0, issue.name.upper())
        canvas.setFont("Times-Roman", 8.5)
        canvas.drawCentredString(PAGE_W / 2, PAGE_H - 78.0, issue.date_text)
        canvas.line(MARGIN, PAGE_H - 86.0, PAGE_W - MARGIN, PAGE_H - 86.0)
        return 96.0
    canvas.setFont("Helvetica", 7.5)
    canvas.drawString(MARGIN, PAGE_H - 28.0, issue.name.upper())
    canvas.drawRightString(PAGE_W - MARGIN, PAGE_H - 28.0, issue.date_text)
    canvas.line(MARGIN, PAGE_H - 33.0, PAGE_W - MARGIN, PAGE_H - 33.0)
    return 46.0


def _groups(rng: random.Random, ncols: int) -> list[int]:
    """How a band's columns are shared between articles (column counts, left to right)."""
    options = {2: [[2], [1, 1]], 3: [[3], [2, 1], [1, 2]], 4: [[4], [2, 2], [3, 1], [1, 3]]}
    return rng.choice(options[ncols])


def _layout_page(
    canvas: Canvas,
    writer: _Writer,
    issue: _Issue,
    page: int,
    pending: list[_Article],
) -> list[_Article]:
    """Draw one page; returns the articles that start on it (for the ground truth)."""
    rng = writer.rng
    top = _furniture(canvas, issue, page)
    bottom = PAGE_H - 40.0
    ncols = rng.choice((2, 3, 3, 4))
    cols = _columns(ncols)
    started: list[_Article] = []
    continuation = [a for a in pending if a.jump_page == page]
    bands = rng.choice((2, 2, 3))
    heights = [rng.uniform(0.8, 1.2) for _ in range(bands)]
    total = sum(heights)
    edges = [top]
    for h in heights:
        edges.append(edges[-1] + (bottom - top) * h / total)
    image_done = False
    pull_done = False
    writer.new_page()
    for band in range(bands):
        b_top, b_bottom = edges[band] + (6.0 if band else 0.0), edges[band + 1]
        if band:
            canvas.setStrokeGray(0.5)
            canvas.line(MARGIN, PAGE_H - b_top + 3.0, PAGE_W - MARGIN, PAGE_H - b_top + 3.0)
        if continuation and band == bands - 1:
            _draw_continuation(canvas, continuation.pop(), cols, b_top, b_bottom)
            continue
        col = 0
        for group in _groups(rng, ncols):
            g_cols = cols[col : col + group]
            col += group
            x, width = g_cols[0][0], g_cols[-1][0] + g_cols[-1][1] - g_cols[0][0]
            capacity = int(sum(c[1] for c in g_cols) * (b_bottom - b_top) / 52.0)
            jumps = issue.jump_target is not None and page == 1 and band == 0 and not started
            if group == 1 and not writer.ad_done and not jumps and rng.random() < 0.4:
                advert = write_advert(rng)
                _advert(canvas, advert, x, b_top, width, b_bottom)
                writer.inserts.append(
                    {"page": page, "kind": "advert", "text": " / ".join(t for t, _ in advert.lines)}
                )
                writer.ad_done = True
                continue
            article = writer.article(capacity + (160 if jumps else 40))
            size = rng.choice(HEAD_SIZES[-3:] if band == 0 and group >= 2 else HEAD_SIZES[:3])
            font = rng.choice(HEAD_FONTS)
            size = _headline_size(article.title, font, size, width, g_cols[-1][0] - x)
            y = _draw_headline(canvas, article, x, width, b_top, size, font)
            y = _draw_deck_and_byline(canvas, article, x, width, y)
            frames = [_Frame(cx, y, cw, b_bottom) for cx, cw in g_cols]
            if not image_done and rng.random() < 0.5 and b_bottom - y > 220:
                height = rng.uniform(70.0, 120.0)
                _image_box(canvas, frames[0].x, y, frames[0].width, height)
                below = _caption(canvas, article.caption, frames[0].x, y + height, frames[0].width)
                writer.inserts.append({"page": page, "kind": "caption", "text": article.caption})
                frames[0] = _Frame(frames[0].x, below, frames[0].width, b_bottom)
                image_done = True
            last = frames[-1]
            if (
                not pull_done
                and not jumps
                and article.pull_quote
                and last.bottom - last.top > 230
                and rng.random() < 0.5
            ):
                quote_h = _pull_quote_height(article.pull_quote, last.width)
                lines_above = int((last.bottom - last.top - quote_h) * rng.uniform(0.35, 0.55))
                mid = last.top + (lines_above // int(BODY_LEADING)) * BODY_LEADING
                _pull_quote(canvas, article.pull_quote, last.x, mid + 2.0, last.width)
                writer.inserts.append(
                    {"page": page, "kind": "pull_quote", "text": article.pull_quote}
                )
                frames[-1:] = [
                    _Frame(last.x, last.top, last.width, mid),
                    _Frame(last.x, mid + quote_h + 4.0, last.width, last.bottom),
                ]
                pull_done = True
            flow = _Flow(canvas, frames, reserve_last_line=jumps)
            article.printed = flow.place(article.paragraphs)
            if jumps and issue.jump_target is not None:
                printed_words = sum(len(p) for p in article.printed)
                rest = _rest_of(article.paragraphs, printed_words)
                if rest:
                    flow.jump_line(f"Continued on page {issue.jump_target}")
                    article.jump_page = issue.jump_target
                    article.paragraphs = rest
                    pending.append(article)
            started.append(article)
    return started


def _rest_of(paragraphs: list[list[str]], printed: int) -> list[list[str]]:
    """The paragraphs (or paragraph tails) after the first ``printed`` words."""
    rest: list[list[str]] = []
    seen = 0
    for para in paragraphs:
        if seen + len(para) <= printed:
            seen += len(para)
            continue
        rest.append(para[max(0, printed - seen) :])
        seen += len(para)
    return rest[:3]


def _draw_continuation(
    canvas: Canvas, article: _Article, cols: list[tuple[float, float]], top: float, bottom: float
) -> None:
    x, width = cols[0][0], cols[-1][0] + cols[-1][1] - cols[0][0]
    short = " ".join(article.title.split()[:3])
    y = _draw_headline(
        canvas, _Article(short, "", "", "", []), x, width, top, 15.0, "Helvetica-Bold"
    )
    canvas.setFont(JUMP_FONT, JUMP_SIZE)
    canvas.drawString(x, PAGE_H - y - JUMP_SIZE, "Continued from page 1")
    y += JUMP_SIZE + 6.0
    flow = _Flow(canvas, [_Frame(cx, y, cw, bottom) for cx, cw in cols])
    article.printed.extend(flow.place(article.paragraphs))


def _rasterise_pages(pdf_bytes: bytes, pages: list[int], dpi: float = 100.0) -> bytes:
    """Replace the given 1-based pages by a greyscale image of themselves (no text layer)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    doc = pdfium.PdfDocument(pdf_bytes)
    try:
        for number in pages:
            index = number - 1
            page = doc[index]
            width, height = page.get_size()
            bitmap = page.render(scale=dpi / 72.0, force_bitmap_format=pdfium_c.FPDFBitmap_Gray)
            page.close()
            new_page = doc.new_page(width, height, index)
            image = pdfium.PdfImage.new(doc)
            image.set_bitmap(bitmap)
            image.set_matrix(pdfium.PdfMatrix().scale(width, height))
            new_page.insert_obj(image)
            new_page.gen_content()
            new_page.close()
            bitmap.close()
            doc.del_page(index + 1)
        out = io.BytesIO()
        doc.save(out)
    finally:
        doc.close()
    # PDFium writes a random second file identifier; a new file may repeat the first one, which
    # keeps the output byte-identical for a seed (same length, so no offset moves).
    return _ID_RE.sub(lambda m: b"/ID[<" + m[1] + b"><" + m[1] + b">]", out.getvalue())


SCAN_DPI = 150
"""Resolution of the image-only ("scanned") copies of the samples."""
SCAN_SKEW = 0.6
"""The largest rotation (degrees, either way) of a scanned copy's page."""
SCAN_NOISE = 12.0
"""Standard deviation of the grey noise added to a scanned copy (0-255 scale)."""


def scan_image(
    pdf_bytes: bytes,
    page_number: int,
    rng: random.Random,
    dpi: int = SCAN_DPI,
    max_skew: float = SCAN_SKEW,
    noise: float = SCAN_NOISE,
) -> Any:
    """Page ``page_number`` (1-based) as a scanner would give it: a grey PIL image at ``dpi``,
    rotated by up to ``max_skew`` degrees, with light noise and a slightly grey paper."""
    import numpy as np
    import pypdfium2 as pdfium
    from PIL import Image

    doc = pdfium.PdfDocument(pdf_bytes)
    try:
        page = doc[page_number - 1]
        bitmap = page.render(scale=dpi / 72.0, grayscale=True)
        image = bitmap.to_pil().convert("L")
        bitmap.close()
        page.close()
    finally:
        doc.close()
    angle = rng.uniform(-max_skew, max_skew)
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    pixels = np.asarray(image, dtype=np.float32) * 0.88 + 18.0  # paper tone, ink not quite black
    seeded = np.random.default_rng(rng.randrange(2**32))
    pixels += seeded.normal(0.0, noise, size=pixels.shape).astype(np.float32)
    result = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    result.info["dpi"] = (dpi, dpi)
    result.info["skew"] = angle
    return result


def scanned_copy(pdf_bytes: bytes, seed: int | str = 0, dpi: int = SCAN_DPI) -> bytes:
    """An image-only copy of a PDF: every page replaced by :func:`scan_image` of itself (a grey
    JPEG, no text layer), page sizes unchanged. Deterministic for a seed."""
    import pypdfium2 as pdfium

    rng = random.Random(f"scan:{seed}")
    doc = pdfium.PdfDocument(pdf_bytes)
    out_doc = pdfium.PdfDocument.new()
    try:
        for index in range(len(doc)):
            width, height = doc[index].get_size()
            image = scan_image(pdf_bytes, index + 1, rng, dpi)
            jpeg = io.BytesIO()
            image.save(jpeg, format="JPEG", quality=80)
            page = out_doc.new_page(width, height)
            obj = pdfium.PdfImage.new(out_doc)
            obj.load_jpeg(io.BytesIO(jpeg.getvalue()), inline=True)
            obj.set_matrix(pdfium.PdfMatrix().scale(width, height))
            page.insert_obj(obj)
            page.gen_content()
            page.close()
        out = io.BytesIO()
        out_doc.save(out)
    finally:
        out_doc.close()
        doc.close()
    return _ID_RE.sub(lambda m: b"/ID[<" + m[1] + b"><" + m[1] + b">]", out.getvalue())


def scanned_truth(truth: dict[str, Any], filename: str) -> dict[str, Any]:
    """The ground truth of a scanned copy: the same articles, every page ``processed`` (what
    OCR should read), the file name changed."""
    pages = [{**page, "status": "processed", "reason": None} for page in truth.get("pages", [])]
    generator = {**truth.get("generator", {}), "scanned_copy": True}
    return {**truth, "filename": filename, "pages": pages, "generator": generator}


def make_issue(seed: int, number: int, used_titles: set[str]) -> tuple[bytes, dict[str, Any]]:
    """One sample issue: the PDF bytes and its ground truth."""
    rng = random.Random(f"{seed}:{number}")
    n_pages = rng.randint(3, 4)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    year = rng.randint(1990, 2024)
    writer = _Writer(rng, used_titles, f"{year}-{month:02d}-{day:02d}")
    scanned = rng.choice([None, n_pages]) if number % 2 else n_pages
    jump_target = 2 if scanned != 2 else 3
    issue = _Issue(
        name=rng.choice(PAPER_NAMES),
        date_text=(
            f"Vol. {rng.randint(3, 140)}, No. {rng.randint(1, 300)} - {year}-{month:02d}-{day:02d}"
        ),
        issue_date=f"{year}-{month:02d}-{day:02d}",
        pages=n_pages,
        scanned=scanned,
        jump_target=jump_target,
    )
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=letter, invariant=1, pageCompression=1)
    canvas.setTitle(f"{issue.name} {issue.issue_date}")
    pending: list[_Article] = []
    per_page: list[list[_Article]] = []
    for page in range(1, n_pages + 1):
        per_page.append(_layout_page(canvas, writer, issue, page, pending))
        canvas.showPage()
    canvas.save()
    pdf = buf.getvalue()
    if scanned is not None:
        pdf = _rasterise_pages(pdf, [scanned])
    filename = f"gazette-{number:02d}.pdf"
    truth_pages = []
    for page, articles in enumerate(per_page, start=1):
        is_scan = page == scanned
        truth_pages.append(
            {
                "page_number": page,
                "status": "skipped" if is_scan else "processed",
                "reason": NO_TEXT_LAYER_REASON if is_scan else None,
                "articles": [a.gt() for a in articles if a.printed],
            }
        )
    truth = {
        "filename": filename,
        "issue_date": issue.issue_date,
        "pages": truth_pages,
        "generator": {"seed": seed, "number": number, "inserts": writer.inserts},
    }
    return pdf, truth


def make_samples(
    out_dir: str | Path, count: int = 4, seed: int = 0, scanned: bool = False
) -> list[Path]:
    """Write ``count`` issues (PDF + ground-truth JSON) into ``out_dir``; returns the PDFs.

    With ``scanned``, each issue also gets an image-only copy, ``gazette-XX-scan.pdf`` (every
    page a grey, slightly skewed, noisy 150-dpi image; :func:`scanned_copy`) with its
    ground truth ``gazette-XX-scan.json`` (:func:`scanned_truth`); the returned list holds both.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written: list[Path] = []
    for number in range(1, count + 1):
        pdf, truth = make_issue(seed, number, used)
        path = out / truth["filename"]
        path.write_bytes(pdf)
        path.with_suffix(".json").write_text(
            json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(path)
        logger.info("wrote %s (%d bytes)", path, len(pdf))
        if scanned:
            scan_path = path.with_name(f"{path.stem}-scan.pdf")
            scan = scanned_copy(pdf, seed=f"{seed}:{number}")
            scan_path.write_bytes(scan)
            scan_path.with_suffix(".json").write_text(
                json.dumps(scanned_truth(truth, scan_path.name), indent=2, ensure_ascii=False)
                + "\n",
                encoding="utf-8",
            )
            written.append(scan_path)
            logger.info("wrote %s (%d bytes)", scan_path, len(scan))
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m taskflow_server.pdf.samples OUT_DIR [--count N] [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scanned", action="store_true", help="also write image-only copies (*-scan.pdf)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_samples(args.out_dir, count=args.count, seed=args.seed, scanned=args.scanned)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
