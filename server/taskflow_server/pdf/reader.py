"""Read a PDF with pypdfium2: pages, text lines with positions and font sizes, page images.

:func:`open_pdf` opens untrusted bytes defensively and raises a :class:`PdfError` subclass
with a message a user understands (not a PDF, encrypted, truncated or corrupt, too many pages,
a page too large). :class:`PdfFile` then yields one :class:`PageText` per page: the text lines
in top-left coordinates (points, y grows downwards), each with its font size, a bold and an
italic flag, plus whether the page has a text layer at all (a scanned page has none). It also
renders a page to PNG for the vision path.

Coordinates are those of the page as a viewer shows it (:mod:`taskflow_server.pdf.geometry`):
the effective box (crop box clipped to media box, inherited from the page tree when the page
omits them) turned by the page's ``/Rotate``, origin at its top-left corner. Text outside that
box (bleed, trimmed adverts, lines running off the edge) is dropped character by character, so
every line lies within ``0..width`` by ``0..height``; the PNG shows exactly the same box.

Lines are built from PDFium's per-character boxes, not from PDFium's own line breaks: a run of
characters is one line while it stays on one baseline and no gap wider than about an em
separates two characters. That splits lines that a content stream writes across columns in one
go (the IRS instructions do), which is what lets the layout step find columns at all.

Everything here is synchronous and CPU-bound; the worker runs it in a process pool with a time
limit (:mod:`taskflow_server.cpu`).
"""

from __future__ import annotations

import ctypes
import io
import logging
import math
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from taskflow_server.errors import TaskflowError
from taskflow_server.pdf.geometry import PageBox, page_box

logger = logging.getLogger(__name__)

_HEADER_WINDOW = 1024
_HYPHEN_CODES = {"\ufffe", "\u00ad", "\x02"}
_MIN_TEXT_CHARS = 10
_EDGE_SLACK = 1.0
"""How far (points) a character's centre may lie outside the page and still count as on it."""


def _max_gap(height: float) -> float:
    """The widest gap between two words of one line, for a line ``height`` points tall.

    Word spaces grow with the font, column gutters do not: a 9 pt line tolerates about 7.6 pt,
    a 40 pt headline 22 pt, while gutters are rarely under 10 pt.
    """
    return min(0.95 * height, 0.4 * height + 4.0)


_BOLD_WEIGHT = 600
_BOLD_NAME_PARTS = ("bold", "black", "heavy", "semibold", "demi", "extrabold")
_ITALIC_NAME_PARTS = ("italic", "oblique")
_FLAG_ITALIC = 1 << 6
_FLAG_FORCE_BOLD = 1 << 18


class PdfError(TaskflowError, ValueError):
    """A PDF that cannot be used; ``str(exc)`` is a message for the user."""


class NotAPdfError(PdfError):
    """The bytes are not a PDF at all."""


class EncryptedPdfError(PdfError):
    """The PDF needs a password (or uses an unsupported security handler)."""


class CorruptPdfError(PdfError):
    """The PDF is truncated or damaged beyond what PDFium repairs."""


class PdfLimitError(PdfError):
    """The PDF is over a configured cap (page count or page area)."""


@dataclass(frozen=True)
class Limits:
    """Caps applied to every PDF.

    Attributes:
        max_pages: documents with more pages are refused.
        max_page_area_pt2: a page larger than this (in square points) is refused.
        render_dpi: resolution of page images for the vision path.
        render_max_pixels: a page image never has more pixels than this (the dpi is lowered).
    """

    max_pages: int = 500
    max_page_area_pt2: float = 5000.0 * 5000.0
    render_dpi: int = 110
    render_max_pixels: int = 12_000_000


@dataclass(frozen=True)
class Line:
    """One line of text on a page (top-left coordinates in points).

    Attributes:
        text: the characters, with single spaces between words.
        x0, top, x1, bottom: the line's box (loose glyph boxes: ascent to descent).
        size: the font size in points (from the text matrix, so scaled fonts read right).
        bold, italic: the style of most of the line's characters.
    """

    text: str
    x0: float
    top: float
    x1: float
    bottom: float
    size: float
    bold: bool = False
    italic: bool = False

    @property
    def width(self) -> float:
        """Horizontal extent in points."""
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        """Vertical extent in points."""
        return self.bottom - self.top

    @property
    def cy(self) -> float:
        """Vertical centre."""
        return (self.top + self.bottom) / 2.0


