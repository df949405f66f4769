"""A small generative grammar that writes local news stories for the sample newspapers.

:func:`write_story` picks a topic (civic, schools, business, sports, weather, culture) and
fills one *frame*: a subject (who), an action (did what), an object, a place, a time that
agrees with the issue date and a reason (why). From the frame it writes

- a lead sentence (who did what, where, when), sometimes after a dateline ("MILLBROOK —");
- follow-up sentences with details and numbers that agree within the story (a budget stated
  once and referred to consistently, a vote whose two sides add up to the board size);
- quotes with attribution ("..., said Maria Lopez, the district's finance director.");
- background and next-step sentences, and generic local colour when more text is wanted;
- a headline built from the story's key nouns ("Council Approves $4.2 Million Bridge Repair"),
  an optional deck (sub-headline), a byline, a photo caption and a pull quote.

Every word list and template here is our own. The output is deterministic for the state of
the :class:`random.Random` passed in.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

_T = TypeVar("_T")


def _wordlist(text: str) -> list[str]:
    """The whitespace-separated words of ``text``."""
    return text.split()


TOPICS = ("civic", "schools", "business", "sports", "weather", "culture")
"""The story topics, in a fixed order."""

VERBS = frozenset(
    _wordlist(
        """
    said says added told noted warned argued explained predicted recalled urged
    approved voted rejected postponed delayed agreed opened reopened announced reported won beat
    hired named closed brought dropped knocked kept cancelled drew draws expects expected plans
    planned will would could must should can is was are were has have had be been begin begins
    began start starts started cost costs include includes included asked hopes hope want wants
    need needs needed come comes came take takes took run runs ran meet meets met
    lead leads led finished scored held hold holds remain remains remained set rose fell grew
    reached cleared returned moved raised spent paid showed shows serve serves served
    pushed pulled wrote called thanked praised questioned estimated counted welcomed sold
    covers covered found fits listened learn learned rated discussed hit practices
    """
    )
)
"""Every verb form the grammar's sentence templates use (each sentence has at least one)."""

# --- word lists (our own) ---------------------------------------------------------------------

