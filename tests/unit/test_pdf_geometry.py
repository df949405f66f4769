"""Page geometry: inherited boxes, crop boxes, rotation, text off the page (issue 14, item 1).

The PDFs are written here, byte by byte, so that each test controls exactly where ``/MediaBox``,
``/CropBox`` and ``/Rotate`` sit (on the page or on the page tree). One test also uses fpdf2,
which writes ``/MediaBox`` on the page tree only, when it is installed.
"""

from __future__ import annotations

import ctypes
import struct
import zlib
from collections.abc import Sequence

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest

from taskflow_server.pdf.extract import extract_offline
from taskflow_server.pdf.geometry import PageBox, page_box
from taskflow_server.pdf.reader import Limits, Line, PageText, open_pdf

A3 = (842.0, 1191.0)
LETTER = (612.0, 792.0)

WORDS = [
    "council",
    "budget",
    "harbour",
    "ferry",
    "schedule",
    "winter",
    "repairs",
    "bridge",
    "traffic",
    "market",
    "vendors",
    "weather",
    "storm",
    "coast",
    "river",
    "school",
    "library",
    "museum",
    "concert",
    "theatre",
    "station",
    "tram",
    "plans",
    "mayor",
    "report",
    "hearing",
    "residents",
    "petition",
    "funding",
    "housing",
    "rents",
    "tenants",
    "parks",
    "garden",
]


# --- a tiny PDF writer ------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _text(x: float, y: float, text: str, size: float = 10.0, font: str = "F1") -> str:
    """Content-stream text at user-space (x, y), horizontal."""
    return f"BT /{font} {size:g} Tf {x:g} {y:g} Td ({_escape(text)}) Tj ET\n"


def _turned_text(x: float, y: float, text: str, dx: float, dy: float, size: float = 10.0) -> str:
    """Content-stream text at (x, y) whose baseline runs along the unit vector (dx, dy)."""
    return (
        f"BT /F1 {size:g} Tf {dx:g} {dy:g} {-dy:g} {dx:g} {x:g} {y:g} Tm ({_escape(text)}) Tj ET\n"
    )


def _rect(left: float, bottom: float, width: float, height: float) -> str:
    """A filled black rectangle in user space."""
    return f"0 g {left:g} {bottom:g} {width:g} {height:g} re f\n"