@dataclass
class PageText:
    """The text of one page.

    Attributes:
        number: 1-based page number.
        width, height: the visible page size in points, as displayed (effective box, rotated).
        lines: the text lines in content-stream order, all within ``0..width``/``0..height``.
        char_count: visible non-space characters.
        has_text_layer: False for a page that shows content but carries (almost) no text,
            i.e. a scanned page or text drawn as outlines.
    """

    number: int
    width: float
    height: float
    lines: list[Line] = field(default_factory=list)
    char_count: int = 0
    has_text_layer: bool = True


@dataclass
class _Run:
    """A line being built from words: its text pieces, a few character indices, its box.

    The box is in display space (top-left origin, y down): ``top < bottom``.
    """

    parts: list[str]
    indices: list[int]
    x0: float
    x1: float
    top: float
    bottom: float


def check_header(data: bytes) -> None:
    """Raise :class:`NotAPdfError` unless ``%PDF-`` occurs in the first 1024 bytes."""
    if not data:
        raise NotAPdfError("the file is empty")
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise NotAPdfError("the file is not a PDF (no %PDF- header at its start)")


def open_pdf(data: bytes, limits: Limits | None = None) -> PdfFile:
    """Open PDF bytes safely and check the caps; the caller closes the result (``with``).

    Raises :class:`NotAPdfError`, :class:`EncryptedPdfError`, :class:`CorruptPdfError` or
    :class:`PdfLimitError`, each with a message meant for the user.
    """
    limits = limits or Limits()
    check_header(data)
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise EncryptedPdfError(
                "the PDF is encrypted and needs a password; upload an unprotected copy"
            ) from None
        raise CorruptPdfError(
            "the PDF is damaged or truncated and cannot be read "
            f"(PDFium: {_pdfium_reason(code)}); upload the complete file"
        ) from None
    try:
        _check_limits(doc, limits)
    except BaseException:
        doc.close()
        raise
    return PdfFile(doc, limits)


def _pdfium_reason(code: int | None) -> str:
    reasons = {
        pdfium_c.FPDF_ERR_FILE: "file error",
        pdfium_c.FPDF_ERR_FORMAT: "data format error",
        pdfium_c.FPDF_ERR_PAGE: "page not found or content error",
        pdfium_c.FPDF_ERR_UNKNOWN: "unknown error",
    }
    return reasons.get(code or pdfium_c.FPDF_ERR_UNKNOWN, "unknown error")


def _check_limits(doc: pdfium.PdfDocument, limits: Limits) -> None:
    count = len(doc)
    if count <= 0:
        raise CorruptPdfError("the PDF has no pages")
    if count > limits.max_pages:
        raise PdfLimitError(
            f"the PDF has {count} pages; at most {limits.max_pages} pages are accepted"
        )
    size = pdfium_c.FS_SIZEF()
    for index in range(count):
        if not pdfium_c.FPDF_GetPageSizeByIndexF(doc.raw, index, size):
            raise CorruptPdfError(f"page {index + 1} of the PDF cannot be read")
        width, height = float(size.width), float(size.height)
        if not (math.isfinite(width) and math.isfinite(height)):
            raise CorruptPdfError(f"page {index + 1} of the PDF has an invalid size")
        if width < 1.0 or height < 1.0:
            width, height = _widen_empty_crop(doc, index)
        area = abs(width * height)
        if area > limits.max_page_area_pt2:
            raise PdfLimitError(
                f"page {index + 1} is {width:.0f} x {height:.0f} pt; pages up to "
                f"{limits.max_page_area_pt2:.0f} square points are accepted"
            )


