"""A second, independent newspaper generator (fpdf2), with ground truth for the quality check.

The first generator (:mod:`taskflow_server.pdf.samples`) is ours and the offline splitter was
built against it, so reading it well proves little. This one shares no code, vocabulary or
page grid with it and draws with another PDF library; a layout rule that only fits the first
generator shows up as a failure here.

:func:`make_broadsheet` draws one issue at random from a seed:

- a page size per issue (A3, tabloid, a broadsheet-like 15 x 22.75 in, US Letter) and 3 to 6
  columns with their own margins and gutters;
- page 1 opens with a masthead and a date line; later pages have a running head (paper, date,
  section, "Page N") and every page a folio at its foot;
- rows of modules: a story spans 1 to 3 columns (the lead story on page 1 up to 4), with an
  optional kicker (a short bold label above the headline, in capitals or not, in Helvetica,
  Times or Courier, at most 0.6 of the headline's size), a headline in Helvetica or Times
  (bold or roman, left-aligned or centred, 1 to 3 lines, never under 1.6 times the body
  size nor over 0.75 of the nameplate's), an optional italic deck under it, an optional
  "By ..." byline, an optional grey photo box with an italic caption, and the body flowing
  down each column and across to the next (justified or ragged, indented paragraphs, words
  hyphenated at line ends); Times or Helvetica body type of 8.5 to 10 pt;
- boxed advertisements (single or double rule) of centred display type in any of the three
  families ("CLEARANCE SALE"), a secondary line, the business name and small print;
- one story of page 1 may jump: "Continued on page N" ends its last column and a jump head
  with "Continued from page 1" carries the rest on page N.

The ground truth (the result shape that :mod:`taskflow_server.pdf.quality` reads) lists per
page the articles with their ``title``, ``subtitle`` (the deck, never part of the title or
body), ``kicker`` (likewise: neither title nor body), ``author`` and the whole ``body`` (a
jumped story in full on the page where it starts). Advertisements and captions are in no
article: ``generator.inserts`` lists them as ``{"page", "kind": "advert" | "caption",
"text"}``. Only ASCII text is drawn (the core fonts are Latin-1).

fpdf2 writes the page size once on the page tree (pages inherit ``/MediaBox``), as many real
producers do; ``inherit_media_box=False`` writes it on every page instead.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF

PAGE_SIZES: dict[str, tuple[float, float]] = {
    "a3": (842.0, 1191.0),
    "tabloid": (792.0, 1224.0),
    "broadsheet": (1080.0, 1638.0),
    "letter": (612.0, 792.0),
}
"""Page sizes in points (width, height)."""

_FAMILIES = ("helvetica", "times", "courier")

# --- vocabulary and grammar -------------------------------------------------------------------

_TOWNS = (
    "Bramwick", "Ostmere", "Calder Point", "Fenholt", "Marrow Bay", "Quillon", "Tessford",
    "Harlow Reach", "Vintry", "Ashcombe", "Dunmere", "Pellow Cross",
)  # fmt: skip
_GIVEN = (
    "Ines", "Tobias", "Marguerite", "Okon", "Halvard", "Priya", "Desmond", "Yuki", "Rosalind",
    "Caspar", "Nadia", "Florian", "Amara", "Bertil", "Lucia", "Emeka", "Sunniva", "Rafael",
)  # fmt: skip
_FAMILY = (
    "Parkhurst", "Velasco", "Thorne", "Adebayo", "Lindqvist", "Marchetti", "Okafor", "Brandt",
    "Castellan", "Whitcombe", "Nakamura", "Greaves", "Holloway", "Ferreira", "Quist", "Rowntree",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = ("March", "April", "May", "June", "September", "October", "November")


@dataclass(frozen=True)
class _Topic:
    """What one kind of story talks about."""

    label: str
    orgs: tuple[str, ...]
    roles: tuple[str, ...]
    things: tuple[str, ...]
    head_verbs: tuple[str, ...]
    body_verbs: tuple[str, ...]
    quotes: tuple[str, ...]
    units: tuple[str, ...]


_TOPICS = (
    _Topic(
        "On the Waterfront",
        ("Harbor Trust", "Ferry Board", "Pilots Guild", "Dock Committee"),
        ("harbor master", "ferry captain", "pilot", "dock foreman"),
        ("winter timetable", "north pier", "dredging contract", "mooring fees", "slipway"),
        ("Approves", "Delays", "Rethinks", "Defends", "Doubles"),
        ("approved", "postponed", "reviewed", "extended", "questioned"),
        (
            "The tide does not wait for a committee",
            "Every captain on this coast has asked for it",
            "We will keep the boats running whatever the weather",
        ),
        ("tonnes of silt", "sailings a week", "berths"),
    ),
    _Topic(
        "Harvest Report",
        ("Growers Cooperative", "Orchard Council", "Cider Mill", "Farm Bureau"),
        ("orchard grower", "mill owner", "seasonal picker", "soil scientist"),
        ("apple harvest", "frost damage", "cider pressing", "picking season", "irrigation scheme"),
        ("Counts", "Blames", "Saves", "Expands", "Salvages"),
        ("counted", "inspected", "replanted", "insured", "measured"),
        (
            "One cold night in April can undo a whole year",
            "The trees came through better than we feared",
            "Nobody here has seen a crop like this one",
        ),
        ("bushels", "hectares", "crates"),
    ),
    _Topic(
        "Rail",
        ("Branch Line Company", "Signal Works", "Commuter Alliance", "Station Board"),
        ("signal engineer", "station manager", "commuter", "conductor"),
        ("signal upgrade", "evening service", "platform extension", "fare increase", "timetable"),
        ("Unveils", "Scraps", "Revives", "Postpones", "Funds"),
        ("unveiled", "cancelled", "restored", "tested", "priced"),
        (
            "A train that leaves on time is the whole point",
            "People have waited long enough at that platform",
            "The old signals were older than most of our staff",
        ),
        ("passengers a day", "minutes", "carriages"),
    ),
    _Topic(
        "Libraries",
        ("Reading Room Trust", "County Archive", "Library Friends", "Records Office"),
        ("archivist", "head librarian", "volunteer", "local historian"),
        ("map collection", "reading room", "late opening", "parish records", "book fund"),
        ("Reopens", "Digitizes", "Rescues", "Catalogs", "Extends"),
        ("reopened", "scanned", "restored", "catalogued", "lent"),
        (
            "These ledgers tell us who we were",
            "Children fill the room every afternoon now",
            "We found letters nobody had read for a century",
        ),
        ("volumes", "visitors a week", "boxes of letters"),
    ),
    _Topic(
        "Weather Watch",
        ("Coastal Forecast Office", "Flood Panel", "Storm Volunteers", "Roads Department"),
        ("forecaster", "flood warden", "road crew chief", "lifeboat volunteer"),
        ("storm surge", "river levels", "gritting plan", "sea wall", "flood barrier"),
        ("Braces For", "Measures", "Repairs", "Tests", "Reinforces"),
        ("measured", "repaired", "tested", "warned about", "reinforced"),
        (
            "The wall held, but only just",
            "We had sandbags on every doorstep by midnight",
            "Nobody should drive the coast road tonight",
        ),
        ("millimeters of rain", "kilometers of wall", "households"),
    ),
    _Topic(
        "Markets",
        ("Market Hall Traders", "Chamber of Commerce", "Stallholders Union", "Town Treasury"),
        ("stallholder", "market manager", "shop owner", "town treasurer"),
        ("stall rents", "Saturday market", "parking charges", "trading hours", "covered hall"),
        ("Freezes", "Cuts", "Raises", "Challenges", "Overhauls"),
        ("froze", "cut", "raised", "challenged", "overhauled"),
        (
            "Traders cannot pay more than they take",
            "The hall is busier than it has been in years",
            "A market is only as good as its worst stall",
        ),
        ("stalls", "dollars a month", "traders"),
    ),
)

_ADS = (
    ("CLEARANCE SALE", "Everything must go before the new season"),
    ("GRAND OPENING", "A new bakery on the corner of Mill Lane"),
    ("HALF PRICE", "All garden tools and seed this weekend only"),
    ("NOW HIRING", "Drivers, cooks and weekend staff wanted"),
    ("CLOSING DOWN", "Final reductions on sofas and beds"),
    ("FREE ESTIMATES", "Roofs, gutters and chimneys repaired"),
    ("SPRING FAIR", "Rides, music and food for the whole family"),
)
_SHOPS = (
    "Thorne and Daughters Furniture", "Ashcombe Hardware", "The Copper Kettle",
    "Quist Roofing", "Harlow Garden Centre", "Pellow Motors", "Vintry Bakehouse",
)  # fmt: skip
_FINE_PRINT = (
    "Open daily from nine until six",
    "while stocks last",
    "terms and conditions apply",
    "free parking behind the store",
    "call us on 555 0142",
    "no appointment needed",
    "delivery available across the county",
    "cash and cards accepted",
)


@dataclass
class Story:
    """One story's words: the truth of its article."""

    title: str
    kicker: str
    deck: str
    author: str
    paragraphs: list[list[str]]  # paragraphs of sentences
    jump_word: str
    caption: str

    def body(self, sentences: int | None = None) -> str:
        """The body text (only the first ``sentences`` sentences when given)."""
        out: list[str] = []
        left = sum(len(p) for p in self.paragraphs) if sentences is None else sentences
        for paragraph in self.paragraphs:
            if left <= 0:
                break
            out.append(" ".join(paragraph[:left]))
            left -= len(paragraph)
        return "\n\n".join(out)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}"