_TOWNS = (
    "Millbrook",
    "Eastvale",
    "Stonebridge",
    "Cedar Falls",
    "Port Ellery",
    "Ashby",
    "Linden Grove",
    "Riverton",
    "Harbor City",
    "Westmoor",
    "Fairhaven",
    "Oak Hollow",
)
_STREETS = (
    "Main Street",
    "Elm Avenue",
    "Mill Road",
    "Harbor Road",
    "Orchard Lane",
    "Station Street",
    "Canal Street",
    "Quarry Road",
    "Willow Drive",
    "Bridge Street",
)
_FIRST = _wordlist(
    """
    Maria Ana Daniel Priya Tomas Grace Hector Leila Samuel Nadia Owen Rosa Victor Chloe Imani
    Arjun Beatrice Felix Hana Jonah Marta Nikolai Sofia Theo Yusuf Carmen Elliot Ingrid
    """
)
_LAST = _wordlist(
    """
    Lopez Ruiz Okafor Brennan Lindqvist Moreau Tanaka Haddad Kowalski Delgado Whitfield
    Achterberg Nakamura Ferreira Osei Caldwell Varga Hollis Pruitt Sandoval Mbeki Castellano
    Fairbairn Quintero Ashworth Obi
    """
)
_MONTHS = _wordlist(
    "January February March April May June July August September October November December"
)
_WEEKDAYS = _wordlist("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
_NUMBER_WORDS = {
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
    11: "eleven",
    12: "twelve",
}
_ADS = (
    ("SPRING CLEARANCE SALE", "20% off all garden tools", "Hardware"),
    ("GRAND REOPENING", "Free coffee all weekend", "Bakery"),
    ("NOW HIRING", "Drivers and kitchen staff", "Diner"),
    ("FALL TUNE-UP SPECIAL", "Oil change and inspection $39", "Garage"),
    ("BACK TO SCHOOL", "Two pairs of shoes for $50", "Shoe Shop"),
    ("HOLIDAY HOURS", "Open late every Thursday", "Books"),
)


@dataclass
class Story:
    """One generated news story.

    Attributes:
        title: the headline, built from the key nouns.
        deck: an optional sub-headline ("" when there is none).
        byline: "By First Last", or "" for an unsigned story.
        dateline: the place in capitals when the body opens with "PLACE —", else "".
        paragraphs: the body as paragraphs of words (dateline words included).
        topic: one of :data:`TOPICS`.
        key_nouns: lower-case nouns the headline is built from; the body uses them too.
        facts: the story's figures by name ("budget": "$4.2 million", "vote": "5-2", ...).
        pull_quote: a quotation from the body, for a pull quote.
        caption: a photo caption for the story.
    """

    title: str
    deck: str
    byline: str
    dateline: str
    paragraphs: list[list[str]]
    topic: str
    key_nouns: tuple[str, ...]
    facts: dict[str, str] = field(default_factory=dict)
    pull_quote: str = ""
    caption: str = ""

    @property
    def author(self) -> str:
        """The byline without "By "."""
        return self.byline[3:] if self.byline.startswith("By ") else self.byline

    @property
    def sentences(self) -> list[str]:
        """The body's sentences (a sentence ends with a word ending in a full stop)."""
        out: list[str] = []
        for para in self.paragraphs:
            words: list[str] = []
            for word in para:
                words.append(word)
                if word.endswith("."):
                    out.append(" ".join(words))
                    words = []
            if words:
                out.append(" ".join(words))
        return out

    @property
    def body(self) -> str:
        """The body as text, paragraphs separated by blank lines."""
        return "\n\n".join(" ".join(p) for p in self.paragraphs)


@dataclass
class Advert:
    """A display advertisement: centred lines of (text, role) with role in head/offer/shop."""

    lines: list[tuple[str, str]]


# --- frames -----------------------------------------------------------------------------------


@dataclass
class _Person:
    name: str
    role: str

    @property
    def last(self) -> str:
        return self.name.split()[-1]


@dataclass
class _Frame:
    """What one story is about, and the sentences written from it."""

    headline: str
    deck: str
    key_nouns: tuple[str, ...]
    lead: str
    details: list[str]
    quotes: list[tuple[str, str]]  # (quotation, attribution sentence ending)
    background: list[str]
    closing: list[str]
    facts: dict[str, str]
    caption: str


class _Context:
    """Shared choices for one story: the rng, the place, the days, people without repeats."""

    def __init__(self, rng: random.Random, issue_date: dt.date) -> None:
        self.rng = rng
        self.issue_date = issue_date
        self.town = rng.choice(_TOWNS)
        self.street = rng.choice(_STREETS)
        self._names: set[str] = set()
        # A working day in the week before the issue (meetings and announcements are).
        recent = [issue_date - dt.timedelta(days=d) for d in range(1, 7)]
        past = rng.choice([day for day in recent if day.weekday() < 5][:3])
        self.event_day = _WEEKDAYS[past.weekday()]
        future = issue_date + dt.timedelta(days=rng.randint(8, 40))
        self.future_date = f"{_MONTHS[future.month - 1]} {future.day}"

    def pick(self, options: Sequence[_T]) -> _T:
        return self.rng.choice(options)

    def person(self, role: str) -> _Person:
        for _ in range(200):
            name = f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}"
            last = name.split()[-1]
            if name not in self._names and all(n.split()[-1] != last for n in self._names):
                self._names.add(name)
                return _Person(name, role)
        raise RuntimeError("ran out of names")

    def money(self, low: int, high: int) -> str:
        return f"${self.rng.randint(low, high)}.{self.rng.randint(1, 9)} million"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _title_case(text: str) -> str:
    small = {"a", "an", "and", "at", "by", "for", "from", "in", "of", "on", "the", "to", "with"}
    words = text.split()
    out: list[str] = []
    for k, word in enumerate(words):
        if k and word in small:
            out.append(word)
        else:
            out.append(word[:1].upper() + word[1:])
    return " ".join(out)