def _widen_empty_crop(doc: pdfium.PdfDocument, index: int) -> tuple[float, float]:
    """Show the whole media box of a page whose crop box misses it; return the new size.

    PDFium clips the crop box to the media box, so a crop box outside the media box leaves a
    page of size 0 x 0, which cannot be read or rendered. Viewers show the media box then, and
    so do we: the in-memory page gets a crop box equal to its (possibly inherited) media box,
    which every later read, render and copy of the page sees. The file itself is untouched.
    """
    try:
        page = doc[index]
    except pdfium.PdfiumError:
        raise CorruptPdfError(f"page {index + 1} of the PDF cannot be read") from None
    try:
        if page_box(page).is_empty:
            # A crop box around everything leaves PDFium's clip with the media box alone.
            page.set_cropbox(-1e7, -1e7, 1e7, 1e7)
            media = page_box(page)
            page.set_cropbox(media.left, media.bottom, media.right, media.top)
        box = page_box(page)
    finally:
        page.close()
    if box.is_empty:
        raise CorruptPdfError(f"page {index + 1} of the PDF has no visible area")
    return box.width, box.height


class PdfFile:
    """An open PDF (from :func:`open_pdf`); use it as a context manager."""

    def __init__(self, doc: pdfium.PdfDocument, limits: Limits) -> None:
        self._doc = doc
        self.limits = limits

    def __enter__(self) -> PdfFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release PDFium's document."""
        self._doc.close()

    @property
    def page_count(self) -> int:
        """Number of pages."""
        return len(self._doc)

    def pages(self) -> Iterator[PageText]:
        """Every page's text, in order."""
        for index in range(self.page_count):
            yield self.read_page(index)

    def read_page(self, index: int) -> PageText:
        """The text of page ``index`` (0-based); raises :class:`CorruptPdfError` if unreadable."""
        try:
            page = self._doc[index]
        except pdfium.PdfiumError:
            raise CorruptPdfError(f"page {index + 1} of the PDF cannot be read") from None
        try:
            return _read_page(page, index + 1)
        finally:
            page.close()

    def page_as_pdf(self, index: int) -> bytes:
        """Page ``index`` (0-based) alone, as the bytes of a new PDF."""
        single = pdfium.PdfDocument.new()
        try:
            single.import_pages(self._doc, [index])
            out = io.BytesIO()
            single.save(out)
            return out.getvalue()
        finally:
            single.close()

    def render_png(self, index: int, dpi: int | None = None) -> bytes:
        """Page ``index`` (0-based) as a PNG at ``dpi`` (lowered to stay under the pixel cap).

        The image shows the page as :meth:`read_page` measures it: the effective box, upright
        after ``/Rotate``, so pixel (x, y) is the line coordinate (x, y) times the scale.
        """
        page = self._doc[index]
        try:
            # PDFium renders the effective box turned by /Rotate (rotation=0 adds no turn of
            # its own): the box the reader measures lines in.
            box = page_box(page)
            scale = (dpi or self.limits.render_dpi) / 72.0
            pixels = box.width * box.height * scale * scale
            if pixels > self.limits.render_max_pixels:
                scale *= math.sqrt(self.limits.render_max_pixels / pixels)
            bitmap = page.render(scale=scale, rotation=0, rev_byteorder=True)
            try:
                return _encode_png(
                    bytes(bitmap.buffer),
                    int(bitmap.width),
                    int(bitmap.height),
                    int(bitmap.stride),
                    int(bitmap.n_channels),
                )
            finally:
                bitmap.close()
        finally:
            page.close()


def _encode_png(buffer: bytes, width: int, height: int, stride: int, channels: int) -> bytes:
    """A PNG (8-bit grey, RGB or RGBA) from raw rows; stdlib only."""
    colour = {1: 0, 3: 2, 4: 6}[channels]
    row_bytes = width * channels
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        start = y * stride
        raw += buffer[start : start + row_bytes]

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + chunk(b"IEND", b"")
    )


def _page_text(textpage: pdfium.PdfTextPage, count: int) -> str:
    """All characters of a text page, index-aligned with PDFium's character list."""
    buf = ctypes.create_string_buffer((count + 1) * 2)
    got = pdfium_c.FPDFText_GetText(
        textpage.raw, 0, count, ctypes.cast(buf, ctypes.POINTER(ctypes.c_ushort))
    )
    text = buf.raw[: max(0, got - 1) * 2].decode("utf-16-le", errors="replace")
    if len(text) == count:
        return text
    # Rare: the text view and the character list differ; fall back to one call per char.
    return "".join(
        chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 0xFFFD) for i in range(count)
    )