def _sentence(rng: random.Random, topic: _Topic, town: str, lead: bool) -> str:
    """One sentence from a small grammar over the topic's words."""
    org, thing = rng.choice(topic.orgs), rng.choice(topic.things)
    day = rng.choice(_WEEKDAYS)
    number = rng.choice((3, 7, 12, 18, 40, 65, 120, 450, 1200))
    if lead:
        return (
            f"{town.upper()} - The {org} {rng.choice(topic.body_verbs)} the {thing} on {day}, "
            f"after {rng.choice(('weeks', 'months', 'two years'))} of argument in {town}."
        )
    kind = rng.randrange(5)
    if kind == 0:
        return (
            f'"{rng.choice(topic.quotes)}," said {_name(rng)}, '
            f"a {rng.choice(topic.roles)} in {town}."
        )
    if kind == 1:
        return (
            f"The plan covers about {number} {rng.choice(topic.units)}, "
            f"{rng.choice(('twice', 'three times', 'half'))} the figure of last year."
        )
    if kind == 2:
        return (
            f"In {rng.choice(_MONTHS)} the {rng.choice(topic.orgs)} "
            f"{rng.choice(topic.body_verbs)} the {rng.choice(topic.things)} as well."
        )
    if kind == 3:
        return (
            f"Residents of {rng.choice(_TOWNS)} asked whether the {thing} would reach them "
            f"before the {rng.choice(('winter', 'summer', 'elections', 'holidays'))}."
        )
    return (
        f"A {rng.choice(topic.roles)} told the meeting that the {thing} "
        f"{rng.choice(('needed more money', 'was overdue', 'had been promised before'))}."
    )