def _civic(c: _Context) -> _Frame:
    body = c.pick(("council", "town board", "county commission"))
    size = c.rng.choice((5, 7, 9))
    project, object_noun = c.pick(
        (
            ("bridge repair", "bridge"),
            ("road resurfacing plan", "road"),
            ("new fire station", "station"),
            ("park renovation", "park"),
            ("water main replacement", "water"),
            ("library expansion", "library"),
        )
    )
    budget = c.money(1, 9)
    yes = c.rng.randint(size // 2 + 1, size)
    no = size - yes
    vote = f"{yes}-{no}"
    action, headverb = c.pick((("approved", "Approves"), ("postponed a vote on", "Delays")))
    reason = c.pick(
        (
            "after months of complaints about the condition of the site",
            "because an engineering report found the work could not wait",
            "to use a state grant before it expires at the end of the year",
        )
    )
    chair = c.person(f"the {body} president" if body != "county commission" else "the chair")
    finance = c.person(f"the {c.pick(('city', 'town', 'county'))}'s finance director")
    resident = c.person(f"who lives on {c.street}")
    members = _NUMBER_WORDS[size]
    if action == "approved":
        lead = (
            f"The {c.town} {body} {action} a {budget} {project} on {c.event_day}, "
            f"voting {vote} {reason}."
        )
        headline = (
            f"{_title_case(body.split()[-1])} {headverb} {budget.title()} {_title_case(project)}"
        )
        deck = f"{members.title()}-member {body} splits {vote} over cost and timing"
        details = [
            f"The {members}-member {body} voted {vote}, with the majority saying the "
            f"{project} had been put off for too long.",
            f"Under the plan, work on {c.street} will begin in the spring and is expected "
            f"to take about {c.rng.randint(6, 18)} months.",
            f"The {budget} will come from a mix of state money, reserves and a small fee "
            "added to water bills.",
            f"Crews will keep one lane of {c.street} open during the day, officials said.",
        ]
    else:
        lead = (
            f"The {c.town} {body} {action} a {budget} {project} on {c.event_day}, "
            f"saying members needed more time to study the cost."
        )
        headline = f"{_title_case(body.split()[-1])} {headverb} Vote on {_title_case(project)}"
        deck = f"Members want more detail on the {budget} estimate"
        vote = f"{yes}-{no}"
        details = [
            f"The {members}-member {body} voted {vote} to hold the item until {c.future_date}.",
            f"Supporters said the {project} was needed {reason}.",
            f"Opponents asked whether the {budget} estimate included the cost of moving "
            "power lines.",
            f"Residents who had come to speak about {c.street} were asked to return next month.",
        ]
    quotes = [
        (
            f"We have talked about this {object_noun} for ten years, and people are tired "
            "of waiting",
            f"said {chair.name}, {chair.role}.",
        ),
        (
            f"The {budget} figure is honest, and we will report every month on where the "
            "money goes",
            f"said {finance.name}, {finance.role}.",
        ),
        (
            "I drive my children past it every morning, so I want it done right",
            f"said {resident.name}, {resident.role}.",
        ),
    ]
    background = [
        f"The {object_noun} on {c.street} was last rebuilt more than forty years ago.",
        f"An inspection last year rated the {object_noun} as poor, the lowest grade short "
        "of closing it.",
        f"{chair.last} said the {body} had looked at three cheaper options before this one.",
    ]
    closing = [
        f"The {body} will meet again on {c.future_date} at the town hall.",
        f"Plans for the {project} are posted at the {c.town} public library.",
    ]
    facts = {"budget": budget, "vote": vote, "board_size": str(size)}
    caption = f"The {object_noun} on {c.street} in {c.town}, which the {body} voted on."
    return _Frame(
        headline,
        deck,
        (body.split()[-1], project.split()[-1], object_noun),
        lead,
        details,
        quotes,
        background,
        closing,
        facts,
        caption,
    )


def _schools(c: _Context) -> _Frame:
    district = f"{c.town} School District"
    size = c.rng.choice((5, 7))
    yes = c.rng.randint(size // 2 + 1, size)
    vote = f"{yes}-{size - yes}"
    budget = c.money(20, 90)
    students = c.rng.randint(18, 95) * 100
    teachers = c.rng.randint(4, 30)
    plan, noun = c.pick(
        (
            ("a later start time for high school classes", "start"),
            ("a new elementary school on " + c.street, "school"),
            ("free breakfast for every student", "breakfast"),
            ("a plan to hire more reading teachers", "teachers"),
        )
    )
    board = c.person("the board president")
    finance = c.person("the district's finance director")
    parent = c.person("a parent of two")
    lead = (
        f"The {district} board approved {plan} on {c.event_day}, voting {vote} as part of a "
        f"{budget} budget for next year."
    )
    head_noun, win = {
        "start": ("Later Start Times", "Win"),
        "school": ("New School", "Wins"),
        "breakfast": ("Free Breakfast", "Wins"),
        "teachers": ("More Reading Teachers", "Win"),
    }[noun]
    headline = c.pick(
        (
            f"School Board Backs {head_noun} in {budget.title()} Budget",
            f"{c.town} School Board Votes {vote} for {head_noun}",
            f"{head_noun} {win} Approval in {c.town} School Budget",
        )
    )
    deck = f"District of {students:,} students plans changes for next fall"
    details = [
        f"The district serves about {students:,} students in {c.town} and two nearby towns.",
        f"The {budget} budget includes money for {teachers} new teaching positions.",
        f"The board voted {vote} after a meeting that ran past eleven at night.",
        f"Families will get a letter about {plan} before the end of the month.",
    ]
    quotes = [
        (
            "Our students deserve a school day that fits how they learn",
            f"said {board.name}, {board.role}.",
        ),
        (
            f"Every line of the {budget} budget was checked twice, and the numbers add up",
            f"said {finance.name}, {finance.role}.",
        ),
        (
            "We asked for this for years, and I am glad the board listened",
            f"said {parent.name}, {parent.role}.",
        ),
    ]
    background = [
        f"Enrollment in the {district} has grown each year since the factory reopened.",
        f"The board first discussed {plan} at a public forum in the winter.",
        f"{finance.last} said state aid covers a little less than half of the budget.",
    ]
    closing = [
        f"The board will hold a public hearing on the budget on {c.future_date}.",
        "Parents can send comments to the district office until then.",
    ]
    facts = {"budget": budget, "vote": vote, "board_size": str(size), "students": f"{students:,}"}
    caption = f"Students arrive for classes in {c.town}, where the board voted on {plan}."
    keys = ("school", "board", "budget", noun)
    return _Frame(headline, deck, keys, lead, details, quotes, background, closing, facts, caption)


def _business(c: _Context) -> _Frame:
    name = c.pick(("Ferreira", "Northwind", "Bluestone", "Calder", "Redfern", "Ashgrove"))
    kind = c.pick(
        (
            ("Foods", "plant", "food processing plant"),
            ("Tools", "factory", "tool factory"),
            ("Logistics", "warehouse", "distribution warehouse"),
            ("Bakeries", "bakery", "commercial bakery"),
        )
    )
    company = f"{name} {kind[0]}"
    jobs = c.rng.randint(4, 40) * 10
    invest = c.money(2, 60)
    percent = c.rng.randint(3, 28)
    ceo = c.person(f"the chief executive of {company}")
    mayor = c.person(f"the mayor of {c.town}")
    worker = c.person(f"who has worked at the company for {c.rng.randint(3, 25)} years")
    action = c.pick(("open", "expand"))
    if action == "open":
        lead = (
            f"{company} announced on {c.event_day} that it will open a {invest} {kind[2]} on "
            f"{c.street} in {c.town}, bringing {jobs} jobs to the area."
        )
        headline = f"{company} to Open {_title_case(kind[1])}, Adding {jobs} Jobs"
    else:
        lead = (
            f"{company} said on {c.event_day} that it will expand its {kind[2]} in {c.town} "
            f"with a {invest} investment that adds {jobs} jobs."
        )
        headline = f"{company} Plans {invest.title()} Expansion, {jobs} Jobs"
    deck = f"Sales rose {percent} percent last year, the company said"
    details = [
        f"The company said sales rose {percent} percent last year, driven by orders from "
        "grocery chains and hospitals.",
        f"Hiring for the {jobs} positions will start in the summer, with training on site.",
        f"The {invest} project includes new loading docks and a solar roof.",
        f"The town agreed to pave the stretch of {c.street} that leads to the {kind[1]}.",
    ]
    quotes = [
        (
            f"{c.town} gave us skilled people and a fair deal, so we are staying",
            f"said {ceo.name}, {ceo.role}.",
        ),
        (
            f"These {jobs} jobs are the best news this town has had in years",
            f"said {mayor.name}, {mayor.role}.",
        ),
        (
            "I started on the night shift, and now my son wants to apply",
            f"said {worker.name}, {worker.role}.",
        ),
    ]
    background = [
        f"{company} was founded in {c.town} in a rented garage and now sells across the region.",
        f"The {kind[1]} site on {c.street} was empty for six years before the company bought it.",
        f"{ceo.last} said the company had also looked at two sites out of state.",
    ]
    closing = [
        f"A job fair is planned for {c.future_date} at the {c.town} community center.",
        "Applications will be accepted online and at the front office.",
    ]
    facts = {"investment": invest, "jobs": str(jobs), "percent": str(percent)}
    caption = f"The site on {c.street} where {company} plans to build."
    keys = (name.lower(), kind[0].lower(), kind[1], "jobs")
    return _Frame(headline, deck, keys, lead, details, quotes, background, closing, facts, caption)


def _sports(c: _Context) -> _Frame:
    mascot = c.pick(("Falcons", "Otters", "Miners", "Comets", "Foxes", "Pilots", "Rams"))
    rival_town = c.pick([t for t in _TOWNS if t != c.town])
    rival = c.pick(("Hornets", "Badgers", "Mariners", "Storm", "Wolves", "Knights"))
    sport, unit, low, high, position = c.pick(
        (
            ("soccer", "goals", 0, 4, "forward"),
            ("basketball", "points", 40, 80, "guard"),
            ("hockey", "goals", 0, 5, "center"),
            ("baseball", "runs", 0, 9, "shortstop"),
        )
    )
    ours = c.rng.randint(low + 2, high + 2)
    theirs = c.rng.randint(low, ours - 1)
    score = f"{ours}-{theirs}"
    star = c.person(f"a senior {position}")
    coach = c.person("the head coach")
    fan = c.person(f"who drove from {c.town} for the game")
    star_points = c.rng.randint(1, max(1, ours - 1 if unit != "points" else ours // 3))
    wins = c.rng.randint(12, 24)
    losses = c.rng.randint(1, 8)
    record = f"{wins} wins and {losses} {'loss' if losses == 1 else 'losses'}"
    lead = (
        f"The {c.town} {mascot} won the regional {sport} championship on {c.event_day}, "
        f"beating the {rival_town} {rival} {score} in front of a full crowd."
    )
    headline = c.pick(
        (
            f"{mascot} Beat {rival} {score} to Win {_title_case(sport)} Championship",
            f"{mascot} Take {_title_case(sport)} Title With {score} Win Over {rival}",
            f"{c.town} {mascot} Top {rival} in Regional {_title_case(sport)} Final",
            f"{star.last} Leads {mascot} Past {rival} for {_title_case(sport)} Crown",
        )
    )
    deck = f"{star.name} leads {c.town} to its first title in a decade"
    details = [
        f"{star.name}, {star.role}, scored {star_points} of the team's {ours} {unit}.",
        f"The {mascot} finished the season with {record}.",
        f"The {rival} had won the last two meetings between the teams.",
        f"The final {score} score was sealed in the last minutes of the game.",
    ]
    quotes = [
        (
            "These kids never stopped believing, even when we were behind",
            f"said {coach.name}, {coach.role}.",
        ),
        (
            "I just wanted to win it for the seniors and for the town",
            f"said {star.last}.",
        ),
        (
            "I have watched this team since they were small, and I had to be here",
            f"said {fan.name}, {fan.role}.",
        ),
    ]
    background = [
        f"The {mascot} last won the {sport} championship ten years ago.",
        f"{coach.last} took over the program three seasons ago.",
        f"The team practices at the field behind the school on {c.street}.",
    ]
    closing = [
        f"The {mascot} will play in the state tournament on {c.future_date}.",
        f"A parade for the team is planned along {c.street} this weekend.",
    ]
    facts = {"score": score, "ours": str(ours), "record": record}
    caption = f"The {c.town} {mascot} celebrate after the {sport} final."
    keys = (mascot.lower(), rival.lower(), sport, "championship")
    return _Frame(headline, deck, keys, lead, details, quotes, background, closing, facts, caption)


def _weather(c: _Context) -> _Frame:
    event, head_event, fall = c.pick(
        (
            ("a storm", "Storm", "rain"),
            ("heavy rain", "Heavy Rain", "rain"),
            ("a snowstorm", "Snowstorm", "snow"),
            ("a thunderstorm", "Thunderstorm", "rain"),
        )
    )
    snow = fall == "snow"
    homes = c.rng.randint(2, 90) * 100
    inches = f"{c.rng.randint(1, 9)}.{c.rng.randint(1, 9)}"
    roads = c.rng.randint(3, 25)
    manager = c.person("the county's emergency manager")
    forecaster = c.person("a forecaster with the regional weather office")
    resident = c.person(f"who lives near {c.street}")
    lead = (
        f"{_cap(event)} knocked out power to {homes:,} homes in {c.town} on {c.event_day} "
        f"and dropped {inches} inches of {fall} in less than a day."
    )
    headline = f"{head_event} Knocks Out Power to {homes:,} Homes in {c.town}"
    deck = f"{inches} inches fell in a day; {roads} roads were closed"
    details = [
        f"Crews closed {roads} roads, including part of {c.street}, because of fallen trees "
        f"and {'deep drifts' if snow else 'flooding'}.",
        f"The {inches} inches of {fall} set a record for the date, the weather office said.",
        f"Power was restored to most of the {homes:,} homes by the next evening.",
        "No serious injuries were reported.",
    ]
    quotes = [
        (
            "Stay off the roads until the crews have cleared them",
            f"said {manager.name}, {manager.role}.",
        ),
        (
            (
                "The snow came faster than the plows could clear it"
                if snow
                else "The ground was already wet, so the water had nowhere to go"
            ),
            f"said {forecaster.name}, {forecaster.role}.",
        ),
        (
            (
                "We could not open the front door for a whole day"
                if snow
                else "The creek came up to our porch in an hour"
            ),
            f"said {resident.name}, {resident.role}.",
        ),
    ]
    background = [
        f"The last storm of this size hit {c.town} nine years ago.",
        f"{manager.last} said the county had added pumps on {c.street} after that storm.",
        "Drier weather is expected for the rest of the week.",
    ]
    closing = [
        f"A shelter at the {c.town} community center will stay open until {c.future_date}.",
        "Residents can report damage to the county by phone.",
    ]
    facts = {"homes": f"{homes:,}", "inches": inches, "roads": str(roads)}
    caption = f"{c.street} in {c.town} after {event} on {c.event_day}."
    keys = (*head_event.lower().split(), "power", "homes")
    return _Frame(headline, deck, keys, lead, details, quotes, background, closing, facts, caption)


def _culture(c: _Context) -> _Frame:
    host, kind = c.pick(
        (
            (f"the {c.town} Historical Society", "exhibition"),
            (f"the {c.town} Community Theater", "festival"),
            ("the Riverside Art Museum", "exhibition"),
            (f"the {c.town} Folk Music Club", "festival"),
        )
    )
    theme = c.pick(
        (
            "old maps of the river",
            "photographs of the harbor",
            "quilts made by local families",
            "posters from a century of fairs",
        )
    )
    visitors = c.rng.randint(8, 90) * 100
    cost = c.rng.randint(5, 20)
    curator = c.person("the curator")
    director = c.person(f"the director of {host}")
    visitor = c.person(f"who came from {c.pick([t for t in _TOWNS if t != c.town])}")
    lead = (
        f"{_cap(host)} opened a new {kind} of {theme} on {c.event_day}, and {visitors:,} "
        f"people came on the first weekend."
    )
    headline = f"{_title_case(kind)} of {_title_case(theme)} Draws {visitors:,} Visitors"
    deck = f"{_cap(kind)} at {host} runs until {c.future_date}"
    details = [
        f"The {kind} runs until {c.future_date}, and tickets cost {cost} dollars.",
        f"The {visitors:,} visitors on the first weekend were more than organizers expected.",
        f"Volunteers spent two years collecting {theme} from attics and archives.",
        f"Students from schools in {c.town} will get free entry on weekdays.",
    ]
    quotes = [
        (
            "Every piece here has a family story behind it",
            f"said {curator.name}, {curator.role}.",
        ),
        (
            f"We hoped for a good crowd, but {visitors:,} people is more than we dreamed of",
            f"said {director.name}, {director.role}.",
        ),
        (
            "I found a picture of my grandfather on the wall",
            f"said {visitor.name}, {visitor.role}.",
        ),
    ]
    background = [
        f"{_cap(host)} was started by a group of teachers in a room above a shop on {c.street}.",
        f"{director.last} said the {kind} was paid for by small donations and a state grant.",
        "The building was restored last year after a long fund drive.",
    ]
    closing = [
        f"The {kind} is open from Wednesday to Sunday at {host} on {c.street}.",
        "Guided tours start every hour in the afternoon.",
    ]
    facts = {"visitors": f"{visitors:,}", "tickets": str(cost)}
    caption = f"Visitors look at {theme} at the {kind} in {c.town}."
    keys = (kind, "visitors", *(w for w in theme.split() if len(w) > 4))
    return _Frame(headline, deck, keys, lead, details, quotes, background, closing, facts, caption)


_FRAMES: dict[str, Callable[[_Context], _Frame]] = {
    "civic": _civic,
    "schools": _schools,
    "business": _business,
    "sports": _sports,
    "weather": _weather,
    "culture": _culture,
}


def _colour(c: _Context) -> list[str]:
    """Generic local sentences, used when a story needs more text than its frame gives."""
    other = c.person(c.pick(("a retired teacher", "a shop owner", "a nurse", "a bus driver")))
    second = c.person(c.pick(("a volunteer", "a student", "a farmer", "a pharmacist")))
    return [
        f"Many residents said they learned about the news from neighbors on {c.street}.",
        f"{other.name}, {other.role}, said the town had changed a great deal in recent years.",
        f"{other.last} added that people in {c.town} still look out for one another.",
        f"Shops along {c.street} reported a busy week as word spread.",
        "Some residents asked that future meetings start later in the evening.",
        f"{second.name}, {second.role}, said younger families were moving to {c.town}.",
        f"{second.last} said the town needs more housing that people can afford.",
        "The local radio station has covered the story every morning this week.",
        f"Officials in {c.town} said they would publish updates on the town website.",
        f"A meeting to answer questions from residents is set for {c.future_date}.",
        f"Bus service on {c.street} will run on its normal schedule.",
        "Several readers wrote to this newspaper to share their views.",
        f"The {c.town} library has copies of the documents for anyone who asks.",
        f"Volunteers said they would hold a cleanup on {c.street} in the coming weeks.",
        "Town staff said the phone lines were busier than usual all week.",
        f"Longtime residents recalled a similar debate in {c.town} two decades ago.",
        f"{other.last} said the matter came up at every dinner table on {c.street}.",
        "Parents at the school gate were talking about little else on Friday.",
        f"The {c.town} chamber of commerce said it would follow the matter closely.",
        f"Neighbors said parking near {c.street} was already hard to find.",
        f"{second.last} added that the town should keep people informed.",
        "A petition on the subject has gathered several hundred signatures.",
        f"Leaders of two churches in {c.town} asked people to stay patient and kind.",
        "Questions from readers can be sent to the newsroom by mail or email.",
        f"The county will review the matter at its own meeting on {c.future_date}.",
        f"Older residents said {c.town} has faced bigger challenges before.",
        "A local historian said records of the area go back almost two hundred years.",
    ]


def _quote(quotation: str, attribution: str) -> str:
    return f"\u201c{quotation},\u201d {attribution}"


def _paragraphs(c: _Context, frame: _Frame, dateline: str, min_words: int) -> list[list[str]]:
    rng = c.rng
    lead = frame.lead.split()
    if dateline:
        lead = [*dateline.split(), "\u2014", *lead]
    paras: list[list[str]] = [lead]
    middle: list[list[str]] = []
    details = list(frame.details)
    quotes = [_quote(q, a) for q, a in frame.quotes]
    background = list(frame.background)
    # detail, quote, detail + detail, quote, background..., quote, rest
    middle.append([details.pop(0)])
    middle.append([quotes.pop(0)])
    middle.append([details.pop(0), details.pop(0)])
    middle.append([background.pop(0), background.pop(0)])
    middle.append([quotes.pop(0), details.pop(0)])
    middle.append([background.pop(0)])
    middle.append([quotes.pop(0)])
    for group in middle:
        paras.append(" ".join(group).split())
    extra = _colour(c)
    rng.shuffle(extra)
    total = sum(len(p) for p in paras)
    closing = [s.split() for s in frame.closing]
    total += sum(len(p) for p in closing)
    while extra and total < min_words:
        take = min(len(extra), rng.randint(1, 3))
        para = " ".join(extra[:take]).split()
        del extra[:take]
        paras.append(para)
        total += len(para)
    paras.extend(closing)
    return paras


def write_story(
    rng: random.Random,
    issue_date: dt.date | str,
    topic: str | None = None,
    min_words: int = 0,
) -> Story:
    """A news story for an issue dated ``issue_date`` (a date or "YYYY-MM-DD").

    ``topic`` picks one of :data:`TOPICS` (random when ``None``); ``min_words`` asks for at
    least that many body words where the grammar can give them (up to roughly 600).
    """
    if isinstance(issue_date, str):
        issue_date = dt.date.fromisoformat(issue_date)
    topic = topic or rng.choice(TOPICS)
    if topic not in _FRAMES:
        raise ValueError(f"unknown topic {topic!r}")
    c = _Context(rng, issue_date)
    frame = _FRAMES[topic](c)
    dateline = c.town.upper() if rng.random() < 0.5 else ""
    paragraphs = _paragraphs(c, frame, dateline, min_words)
    byline = ""
    if rng.random() < 0.75:
        byline = f"By {rng.choice(_FIRST)} {rng.choice(_LAST)}"
    deck = frame.deck if rng.random() < 0.5 else ""
    pull = rng.choice(frame.quotes[:2])[0]  # quotes printed early, so a pull quote repeats text
    return Story(
        title=frame.headline,
        deck=deck,
        byline=byline,
        dateline=dateline,
        paragraphs=paragraphs,
        topic=topic,
        key_nouns=tuple(dict.fromkeys(k.lower() for k in frame.key_nouns)),
        facts=frame.facts,
        pull_quote=pull,
        caption=frame.caption,
    )


def write_advert(rng: random.Random) -> Advert:
    """A small display advertisement for a local shop."""
    head, offer, kind = rng.choice(_ADS)
    street = rng.choice(_STREETS)
    town = rng.choice(_TOWNS)
    shop = f"{rng.choice(('Main Street', 'Corner', 'Harbor', 'Old Mill', 'Village'))} {kind}"
    number = rng.randint(10, 480)
    return Advert(
        [
            (head, "head"),
            (offer, "offer"),
            (
                rng.choice(("This weekend only", "While stocks last", "Every day this month")),
                "offer",
            ),
            (shop, "shop"),
            (f"{number} {street}, {town}", "address"),
        ]
    )


_MONEY_RE = re.compile(r"\$\d+(?:\.\d+)?\s+[Mm]illion")


def money_figures(text: str) -> set[str]:
    """The "$N.N million" figures in ``text``, normalised to lower case."""
    return {m.lower() for m in _MONEY_RE.findall(text)}