def _read_page(page: pdfium.PdfPage, number: int) -> PageText:
    box = page_box(page)
    width, height = box.width, box.height
    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        text = _page_text(textpage, count) if count > 0 else ""
        runs, visible = _build_runs(textpage, text, box)
        cache: dict[int, _FontInfo] = {}
        lines = [
            line
            for run in runs
            if (line := _finish_run(textpage, run, box, cache)) is not None and line.text.strip()
        ]
    finally:
        textpage.close()
    lines = _merge_same_band(lines)
    has_objects = pdfium_c.FPDFPage_CountObjects(page.raw) > 0
    has_text_layer = visible >= _MIN_TEXT_CHARS or not has_objects
    return PageText(
        number=number,
        width=width,
        height=height,
        lines=lines,
        char_count=visible,
        has_text_layer=has_text_layer,
    )


def _words(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) character indices of the words of a page's text (split at whitespace)."""
    start = -1
    for i, ch in enumerate(text):
        if ch.isspace():
            if start >= 0:
                yield start, i
                start = -1
        elif start < 0:
            start = i
    if start >= 0:
        yield start, len(text)


_CLEAN_TABLE: dict[int, str | None] = {ord(ch): "-" for ch in _HYPHEN_CODES}
_CLEAN_TABLE.update({code: None for code in range(32) if chr(code) not in _HYPHEN_CODES})


def _clean_word(word: str) -> str:
    """PDFium's hyphen markers become ``-``; control characters are dropped."""
    return word.translate(_CLEAN_TABLE)