def _pdf(pages: Sequence[tuple[str, str]], tree: str = "") -> bytes:
    """A PDF whose page tree carries ``tree`` and whose pages carry ``(page_keys, content)``.

    Objects: 1 catalog, 2 page tree, 3 and 4 fonts (Helvetica, Helvetica-Bold), then a page
    and its content stream per page. Nothing is compressed; the xref offsets are exact.
    """
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} {tree} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold >>",
    ]
    for i, (keys, content) in enumerate(pages):
        body = content.encode("latin-1")
        objects.append(
            (
                f"<< /Type /Page /Parent 2 0 R /Contents {6 + 2 * i} 0 R "
                f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> {keys} >>"
            ).encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream")
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _column(x: float, top: float, width: float, marker: str, offset: int = 0) -> str:
    """A headline and 14 lines of body text ``width`` wide from user-space (x, top).

    Every fourth line carries ``marker``.
    """
    per_line = max(3, int(width // 40))
    parts = [_text(x, top, f"{marker.title()} News", size=16, font="F2")]
    for k in range(14):
        words = [WORDS[(offset + 7 * k + j) % len(WORDS)] for j in range(per_line)]
        if k % 4 == 1:
            words[per_line // 2] = marker
        end = "." if k % 3 == 2 or k == 13 else ""  # sentences, and a finished article
        parts.append(_text(x, top - 30 - 12 * k, " ".join(words) + end))
    return "".join(parts)


def _newspaper(width: float, columns: int, top: float, markers: Sequence[str]) -> str:
    """A page of ``columns`` side-by-side articles, 36 pt margins, 18 pt gutters."""
    col_w = (width - 72 - 18 * (columns - 1)) / columns
    return "".join(
        _column(36 + c * (col_w + 18), top, col_w, markers[c], offset=5 * c) for c in range(columns)
    )


def _read(data: bytes) -> list[PageText]:
    with open_pdf(data) as pdf:
        return list(pdf.pages())


def _assert_on_page(page: PageText) -> None:
    for line in page.lines:
        assert 0.0 <= line.x0 <= line.x1 <= page.width, line
        assert 0.0 <= line.top <= line.bottom <= page.height, line


def _find(page: PageText, needle: str) -> Line:
    found = [line for line in page.lines if needle in line.text]
    assert found, f"{needle!r} not read; lines: {[ln.text for ln in page.lines]}"
    return found[0]


def _article_text(result: dict[str, object]) -> str:
    pages = result["pages"]
    assert isinstance(pages, list)
    return " ".join(
        f"{article['title']} {article['body']}" for page in pages for article in page["articles"]
    )


def _png_pixels(png: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw rows) of a PNG written by the reader (filter 0 rows)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _, colour = struct.unpack(">IIBB", body[:10])
            channels = {0: 1, 2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    rows = bytearray()
    stride = 1 + width * channels
    for y in range(height):
        row = raw[y * stride : (y + 1) * stride]
        assert row[0] == 0
        rows += row[1:]
    return width, height, channels, bytes(rows)


def _dark_centre(png: bytes) -> tuple[float, float, int, int]:
    """Centre (x, y) of the dark pixels of a rendered page, and the image's size."""
    width, height, channels, rows = _png_pixels(png)
    xs: list[int] = []
    ys: list[int] = []
    for y in range(height):
        for x in range(width):
            if rows[(y * width + x) * channels] < 64:
                xs.append(x)
                ys.append(y)
    assert xs, "nothing dark was rendered"
    return (min(xs) + max(xs) + 1) / 2.0, (min(ys) + max(ys) + 1) / 2.0, width, height


# --- the helper -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "page_keys", "expected", "rotation"),
    [
        ("/MediaBox [0 0 842 1191]", "", (0, 0, 842, 1191), 0),
        ("", "/MediaBox [0 0 842 1191]", (0, 0, 842, 1191), 0),
        ("/MediaBox [842 1191 0 0]", "", (0, 0, 842, 1191), 0),  # corners swapped
        ("/MediaBox [0 0 842 1191] /CropBox [100 200 700 1150]", "", (100, 200, 700, 1150), 0),
        ("/MediaBox [0 0 842 1191]", "/CropBox [-50 -50 900 1000]", (0, 0, 842, 1000), 0),
        ("/MediaBox [0 0 842 1191] /Rotate 90", "", (0, 0, 842, 1191), 90),
        ("/MediaBox [0 0 842 1191]", "/Rotate -90", (0, 0, 842, 1191), 270),
        (
            "/MediaBox [0 0 842 1191]",
            "/Rotate 180 /CropBox [10 20 610 820]",
            (10, 20, 610, 820),
            180,
        ),
        ("", "", (0, 0, 612, 792), 0),  # no MediaBox anywhere: PDFium's Letter default
    ],
    ids=[
        "inherited",
        "own",
        "swapped-corners",
        "inherited-crop",
        "crop-clipped-to-media",
        "inherited-rotate",
        "negative-rotate",
        "rotate-180-crop",
        "none",
    ],
)
def test_page_box_resolves_inheritance_crop_and_rotation(
    tree: str, page_keys: str, expected: tuple[float, float, float, float], rotation: int
) -> None:
    doc = pdfium.PdfDocument(_pdf([(page_keys, _text(100, 100, "x"))], tree=tree))
    try:
        page = doc[0]
        box = page_box(page)
        assert (box.left, box.bottom, box.right, box.top) == pytest.approx(expected)
        assert box.rotation == rotation
        # PDFium's own size (which does follow the page tree) is the box's display size.
        assert (box.width, box.height) == pytest.approx(page.get_size())
        page.close()
    finally:
        doc.close()


def test_pypdfium2_box_getters_ignore_the_page_tree() -> None:
    """The bug this module exists for: pin it, so a fixed pypdfium2 shows up here."""
    doc = pdfium.PdfDocument(_pdf([("", _text(100, 100, "x"))], tree="/MediaBox [0 0 842 1191]"))
    try:
        page = doc[0]
        assert page.get_mediabox(fallback_ok=False) is None
        assert tuple(page.get_cropbox()) == (0, 0, 612, 792)
        assert page.get_size() == pytest.approx(A3)
        page.close()
    finally:
        doc.close()


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_to_display_matches_pdfium_page_to_device(rotation: int) -> None:
    """The map agrees with PDFium's own page-to-device transform (scaled up for precision)."""
    data = _pdf(
        [(f"/CropBox [40 60 560 700] /Rotate {rotation}", _text(100, 100, "x"))],
        tree="/MediaBox [0 0 612 792]",
    )
    doc = pdfium.PdfDocument(data)
    try:
        page = doc[0]
        box = page_box(page)
        zoom = 100
        dev_x, dev_y = ctypes.c_int(), ctypes.c_int()
        for x, y in [(40, 60), (560, 700), (123.5, 456.25), (300, 90)]:
            ok = pdfium_c.FPDF_PageToDevice(
                page.raw,
                0,
                0,
                round(box.width * zoom),
                round(box.height * zoom),
                0,
                float(x),
                float(y),
                ctypes.byref(dev_x),
                ctypes.byref(dev_y),
            )
            assert ok
            got = box.to_display(x, y)
            assert got == pytest.approx((dev_x.value / zoom, dev_y.value / zoom), abs=0.02)
            assert 0 <= got[0] <= box.width and 0 <= got[1] <= box.height
        page.close()
    finally:
        doc.close()


def test_box_maps_rectangles_and_directions() -> None:
    box = PageBox(left=0, bottom=0, right=600, top=800, rotation=90)
    assert (box.width, box.height) == (800, 600)
    assert box.rect_to_display(100, 200, 150, 210) == (200, 100, 210, 150)
    assert box.vector_to_display(0, 1) == (1, 0)  # runs up the stored page: upright on screen
    assert box.vector_to_display(1, 0) == (0, 1)  # runs across it: downwards on screen
    assert PageBox(0, 0, 10, 10).vector_to_display(1, 0) == (1, 0)
    assert not box.is_empty and PageBox(5, 5, 5, 90).is_empty
    with pytest.raises(ValueError, match="rotation"):
        PageBox(0, 0, 10, 10, rotation=45)


# --- (a) MediaBox inherited from the page tree ------------------------------------------------


def test_inherited_a3_mediabox_reads_the_whole_page() -> None:
    data = _pdf(
        [("", _newspaper(A3[0], 4, 1100, ["alpha", "bravo", "charlie", "zulu"]))],
        "/MediaBox [0 0 842 1191]",
    )
    (page,) = _read(data)
    assert (page.width, page.height) == pytest.approx(A3)
    _assert_on_page(page)
    right = _find(page, "zulu")
    assert right.x0 > 612  # the third column lies beyond Letter's right edge
    assert _find(page, "Zulu News").x0 > 612


def test_inherited_a3_mediabox_extracts_the_columns_beyond_letter_width() -> None:
    first = ["alpha", "bravo", "charlie", "zulu"]
    second = ["delta", "echo", "foxtrot", "yankee"]
    pages = [("", _newspaper(A3[0], 4, 1000, first)), ("", _newspaper(A3[0], 4, 1060, second))]
    data = _pdf(pages, "/MediaBox [0 0 842 1191]")
    with open_pdf(data) as pdf:
        xs = [line.x0 for line in pdf.read_page(0).lines if "zulu" in line.text.lower()]
    assert xs and min(xs) > 612  # the fourth column starts at x = 627
    result = extract_offline(data, "a3.pdf", None)
    assert [p["status"] for p in result["pages"]] == ["processed", "processed"]
    for page, markers in zip(result["pages"], (first, second), strict=True):
        articles = {a["title"]: a["body"] for a in page["articles"]}
        assert sorted(articles) == sorted(f"{m.title()} News" for m in markers)
        last = articles[f"{markers[-1].title()} News"]
        assert last.count(markers[-1]) == 4  # every marked line of the right-hand column
        assert not any(m in last for m in markers[:-1])


def test_inherited_a3_page_renders_and_copies_at_its_real_size() -> None:
    marker = _rect(700, 1000, 60, 40)  # beyond x = 612
    data = _pdf([("", marker)], "/MediaBox [0 0 842 1191]")
    limits = Limits(render_dpi=36)
    with open_pdf(data, limits) as pdf:
        cx, cy, width, height = _dark_centre(pdf.render_png(0))
        single = pdfium.PdfDocument(pdf.page_as_pdf(0))
        try:
            assert single[0].get_size() == pytest.approx(A3)
        finally:
            single.close()
    scale = 36 / 72
    assert (width, height) == (round(A3[0] * scale), round(A3[1] * scale))
    assert (cx, cy) == pytest.approx((730 * scale, (1191 - 1020) * scale), abs=1.5)


def test_fpdf2_a3_document() -> None:
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 is not installed")
    doc = fpdf.FPDF(format="A3", unit="pt")
    doc.add_page()
    doc.set_font("Helvetica", size=10)
    for k in range(12):
        doc.text(60, 100 + 14 * k, f"left column line {k} with council budget words")
        doc.text(650, 100 + 14 * k, f"right column line {k} beyond letter width")
    data = bytes(doc.output())
    assert b"/MediaBox" in data
    (page,) = _read(data)
    assert (page.width, page.height) == pytest.approx((841.89, 1190.55), abs=0.01)
    _assert_on_page(page)
    right = _find(page, "right column line 11 beyond letter width")
    assert right.x0 == pytest.approx(650, abs=1)
    assert right.bottom == pytest.approx(100 + 14 * 11, abs=4)  # fpdf2's y is from the top
    extract_offline(data, "fpdf2.pdf", None)  # must not raise


# --- (b) a CropBox smaller than the MediaBox --------------------------------------------------


def test_crop_box_sets_the_origin_and_drops_text_outside() -> None:
    content = (
        _text(150, 900, "inside the crop box")
        + _text(30, 500, "left of the crop box")  # x < 100
        + _text(300, 1100, "above the crop box")  # y > 1000
        + _text(300, 150, "below the crop box")  # y < 200
        + _text(640, 600, "straddles FARAWAY")  # starts inside, runs past x = 700
    )
    data = _pdf([("/CropBox [100 200 700 1000]", content)], "/MediaBox [0 0 842 1191]")
    (page,) = _read(data)
    assert (page.width, page.height) == pytest.approx((600, 800))
    _assert_on_page(page)
    inside = _find(page, "inside the crop box")
    assert inside.x0 == pytest.approx(50, abs=0.5)  # 150 - crop left
    assert inside.top < 1000 - 900 < inside.bottom  # the baseline, measured from the crop top
    texts = " ".join(line.text for line in page.lines)
    for gone in ("left of", "above the", "below the", "FARAWAY"):
        assert gone not in texts
    straddle = _find(page, "straddles")
    assert straddle.x1 <= 600
    assert not straddle.text.endswith("FARAWAY")
    extract_offline(data, "cropped.pdf", None)


def test_crop_box_render_shows_the_same_box() -> None:
    content = _rect(200, 300, 40, 20) + _rect(20, 20, 50, 50)  # the second is cropped away
    data = _pdf([("/CropBox [100 200 700 1000]", content)], "/MediaBox [0 0 842 1191]")
    with open_pdf(data, Limits(render_dpi=72)) as pdf:
        cx, cy, width, height = _dark_centre(pdf.render_png(0))
    assert (width, height) == (600, 800)
    assert (cx, cy) == pytest.approx((220 - 100, 1000 - 310), abs=1.5)


def test_crop_box_outside_the_media_box_shows_the_media_box() -> None:
    content = _text(100, 700, "still readable text on this page")
    data = _pdf([("/CropBox [900 0 1000 100]", content)], "/MediaBox [0 0 612 792]")
    with open_pdf(data, Limits(render_dpi=18)) as pdf:
        page = pdf.read_page(0)
        png = pdf.render_png(0)
    assert (page.width, page.height) == pytest.approx(LETTER)
    assert _find(page, "still readable").x0 == pytest.approx(100, abs=0.5)
    assert _png_pixels(png)[:2] == (153, 198)


# --- (c) /Rotate ------------------------------------------------------------------------------

_UPRIGHT = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}
"""Baseline direction in user space of text that reads upright after each /Rotate."""


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("inherited", [False, True], ids=["page", "tree"])
def test_rotated_page_reads_upright_lines_in_display_space(rotation: int, inherited: bool) -> None:
    dx, dy = _UPRIGHT[rotation]
    box = PageBox(0, 0, 595, 842, rotation)
    # Anchor each line at a display position, back to user space through the box.
    lines = []
    for k in range(8):
        want_x, want_y = 60.0, 80.0 + 20 * k
        x, y = _user_point(box, want_x, want_y)
        lines.append(_turned_text(x, y, f"upright line number {k} reads fine", dx, dy))
    sideways = _text(300, 400, "sideways on screen")  # horizontal in user space
    content = "".join(lines) + sideways
    rotate = f"/Rotate {rotation}"
    tree = "/MediaBox [0 0 595 842]" + (f" {rotate}" if inherited else "")
    data = _pdf([("" if inherited else rotate, content)], tree)
    (page,) = _read(data)
    expected = (842, 595) if rotation in (90, 270) else (595, 842)
    assert (page.width, page.height) == pytest.approx(expected)
    _assert_on_page(page)
    for k in range(8):
        line = _find(page, f"upright line number {k} reads fine")
        assert line.text == f"upright line number {k} reads fine"
        assert line.x0 == pytest.approx(60, abs=0.5)
        assert line.top < 80 + 20 * k < line.bottom  # the baseline is inside the line box
        assert line.width > 5 * line.height  # a horizontal line, not a vertical stack
        assert line.size == pytest.approx(10)
    assert all("sideways" not in line.text for line in page.lines)
    extract_offline(data, "rotated.pdf", None)


def _user_point(box: PageBox, x: float, y: float) -> tuple[float, float]:
    """The user-space point that ``box`` shows at display (x, y) (inverse of to_display)."""
    if box.rotation == 0:
        return box.left + x, box.top - y
    if box.rotation == 90:
        return box.left + y, box.bottom + x
    if box.rotation == 180:
        return box.right - x, box.bottom + y
    return box.right - y, box.top - x


def test_rotated_page_renders_turned() -> None:
    # A mark near the stored page's top-left corner ends at the top-right after 90 degrees.
    data = _pdf([("/Rotate 90", _rect(20, 780, 40, 20))], "/MediaBox [0 0 595 842]")
    with open_pdf(data, Limits(render_dpi=36)) as pdf:
        cx, cy, width, height = _dark_centre(pdf.render_png(0))
    scale = 0.5
    assert (width, height) == (round(842 * scale), round(595 * scale))
    expected = PageBox(0, 0, 595, 842, 90).to_display(40, 790)
    assert (cx, cy) == pytest.approx((expected[0] * scale, expected[1] * scale), abs=1.5)
    assert cx > width / 2 and cy < height / 2


# --- (d) text beyond the edges ----------------------------------------------------------------


def test_text_beyond_the_right_edge_is_clipped_and_extraction_survives() -> None:
    body = _newspaper(LETTER[0], 2, 740, ["alpha", "bravo"])
    overflow = "".join(
        _text(480, 300 - 14 * k, f"runs off the page edge {k} " + "overflowing " * 8)
        for k in range(4)
    )
    # 580..623 pt: the word's centre is on the page, its end is not (this crashed the layout).
    straddle = "".join(_text(580, 230 - 14 * k, "straddling") for k in range(8))
    wide = "".join(_text(700 + 20 * k, 80, f"offpage{k} text wholly beyond") for k in range(4))
    bleed = _text(-40, 60, "bleedleft partly") + _text(200, 800, "above the top edge")
    data = _pdf([("", body + overflow + straddle + wide + bleed)] * 2, "/MediaBox [0 0 612 792]")
    pages = _read(data)
    for page in pages:
        assert (page.width, page.height) == pytest.approx(LETTER)
        _assert_on_page(page)
        texts = " ".join(line.text for line in page.lines)
        assert "offpage" not in texts and "above the top" not in texts
        assert "bleedleft" not in texts and "partly" in texts
        edge = _find(page, "runs off the page edge 0")
        assert edge.x1 <= 612
        assert edge.text.count("overflowing") < 8  # the words past x = 612 are gone
        cut = [line for line in page.lines if line.text.startswith("strad")]
        assert len(cut) == 8
        assert all(line.text != "straddling" and line.x1 <= 612 for line in cut)
    result = extract_offline(data, "overflow.pdf", None)
    assert "bravo" in _article_text(result).lower()