def write_story(rng: random.Random, used: set[str], sentences: int) -> Story:
    """A story of about ``sentences`` sentences with a headline not in ``used``."""
    topic = rng.choice(_TOPICS)
    town = rng.choice(_TOWNS)
    for _ in range(50):
        thing = rng.choice(topic.things)
        title = f"{rng.choice(topic.orgs)} {rng.choice(topic.head_verbs)} {thing.title()}"
        if rng.random() < 0.4:
            title += f" in {rng.choice(_TOWNS)}"
        if title not in used:
            break
    used.add(title)
    sentences_left = max(2, sentences)
    paragraphs: list[list[str]] = [[_sentence(rng, topic, town, lead=True)]]
    sentences_left -= 1
    while sentences_left > 0:
        take = min(sentences_left, rng.choice((1, 2, 2, 3)))
        paragraphs.append([_sentence(rng, topic, town, lead=False) for _ in range(take)])
        sentences_left -= take
    kicker = ""
    if rng.random() < 0.5:
        kicker = rng.choice((topic.label, "Update", "Analysis", town, "Exclusive"))
    deck = ""
    if rng.random() < 0.55:
        deck = (
            f"{rng.choice(topic.roles).capitalize()}s say the {thing} "
            f"{rng.choice(('cannot wait', 'will cost more', 'is long overdue', 'splits the town'))}"
        )
    author = _name(rng) if rng.random() < 0.7 else ""
    caption = (
        f"{_name(rng)}, a {rng.choice(topic.roles)}, at the {rng.choice(topic.things)} "
        f"in {town} on {rng.choice(_WEEKDAYS)}."
    )
    return Story(title, kicker, deck, author, paragraphs, thing.split()[-1].upper(), caption)