def _build_runs(textpage: pdfium.PdfTextPage, text: str, box: PageBox) -> tuple[list[_Run], int]:
    """Group words into runs on one baseline (in display space) without wide gaps.

    Boxes are fetched for the first and last character of each word only (a word whose ends
    lie implausibly far apart, or that crosses the page's edge, is measured character by
    character): a ctypes call per character is what an extraction spends most of its time on.
    A piece whose centre lies outside the page (beyond a point of slack) is dropped.
    """
    lo_x, hi_x = -_EDGE_SLACK, box.width + _EDGE_SLACK
    lo_y, hi_y = -_EDGE_SLACK, box.height + _EDGE_SLACK
    limits = (lo_x, hi_x, lo_y, hi_y)
    to_display = box.rect_to_display
    rect = pdfium_c.FS_RECTF()
    rect_ref = ctypes.byref(rect)
    get_box = pdfium_c.FPDFText_GetLooseCharBox
    raw = textpage.raw
    runs: list[_Run] = []
    visible = 0
    cur: _Run | None = None
    cur_h = cur_cy = 0.0
    pending_space = False
    for start, end in _words(text):
        pieces = _measure_word(get_box, raw, rect, rect_ref, text, start, end, to_display, limits)
        for first, last, x0, x1, top, bottom in pieces:
            word = _clean_word(text[first : last + 1])
            if not word:
                continue
            cx, cy = (x0 + x1) / 2.0, (top + bottom) / 2.0
            if not (lo_x <= cx <= hi_x and lo_y <= cy <= hi_y):
                continue
            visible += len(word)
            h = max(bottom - top, 0.1)
            if cur is not None:
                ref = h if h > cur_h else cur_h
                gap = x0 - cur.x1
                if abs(cy - cur_cy) <= 0.35 * ref and -0.35 * ref <= gap <= _max_gap(ref):
                    if pending_space or gap > 0.18 * ref:
                        cur.parts.append(" ")
                    cur.parts.append(word)
                    cur.indices.append((first + last) // 2)
                    cur.x1 = max(cur.x1, x1)
                    cur.top = min(cur.top, top)
                    cur.bottom = max(cur.bottom, bottom)
                    cur_h = cur.bottom - cur.top
                    pending_space = False
                    continue
                runs.append(cur)
            cur = _Run([word], [(first + last) // 2], x0, x1, top, bottom)
            cur_h, cur_cy = bottom - top, cy
            pending_space = False
        pending_space = True
    if cur is not None:
        runs.append(cur)
    return runs, visible


_Piece = tuple[int, int, float, float, float, float]
"""(first, last, x0, x1, top, bottom): characters ``first..last`` and their display-space box."""


def _measure_word(
    get_box: Any,
    raw: Any,
    rect: Any,
    rect_ref: Any,
    text: str,
    start: int,
    end: int,
    to_display: Callable[[float, float, float, float], tuple[float, float, float, float]],
    limits: tuple[float, float, float, float],
) -> list[_Piece]:
    """Boxes of a word in display space: one piece, or one per character.

    A word is measured character by character when its two ends do not look like one word on
    one baseline, or when it crosses an edge of the page (so the caller keeps just the
    characters that are on the page). A word wholly off the page yields nothing.
    ``to_display`` is the page's :meth:`PageBox.rect_to_display`; ``limits`` the page's
    (x low, x high, y low, y high) in display space, slack included.
    """
    if not get_box(raw, start, rect_ref):
        return []
    x0, top, x1, bottom = to_display(rect.left, rect.bottom, rect.right, rect.top)
    last = end - 1
    if last == start:
        return [(start, start, x0, x1, top, bottom)]
    if not get_box(raw, last, rect_ref):
        return []
    lx0, ltop, lx1, lbottom = to_display(rect.left, rect.bottom, rect.right, rect.top)
    h = max(bottom - top, lbottom - ltop, 0.1)
    plausible = (
        abs((ltop + lbottom) - (top + bottom)) <= 0.7 * h
        and x0 - 0.5 * h <= lx0
        and lx1 - x0 <= (end - start) * 1.3 * h
    )
    if plausible:
        x1, top, bottom = max(x1, lx1), min(top, ltop), max(bottom, lbottom)
        lo_x, hi_x, lo_y, hi_y = limits
        if lo_x <= x0 and x1 <= hi_x and lo_y <= top and bottom <= hi_y:
            return [(start, last, x0, x1, top, bottom)]
        if x1 < lo_x or x0 > hi_x or bottom < lo_y or top > hi_y:
            return []
    pieces = []
    for i in range(start, end):
        if get_box(raw, i, rect_ref):
            cx0, ctop, cx1, cbottom = to_display(rect.left, rect.bottom, rect.right, rect.top)
            pieces.append((i, i, cx0, cx1, ctop, cbottom))
    return pieces


class _FontInfo(NamedTuple):
    bold: bool
    italic: bool


def _font_info(textpage: pdfium.PdfTextPage, index: int, cache: dict[int, _FontInfo]) -> _FontInfo:
    """Bold and italic flags of a character's font (cached per PDFium font object)."""
    obj = pdfium_c.FPDFText_GetTextObject(textpage.raw, index)
    font = pdfium_c.FPDFTextObj_GetFont(obj) if obj else None
    key = ctypes.cast(font, ctypes.c_void_p).value if font else None
    if key is not None and key in cache:
        return cache[key]
    weight = int(pdfium_c.FPDFText_GetFontWeight(textpage.raw, index))
    flags = ctypes.c_int(0)
    name_len = int(pdfium_c.FPDFText_GetFontInfo(textpage.raw, index, None, 0, ctypes.byref(flags)))
    name = ""
    if name_len > 0:
        buf = ctypes.create_string_buffer(name_len)
        pdfium_c.FPDFText_GetFontInfo(textpage.raw, index, buf, name_len, ctypes.byref(flags))
        name = buf.value.decode("utf-8", errors="replace").lower()
    info = _FontInfo(
        bold=weight >= _BOLD_WEIGHT
        or bool(flags.value & _FLAG_FORCE_BOLD)
        or any(part in name for part in _BOLD_NAME_PARTS),
        italic=bool(flags.value & _FLAG_ITALIC) or any(p in name for p in _ITALIC_NAME_PARTS),
    )
    if key is not None:
        cache[key] = info
    return info


def _char_style(
    textpage: pdfium.PdfTextPage, index: int, box: PageBox, cache: dict[int, _FontInfo]
) -> tuple[float, bool, bool, bool]:
    """(size, bold, italic, rotated) of one character; rotated means not upright on screen."""
    matrix = pdfium_c.FS_MATRIX()
    size = float(pdfium_c.FPDFText_GetFontSize(textpage.raw, index))
    rotated = False
    if pdfium_c.FPDFText_GetMatrix(textpage.raw, index, ctypes.byref(matrix)):
        a, b, c, d = matrix.a, matrix.b, matrix.c, matrix.d
        size *= math.hypot(c, d)
        # The baseline direction (a, b) as the page is displayed: upright text runs along +x.
        along, across = box.vector_to_display(a, b)
        rotated = abs(across) > 0.2 * abs(along) + 1e-9 or along <= 0
    info = _font_info(textpage, index, cache)
    return size, info.bold, info.italic, rotated


def _clamp(value: float, high: float) -> float:
    """``value`` limited to ``0..high``."""
    return 0.0 if value < 0.0 else high if value > high else value


def _finish_run(
    textpage: pdfium.PdfTextPage, run: _Run, box: PageBox, cache: dict[int, _FontInfo]
) -> Line | None:
    """The :class:`Line` of a run (its box clamped to the page), or None for rotated text."""
    count = len(run.indices)
    picks = [count // 2] if count < 3 else [0, count // 2, count - 1]
    styles = [_char_style(textpage, run.indices[p], box, cache) for p in picks]
    if sum(1 for s in styles if s[3]) * 2 > len(styles):
        return None  # rotated text: margin notes, stamps, vertical labels
    sizes = sorted(s[0] for s in styles)
    size = sizes[len(sizes) // 2]
    if size <= 0.5:
        size = (run.bottom - run.top) / 1.15
    bold = sum(1 for s in styles if s[1]) * 2 > len(styles)
    italic = sum(1 for s in styles if s[2]) * 2 > len(styles)
    width, height = box.width, box.height
    return Line(
        text="".join(run.parts),
        x0=_clamp(run.x0, width),
        top=_clamp(run.top, height),
        x1=_clamp(run.x1, width),
        bottom=_clamp(run.bottom, height),
        size=round(size, 2),
        bold=bold,
        italic=italic,
    )


def line_bands(lines: Sequence[Line], share: float) -> list[list[Line]]:
    """``lines`` in bands from the top, each band left to right. A band holds the lines whose
    centres lie within ``share`` of an em (the larger type's) of its first line's: pieces of one
    printed line that OCR or a content stream gave apart stand a point or two apart in height,
    so a fixed grid of heights would cut some bands in two."""
    bands: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: ln.cy):
        if bands and abs(bands[-1][0].cy - line.cy) <= share * max(bands[-1][0].size, line.size):
            bands[-1].append(line)
        else:
            bands.append([line])
    return [sorted(band, key=lambda ln: ln.x0) for band in bands]


def _merge_same_band(lines: list[Line]) -> list[Line]:
    """Join pieces of one visual line that the content stream wrote apart."""
    if len(lines) < 2:
        return lines
    order = sorted(range(len(lines)), key=lambda k: (round(lines[k].cy / 2.0), lines[k].x0))
    result: dict[int, Line] = {}
    prev_key: int | None = None
    for k in order:
        line = lines[k]
        if prev_key is not None:
            prev = result[prev_key]
            ref = max(prev.height, line.height)
            gap = line.x0 - prev.x1
            if (
                abs(prev.cy - line.cy) <= 0.3 * ref
                and -0.2 * ref <= gap <= _max_gap(ref)
                and abs(prev.size - line.size) <= 0.15 * max(prev.size, line.size)
            ):
                joiner = "" if gap < 0.12 * ref else " "
                result[prev_key] = Line(
                    text=prev.text + joiner + line.text,
                    x0=prev.x0,
                    top=min(prev.top, line.top),
                    x1=max(prev.x1, line.x1),
                    bottom=max(prev.bottom, line.bottom),
                    size=prev.size,
                    bold=prev.bold,
                    italic=prev.italic,
                )
                continue
        result[k] = line
        prev_key = k
    return [result[k] for k in range(len(lines)) if k in result]
