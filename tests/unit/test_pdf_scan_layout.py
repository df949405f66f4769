"""Layout rules for what OCR makes of a scanned page (issue 14), on synthetic lines.

A scan's lines carry no weight or slant, their sizes come from ink boxes (a "Q" or a "y"
makes one line of a headline measure taller than the next), and a line of display type set
with wide word spaces comes back in pieces. Each test builds the lines OCR gives and checks
what a reader of the printed page would call the titles.
"""

from __future__ import annotations

from taskflow_server.pdf.adverts import join_bands
from taskflow_server.pdf.layout import analyse_document
from taskflow_server.pdf.reader import Line, PageText
from taskflow_server.pdf.titles import headline_case, title_problem

TEXT = (
    "the council met on monday evening and agreed to repair the harbour wall before "
    "winter storms arrive while residents asked for more notice of the closures"
)
WORDS = TEXT.split(" ")


def _line(text: str, x0: float, top: float, x1: float, size: float) -> Line:
    return Line(text=text, x0=x0, top=top, x1=x1, bottom=top + 1.1 * size, size=size)


def _column(x0: float, x1: float, top: float, count: int, seed: int = 0) -> list[Line]:
    """``count`` lines of justified 9 pt running text, plain (as OCR gives them)."""
    lines = []
    for k in range(count):
        words = [WORDS[(seed + 5 * k + j) % len(WORDS)] for j in range(8)]
        right = x1 if k < count - 1 else x0 + 0.5 * (x1 - x0)
        text = " ".join(words).capitalize() + ("." if k == count - 1 else "")
        lines.append(_line(text, x0, top + 11.0 * k, right, 9.0))
    return lines


def _titles(lines: list[Line]) -> list[str]:
    page = PageText(number=1, width=600.0, height=800.0, lines=lines, char_count=5000)
    return [a.title for a in analyse_document([page])[0]]


def test_a_head_line_measured_taller_stays_in_its_head() -> None:
    head = [
        _line("Orchard Council", 40.0, 60.0, 180.0, 18.5),
        _line("Blames Picking", 45.0, 82.0, 175.0, 18.5),
        _line("Season in Quillon", 38.0, 104.0, 182.0, 26.0),  # the Q's tail
    ]
    titles = _titles(head + _column(40.0, 260.0, 140.0, 30))
    assert titles == ["Orchard Council Blames Picking Season in Quillon"]


def test_a_head_line_measured_smaller_is_not_a_deck() -> None:
    head = [
        _line("Commuter Alliance", 40.0, 60.0, 200.0, 19.2),
        _line("Unveils Fare Increase", 40.0, 82.0, 210.0, 16.4),
        _line("Commuters say the new fares cannot wait", 40.0, 104.0, 250.0, 11.0),
    ]
    page = PageText(1, 600.0, 800.0, head + _column(40.0, 260.0, 130.0, 30), 5000)
    (article,) = analyse_document([page])[0]
    assert article.title == "Commuter Alliance Unveils Fare Increase"
    assert article.subtitle == "Commuters say the new fares cannot wait"


def test_a_plain_kicker_over_a_head_is_no_title() -> None:
    lines = [
        _line("Rail", 40.0, 48.0, 60.0, 10.0),
        _line("Station Board Unveils Timetable", 40.0, 64.0, 250.0, 18.5),
        *_column(40.0, 260.0, 90.0, 30),
    ]
    titles = _titles(lines)
    assert titles == ["Station Board Unveils Timetable"]


def test_an_advert_in_ocr_pieces_is_not_a_story() -> None:
    axis, top = 420.0, 120.0
    advert = [
        _line("CLOSING", axis - 85.0, top, axis - 12.0, 32.0),
        _line("DOWN", axis + 12.0, top, axis + 85.0, 32.0),  # a monospaced word space
        _line("Final", axis - 80.0, top + 40.0, axis - 50.0, 16.0),
        _line("reductions on sofas", axis - 40.0, top + 41.5, axis + 80.0, 16.0),
        _line("Vintry Bakehouse", axis - 55.0, top + 65.0, axis + 55.0, 16.0),
        _line("While stocks last, cash and", axis - 60.0, top + 90.0, axis + 60.0, 8.5),
        _line("cards accepted, no", axis - 42.0, top + 101.0, axis + 42.0, 8.5),
        _line("appointment needed.", axis - 45.0, top + 112.0, axis + 45.0, 8.5),
    ]
    story = [_line("Harbour Wall Repairs Agreed", 40.0, 60.0, 250.0, 20.0)]
    story += _column(40.0, 260.0, 90.0, 50)
    titles = _titles(story + advert + _column(310.0, 530.0, top + 200.0, 20, seed=3))
    assert "Harbour Wall Repairs Agreed" in titles
    assert not any("CLOSING" in t or "Final" in t for t in titles), titles


def test_pieces_of_one_printed_line_are_joined_whatever_their_heights() -> None:
    pieces = [
        _line("the whole", 590.0, 1018.0, 643.0, 8.9),
        _line("for", 566.0, 1019.0, 583.0, 8.9),  # a point lower: still the same line
        _line("family", 650.0, 1018.0, 685.0, 8.9),
        _line("The Copper Kettle", 570.0, 1032.0, 681.0, 11.0),
    ]
    joined = join_bands(pieces, 9.0)
    assert [ln.text for ln in joined] == ["for the whole family", "The Copper Kettle"]


def test_headline_case() -> None:
    assert headline_case("The Greatest Wonder of the World")
    assert headline_case("WAKEFIELD & HOWE,")
    assert not headline_case("Let the eye of the child, with great success up to the very")
    assert not headline_case("“Ah, Anna!” said I, laughing at her,")


def test_one_word_of_a_list_is_no_title() -> None:
    assert title_problem("Rides,") == "one word of a list"
    assert title_problem("Obituaries") is None
    assert title_problem("WAKEFIELD & HOWE,") is None


def test_a_title_cut_mid_sentence_is_refused() -> None:
    assert title_problem("17th, state that. Wednesday, the 21st,") == "ends mid-sentence"
    assert title_problem("At the commencement of his speech, Mr.") == "ends on a title of address"
    assert title_problem("WAKEFIELD & HOWE,") is None  # an advertiser's name, set as a head
    assert not headline_case("17th, state that. Wednesday, the 21st,")  # digits have no case
