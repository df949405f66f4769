"""Advertisements, centred story heads and display type on synthetic pages (issue 21).

An advertisement centres every line, in two or more sizes; a story under a centred head is
running text justified to its column. Both share one vertical axis, so the layout tells them
apart by the running text: justified lines meet both edges of one measure, line after line.
"""

from __future__ import annotations

from taskflow_server.pdf.layout import analyse_document, settle_sizes
from taskflow_server.pdf.reader import Line, PageText
from taskflow_server.pdf.titles import has_date

TEXT = (
    "the council met on monday evening and agreed to repair the harbour wall before "
    "winter storms arrive while residents asked for more notice of the closures"
)


def _line(text: str, x0: float, top: float, x1: float, size: float, bold: bool = False) -> Line:
    return Line(text=text, x0=x0, top=top, x1=x1, bottom=top + 1.1 * size, size=size, bold=bold)


def _column(x0: float, x1: float, top: float, count: int, seed: int = 0) -> list[Line]:
    """``count`` lines of justified 10 pt running text (the last one short, flush left)."""
    vocabulary = TEXT.split()
    lines = []
    for k in range(count):
        words = [vocabulary[(seed + 7 * k + j) % len(vocabulary)] for j in range(8)]
        right = x1 if k < count - 1 else x0 + 0.5 * (x1 - x0)
        text = " ".join(words).capitalize() + ("." if k == count - 1 else "")
        lines.append(_line(text, x0, top + 12.0 * k, right, 10.0))
    return lines


def _centred(text: str, axis: float, width: float, top: float, size: float) -> Line:
    return _line(text, axis - width / 2, top, axis + width / 2, size, bold=size > 12)


def _titles(lines: list[Line]) -> list[str]:
    page = PageText(number=1, width=600.0, height=800.0, lines=lines, char_count=5000)
    return [a.title for a in analyse_document([page])[0]]


def _story_column() -> list[Line]:
    """A left-column story with its own flush-left head (so the page has body text)."""
    head = [_line("Harbour Wall Repairs Agreed", 40.0, 60.0, 250.0, 20.0, bold=True)]
    return head + _column(40.0, 260.0, 90.0, 50)


def test_an_advert_with_centred_small_print_is_not_a_story() -> None:
    axis, top = 420.0, 120.0
    advert = [
        _centred("CLEARANCE", axis, 107.0, top, 17.0),
        _centred("SALE", axis, 45.0, top + 22.0, 17.0),
        _centred("Everything must go", axis, 86.0, top + 44.0, 10.0),
        _centred("before the new season", axis, 101.0, top + 57.0, 10.0),
        _centred("Harlow Garden Centre", axis, 106.0, top + 70.0, 10.0),
        _centred("Free parking behind the", axis, 90.0, top + 84.0, 8.5),
        _centred("store, no appointment", axis, 82.0, top + 95.0, 8.5),
        _centred("needed, open daily from nine", axis, 110.0, top + 106.0, 8.5),
        _centred("until six, call us on 555 0142.", axis, 109.0, top + 117.0, 8.5),
    ]
    under = _column(310.0, 530.0, top + 200.0, 20, seed=3)
    titles = _titles(_story_column() + advert + under)
    assert "Harbour Wall Repairs Agreed" in titles
    assert not any("CLEARANCE" in t for t in titles), titles


def test_a_centred_head_over_justified_text_is_a_story() -> None:
    axis, top = 420.0, 60.0
    head = [
        _centred("PENNSYLVANIA RESERVES.", axis, 190.0, top, 20.0),
        _centred("Career of These Veterans from", axis, 180.0, top + 26.0, 13.0),
        _centred("Cold Harbor to Appomattox.", axis, 160.0, top + 43.0, 13.0),
    ]
    text = _column(310.0, 530.0, top + 64.0, 40, seed=5)
    titles = _titles(_story_column() + head + text)
    assert any(t.startswith("PENNSYLVANIA RESERVES") for t in titles), titles


def test_a_line_starting_in_the_foot_of_a_masthead_box_keeps_it_display_type() -> None:
    masthead = Line("The Vintry Clarion", 150.0, 48.0, 450.0, 121.0, 64.0, bold=True)
    dateline = Line("Friday, May 2, 2025 | Volume 19", 220.0, 110.0, 380.0, 119.0, 8.0)
    settled = settle_sizes([masthead, dateline], [], 9.0)
    assert settled[0].size == 64.0


def test_a_large_ocr_line_in_a_row_of_text_takes_the_text_size() -> None:
    # A speck beside a word fragment makes an OCR box tall: it reads as display type.
    text = Line("running text of the column", 40.0, 100.0, 200.0, 111.0, 9.0)
    speck = Line("ro", 204.0, 96.0, 216.0, 118.0, 20.0)
    settled = settle_sizes([text, speck], [], 9.0)
    assert settled[1].size == 9.0


def test_a_full_date_is_a_dateline() -> None:
    assert has_date("WASHINGTON, D. C., THURSDAY, NOVEMBER 10, 1898.")
    assert has_date("Friday, May 2, 2025 | Volume 19 | Price 2 dollars")
    assert not has_date("Orchard Council Saves Irrigation Scheme")