# --- drawing ----------------------------------------------------------------------------------


@dataclass
class _Style:
    """The typography of one issue."""

    body_family: str
    body_size: float
    leading: float
    justify: bool
    head_family: str
    head_style: str
    head_centred: bool
    kicker_caps: bool
    kicker_scale: float
    kicker_family: str
    ad_family: str


@dataclass
class _Line:
    words: list[str]
    indent: bool
    last: bool  # a paragraph's last line (never justified)


@dataclass
class _Issue:
    """What a page draw needs: the PDF, the style, and the truth collected so far."""

    pdf: FPDF
    rng: random.Random
    style: _Style
    width: float
    height: float
    columns: int
    margin: float
    gutter: float
    nameplate: float = 64.0
    pages: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    @property
    def col_width(self) -> float:
        """Width of one column."""
        return (self.width - 2 * self.margin - (self.columns - 1) * self.gutter) / self.columns

    def col_x(self, k: int) -> float:
        """Left edge of column ``k``."""
        return self.margin + k * (self.col_width + self.gutter)


def _wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    """Greedy line breaks for display type (no hyphenation) in the current font."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and pdf.get_string_width(trial) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def _break_body(pdf: FPDF, paragraphs: Sequence[str], width: float, em: float) -> list[_Line]:
    """Body lines for a column ``width`` wide, hyphenating long words that do not fit."""
    space = pdf.get_string_width(" ")
    out: list[_Line] = []
    for p, paragraph in enumerate(paragraphs):
        words = paragraph.split()
        indent = p > 0
        current: list[str] = []
        used = em if indent else 0.0
        i = 0
        while i < len(words):
            word = words[i]
            need = pdf.get_string_width(word) + (space if current else 0.0)
            if used + need <= width or not current:
                current.append(word)
                used += need
                i += 1
                continue
            room = width - used - space
            letters = word.rstrip(".,;:!?\"'")
            split = 0
            if len(letters) >= 7 and letters.isalpha():
                for cut in range(len(letters) - 3, 2, -1):
                    if pdf.get_string_width(letters[:cut] + "-") <= room:
                        split = cut
                        break
            if split:
                current.append(word[:split] + "-")
                words[i] = word[split:]
            out.append(_Line(current, indent, last=False))
            current, used, indent = [], 0.0, False
        if current:
            out.append(_Line(current, indent, last=True))
    return out


def _draw_body_line(pdf: FPDF, line: _Line, x: float, y: float, width: float, em: float) -> None:
    """One body line at baseline ``y``; justified by spreading words when it reads well."""
    start = x + (em if line.indent else 0.0)
    avail = width - (em if line.indent else 0.0)
    text = " ".join(line.words)
    natural = pdf.get_string_width(text)
    gaps = len(line.words) - 1
    extra = (avail - natural) / gaps if gaps else 0.0
    if line.last or gaps == 0 or extra > 0.45 * pdf.font_size_pt or extra <= 0:
        pdf.text(start, y, text)
        return
    space = pdf.get_string_width(" ") + extra
    cursor = start
    for word in line.words:
        pdf.text(cursor, y, word)
        cursor += pdf.get_string_width(word) + space


def _sentence_count(story: Story) -> int:
    return sum(len(p) for p in story.paragraphs)


def _body_font(issue: _Issue) -> None:
    issue.pdf.set_font(issue.style.body_family, "", issue.style.body_size)


def _fit_lines(issue: _Issue, story: Story, width: float, capacity: int) -> tuple[int, list[_Line]]:
    """The most sentences of ``story`` whose lines fit ``capacity``, and those lines."""
    _body_font(issue)
    em = issue.style.body_size
    low, high = 0, _sentence_count(story)
    best: list[_Line] = []
    while low < high:  # the most sentences that fit: a binary search over the count
        mid = (low + high + 1) // 2
        lines = _break_body(issue.pdf, story.body(mid).split("\n\n"), width, em)
        if len(lines) <= capacity:
            low, best = mid, lines
        else:
            high = mid - 1
    if low and not best:
        best = _break_body(issue.pdf, story.body(low).split("\n\n"), width, em)
    return low, best


def _fit_head(issue: _Issue, text: str, width: float, size: float, bold: bool) -> float:
    """The headline size, lowered until it takes at most three lines (the font is set).

    It never goes under 1.6 times the body size: this generator has no news briefs with
    headlines barely larger than the text.
    """
    pdf = issue.pdf
    style = issue.style.head_style if bold else ""
    pdf.set_font(issue.style.head_family, style, size)
    floor = max(14.0, 1.6 * issue.style.body_size)
    while size > floor and len(_wrap(pdf, text, width)) > 3:
        size = max(floor, size - 2)
        pdf.set_font(issue.style.head_family, style, size)
    return size


def _headline(
    issue: _Issue, text: str, x: float, y: float, width: float, size: float, bold: bool
) -> float:
    """Draw a headline from ``y`` (its top); returns the y under it."""
    pdf = issue.pdf
    size = _fit_head(issue, text, width, size, bold)
    for line in _wrap(pdf, text, width):
        y += size
        lx = x + (width - pdf.get_string_width(line)) / 2 if issue.style.head_centred else x
        pdf.text(lx, y, line)
        y += 0.12 * size
    return y


def _story_module(
    issue: _Issue,
    story: Story,
    where: tuple[int, int, float, float],
    head_size: float,
    extra_lines: int = 0,
) -> tuple[int, list[_Line], float]:
    """Draw a story's head, photo and body in the module ``where`` (first column, span, top,
    bottom).

    The body is cut at the last whole sentence that fits the module plus ``extra_lines``;
    returns (sentences kept, the lines left over for a jump, the x of the last column used).
    """
    x0, span, top, bottom = where
    pdf, st, rng = issue.pdf, issue.style, issue.rng
    x = issue.col_x(x0)
    width = issue.col_x(x0 + span - 1) + issue.col_width - x
    y = top
    head_size = _fit_head(issue, story.title, width, head_size, bold=True)
    if story.kicker:
        size = min(st.body_size * st.kicker_scale, 0.6 * head_size)  # clearly under the head
        pdf.set_font(st.kicker_family, "B", size)
        kicker = story.kicker.upper() if st.kicker_caps else story.kicker
        story.kicker = kicker
        y += size
        pdf.text(x, y, kicker)
        y += 0.35 * size
    y = _headline(issue, story.title, x, y + 2, width, head_size, bold=True)
    if story.deck:
        size = max(st.body_size * 1.15, min(head_size * 0.5, st.body_size * 1.9))
        pdf.set_font(st.head_family, "I", size)
        y += 0.3 * size
        for line in _wrap(pdf, story.deck, width):
            y += size
            pdf.text(x, y, line)
            y += 0.15 * size
    y += 0.6 * st.body_size
    if story.author:
        pdf.set_font(st.body_family, "B", st.body_size)
        byline = f"By {story.author}"
        story.author = byline[3:]
        y += st.body_size
        pdf.text(x, y, byline.upper() if st.kicker_caps else byline)
        y += 0.8 * st.body_size
    col_tops = [y] * span
    if span >= 2 and bottom - y > 0.5 * (bottom - top) and rng.random() < 0.45:
        photo_cols = 1 if span == 2 else rng.choice((1, 2))
        pw = issue.col_x(x0 + photo_cols - 1) + issue.col_width - x
        ph = min(pw * rng.uniform(0.55, 0.8), 0.4 * (bottom - y))
        pdf.set_fill_color(200, 200, 200)
        pdf.rect(x, y + 2, pw, ph, style="F")
        cap_size = st.body_size * 0.82
        pdf.set_font(st.body_family, "I", cap_size)
        cy = y + 2 + ph + 3
        for line in _wrap(pdf, story.caption, pw):
            cy += cap_size
            pdf.text(x, cy, line)
            cy += 0.2 * cap_size
        issue.inserts.append({"page": pdf.page_no(), "kind": "caption", "text": story.caption})
        for k in range(photo_cols):
            col_tops[k] = cy + st.body_size
    capacity = [max(0, int((bottom - t) // st.leading)) for t in col_tops]
    count, lines = _fit_lines(issue, story, issue.col_width, sum(capacity) + extra_lines)
    last_x = _flow(issue, lines, x0, col_tops, capacity)
    return count, lines, last_x


def _flow(
    issue: _Issue, lines: list[_Line], x0: int, col_tops: list[float], capacity: list[int]
) -> float:
    """Draw ``lines`` down each column in turn (removing them from the list)."""
    _body_font(issue)
    st = issue.style
    last_x = issue.col_x(x0)
    for k, (ctop, room) in enumerate(zip(col_tops, capacity, strict=True)):
        x = issue.col_x(x0 + k)
        y = ctop
        for _ in range(room):
            if not lines:
                return last_x
            line = lines.pop(0)
            y += st.leading
            if st.justify:
                _draw_body_line(issue.pdf, line, x, y, issue.col_width, st.body_size)
            else:
                plain = _Line(line.words, line.indent, last=True)
                _draw_body_line(issue.pdf, plain, x, y, issue.col_width, st.body_size)
            last_x = x
    return last_x


def _advert(issue: _Issue, x0: int, span: int, top: float, bottom: float) -> None:
    """A boxed advertisement of centred display type."""
    pdf, rng, st = issue.pdf, issue.rng, issue.style
    x = issue.col_x(x0)
    width = issue.col_x(x0 + span - 1) + issue.col_width - x
    height = min(bottom - top, rng.uniform(0.35, 1.0) * (bottom - top), width * 1.6)
    headline, second = rng.choice(_ADS)
    shop = rng.choice(_SHOPS)
    fine = ", ".join(rng.sample(_FINE_PRINT, rng.randint(2, 4))).capitalize() + "."
    rows: list[tuple[str, str, float]] = []
    inner = width - 16
    big = min(40.0, 2.2 * st.body_size * span)
    pdf.set_font(st.ad_family, "B", big)
    while big > 12 and pdf.get_string_width(max(headline.split(), key=len)) > inner:
        big -= 1
        pdf.set_font(st.ad_family, "B", big)
    for spec in ((headline, "B", big), (second, "", big * 0.45), (shop, "B", big * 0.5)):
        text, style, size = spec
        pdf.set_font(st.ad_family, style, max(size, st.body_size))
        rows += [(t, style, max(size, st.body_size)) for t in _wrap(pdf, text, inner)]
    pdf.set_font("helvetica", "", st.body_size * 0.85)
    rows += [(t, "", st.body_size * 0.85) for t in _wrap(pdf, fine, inner)]
    need = sum(1.3 * s for _, _, s in rows) + 20
    height = max(height, need)
    if top + height > bottom:
        return
    pdf.set_line_width(1.5)
    pdf.rect(x, top, width, height)
    if rng.random() < 0.5:
        pdf.set_line_width(0.5)
        pdf.rect(x + 3, top + 3, width - 6, height - 6)
    y = top + (height - need) / 2 + 10
    for text, style, size in rows:
        family = st.ad_family if size > st.body_size * 0.9 else "helvetica"
        pdf.set_font(family, style, size)
        y += size
        pdf.text(x + (width - pdf.get_string_width(text)) / 2, y, text)
        y += 0.3 * size
    text = " / ".join((headline, second, shop, fine))
    issue.inserts.append({"page": pdf.page_no(), "kind": "advert", "text": text})


def _furniture(issue: _Issue, page: int, name: str, date: str, section: str) -> float:
    """Masthead or running head, and the folio; returns the top of the content area."""
    pdf, m = issue.pdf, issue.margin
    pdf.set_font("helvetica", "", 7.5)
    folio = f"{page}" if page % 2 else f"- {page} -"
    pdf.text((issue.width - pdf.get_string_width(folio)) / 2, issue.height - 0.45 * m, folio)
    if page == 1:
        size = issue.nameplate
        pdf.set_font("times", "B", size)
        pdf.text((issue.width - pdf.get_string_width(name)) / 2, m + size, name)
        pdf.set_font("helvetica", "", 8)
        line = f"{date}  |  Volume {issue.rng.randint(12, 140)}  |  Price 2 dollars"
        y = m + size + 16
        pdf.text((issue.width - pdf.get_string_width(line)) / 2, y, line)
        pdf.set_line_width(1.2)
        pdf.line(m, y + 6, issue.width - m, y + 6)
        return y + 16
    pdf.set_font("helvetica", "", 7.5)
    pdf.text(m, m, name.upper())
    centre = f"{date}  -  {section}"
    pdf.text((issue.width - pdf.get_string_width(centre)) / 2, m, centre)
    right = f"Page {page}"
    pdf.text(issue.width - m - pdf.get_string_width(right), m, right)
    pdf.set_line_width(0.6)
    pdf.line(m, m + 5, issue.width - m, m + 5)
    return m + 18


def _partition(rng: random.Random, columns: int, widest: int) -> list[int]:
    parts: list[int] = []
    left = columns
    while left > 0:
        part = rng.randint(1, min(widest, left))
        parts.append(part)
        left -= part
    return parts


def _nameplate_size(issue: _Issue, name: str) -> float:
    """The nameplate's size: as large as the page width allows, up to 64 pt."""
    return min(64.0, issue.width / (len(name) * 0.62))


def _head_size(issue: _Issue, span: int, lead: bool) -> float:
    """A headline size growing with the story's width; never near the nameplate's size."""
    base = issue.style.body_size
    size = base * issue.rng.uniform(1.9, 2.6) + 4.0 * (span - 1)
    return min(size * (1.3 if lead else 1.0), 54.0, 0.75 * issue.nameplate)


def _article(story: Story, sentences: int | None = None) -> dict[str, Any]:
    return {
        "title": story.title,
        "subtitle": story.deck,
        "kicker": story.kicker,
        "author": story.author,
        "body": story.body(sentences),
        "topics": [],
        "summary": "",
    }


def _page(
    issue: _Issue, page: int, total: int, meta: tuple[str, str, str], jump: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Draw one page; returns a pending jump (the story that goes on to a later page)."""
    rng, st = issue.rng, issue.style
    top = _furniture(issue, page, *meta)
    bottom = issue.height - issue.margin
    articles: list[dict[str, Any]] = []
    issue.pages.append(
        {"page_number": page, "status": "processed", "reason": None, "articles": articles}
    )
    pending: dict[str, Any] | None = None
    if jump is not None and jump["target"] == page:
        top = _continuation(issue, jump, top, bottom)
    y = top
    first_row = page == 1
    ads = 0
    while bottom - y > 8 * st.leading + 40:
        rest = bottom - y
        height = rest if rest < 420 else min(rest, rng.uniform(0.3, 0.55) * (bottom - top) + 60)
        widest = min(4, issue.columns) if first_row else min(3, issue.columns)
        parts = _partition(rng, issue.columns, widest)
        if first_row:
            rest = issue.columns - widest
            parts = [widest, *_partition(rng, rest, 3)] if rest > 0 else parts
        x0 = 0
        for span in parts:
            mod_top, mod_bottom = y, y + height - 14
            can_ad = span <= 2 and ads < 2 and not (first_row and x0 == 0)
            if can_ad and rng.random() < 0.25:
                ads += 1
                _advert(issue, x0, span, mod_top, mod_bottom)
                x0 += span
                continue
            lead = first_row and x0 == 0
            jumps = lead and total > 1 and pending is None and rng.random() < 0.7
            cap_estimate = span * max(1.0, (mod_bottom - mod_top - 60) / st.leading)
            words_per_line = issue.col_width / (st.body_size * 2.6)
            sentences = int(cap_estimate * words_per_line / 15 * (1.6 if jumps else 1.1)) + 2
            story = write_story(rng, issue.used, sentences)
            size = _head_size(issue, span, lead)
            if jumps:
                bottom_line = mod_bottom - st.leading * 1.5
                extra = rng.randint(8, 40)
                where = (x0, span, mod_top, bottom_line)
                placed, leftover, last_x = _story_module(issue, story, where, size, extra)
                article = _article(story, placed)
                articles.append(article)
                if leftover:
                    target = rng.randint(2, total)
                    issue.pdf.set_font(st.body_family, "I", st.body_size)
                    issue.pdf.text(last_x, mod_bottom, f"Continued on page {target}")
                    pending = {"word": story.jump_word, "lines": leftover, "target": target}
            else:
                where = (x0, span, mod_top, mod_bottom)
                placed, _, _ = _story_module(issue, story, where, size)
                if placed:
                    articles.append(_article(story, placed))
            x0 += span
        issue.pdf.set_line_width(0.4)
        issue.pdf.line(issue.margin, y + height - 6, issue.width - issue.margin, y + height - 6)
        y += height
        first_row = False
    return pending


def _continuation(issue: _Issue, jump: dict[str, Any], top: float, bottom: float) -> float:
    """The rest of a jumped story across the page's first columns; returns the y below it."""
    st, pdf = issue.style, issue.pdf
    lines: list[_Line] = jump["lines"]
    span = min(issue.columns, 3)
    x = issue.col_x(0)
    width = issue.col_x(span - 1) + issue.col_width - x
    centred, st.head_centred = st.head_centred, False  # a jump head sits flush left
    y = _headline(issue, jump["word"], x, top, width, st.body_size * 2.2, True)
    st.head_centred = centred
    pdf.set_font(st.body_family, "I", st.body_size)
    y += st.leading
    pdf.text(x, y, "Continued from page 1")
    y += 0.4 * st.leading
    per_col = -(-len(lines) // span)
    _flow(issue, lines, 0, [y] * span, [per_col] * span)
    end = y + per_col * st.leading + 10
    pdf.set_line_width(0.4)
    pdf.line(issue.margin, end, issue.width - issue.margin, end)
    return end + 10


def make_broadsheet(
    seed: int, pages: int | None = None, inherit_media_box: bool = True
) -> tuple[bytes, dict[str, Any]]:
    """One issue drawn from ``seed``: the PDF's bytes and its ground truth.

    ``pages`` fixes the page count (else 1 to 4). The same seed always gives the same truth
    and the same page content.
    """
    rng = random.Random(seed)
    size_name = rng.choice(sorted(PAGE_SIZES))
    width, height = PAGE_SIZES[size_name]
    columns = {"letter": (3, 4), "a3": (4, 5), "tabloid": (4, 5), "broadsheet": (5, 6)}[size_name]
    body_family = rng.choice(("times", "times", "helvetica"))
    body_size = rng.choice((8.5, 9.0, 9.5, 10.0))
    style = _Style(
        body_family=body_family,
        body_size=body_size,
        leading=round(body_size * rng.uniform(1.12, 1.25), 2),
        justify=rng.random() < 0.7,
        head_family=rng.choice(_FAMILIES[:2]),
        head_style=rng.choice(("B", "B", "")),
        head_centred=rng.random() < 0.2,
        kicker_caps=rng.random() < 0.6,
        kicker_scale=rng.choice((0.9, 1.0, 1.15, 1.4, 1.6)),
        kicker_family=rng.choice(_FAMILIES),
        ad_family=rng.choice(_FAMILIES),
    )
    pdf = FPDF(unit="pt", format=(width, height) if inherit_media_box else (100.0, 100.0))
    pdf.set_auto_page_break(False)
    pdf.set_creation_date(datetime(2025, 1, 1, tzinfo=UTC))  # deterministic bytes
    issue = _Issue(
        pdf=pdf,
        rng=rng,
        style=style,
        width=width,
        height=height,
        columns=rng.choice(columns) if width > 700 else rng.choice((3, 4)),
        margin=rng.uniform(28.0, 48.0),
        gutter=rng.uniform(10.0, 18.0),
    )
    total = pages if pages is not None else rng.randint(1, 4)
    name = f"The {rng.choice(_TOWNS)} {rng.choice(('Courier', 'Lantern', 'Tidings', 'Clarion'))}"
    issue.nameplate = _nameplate_size(issue, name)
    date = f"{rng.choice(_WEEKDAYS)}, {rng.choice(_MONTHS)} {rng.randint(1, 28)}, 2025"
    sections = ("Local", "Region", "Business", "Community", "Weather")
    pending: dict[str, Any] | None = None
    for page in range(1, total + 1):
        pdf.add_page(format=(width, height))
        new = _page(issue, page, total, (name, date, sections[(page - 1) % 5]), pending)
        if page == 1:
            pending = new
    truth = {
        "filename": f"broadsheet-{seed}.pdf",
        "issue_date": "unknown",
        "pages": issue.pages,
        "generator": {
            "name": "broadsheet",
            "seed": seed,
            "page_size": size_name,
            "columns": issue.columns,
            "inserts": issue.inserts,
        },
    }
    return bytes(pdf.output()), truth


def write_broadsheets(out_dir: str | Path, seeds: Sequence[int]) -> list[Path]:
    """Write ``broadsheet-SEED.pdf`` and its ``.json`` truth for each seed; returns the PDFs."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for seed in seeds:
        data, truth = make_broadsheet(seed)
        path = folder / truth["filename"]
        path.write_bytes(data)
        path.with_suffix(".json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m taskflow_server.testing.broadsheet OUT_DIR SEED...``."""
    parser = argparse.ArgumentParser(description="Write generated newspaper pages with truth.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("seeds", type=int, nargs="+")
    args = parser.parse_args(argv)
    for path in write_broadsheets(args.out_dir, args.seeds):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
