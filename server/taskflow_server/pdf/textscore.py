"""How much a page's text looks like text: a 0..1 score, from the text alone.

A scanned newspaper often carries a hidden OCR text layer made decades ago from a poor image:
``f.a iwfrt:w i Wr? !&4?4``, ``ilnnnnnnnRnnnQOa``, ``theMcherrin``. Trusting it gives junk
titles and bodies; re-reading the page with our own OCR engine may do better. This module
judges a text layer before it is trusted, with no dictionary and nothing downloaded.

Each whitespace-separated token is stripped of the punctuation around it and put in one of
these classes:

- **neutral**, left out of the score: numbers (``1898.``, ``$1,250``, ``39.13``), web and mail
  addresses, punctuation alone (``—``, ``•``), enumerators (``(a)``, ``b.``), codes in capitals
  with digits (``1040NR``, ``W-8BEN``, ``COVID-19``) and numbers with a one-letter or ordinal
  suffix (``7a``, ``21st``).
- **word**: letters only (apostrophes and hyphens joining parts allowed, each part judged), a
  case pattern a word has (``word``, ``Word``, ``WORD``, ``ADs``, ``McNeil``), a vowel/consonant
  mix a word has (a vowel in every part of three letters or more, no run of five consonants or
  three vowels... see :func:`word_weight`), no letter three times in a row, and letter pairs
  that occur in English (:data:`_BIGRAMS`, learnt at import from the small list of common
  words written in this module, :data:`_COMMON_WORDS`, with the word's start and end as
  letters of their own). A word with one rare letter pair (a name, a foreign word) still
  counts, with a lower weight; the single letters ``a``, ``I``, ``O`` and abbreviations with
  stops (``U.S.``, ``e.g.``) count as words.
- **junk**: everything else with a letter in it. The typical OCR junk matches named patterns
  (:func:`junk_reason`): characters other than letters inside the token (``iwfrt:w``), digits
  mixed into a lower-case word (``fire3``, ``0f``), a letter repeated (``ilnnnnnnn``), a case
  pattern no word has (``theMcherrin``, ``RnnnQ``), no vowel, long consonant runs, letter
  pairs that English does not use.

The page's score is ``1 - junk_share / JUNK_AT_ZERO`` (floored at 0): ``junk_share`` is the
junk tokens' share of the scored tokens, each weighing its length capped at 8 letters (a stray
``r`` weighs less than a long junk token; a word with one rare letter pair counts a tenth as
junk), with :data:`PRIOR_TOKENS` clean tokens added so a table page with a few dozen words is
not judged by two odd codes. Measured (``benchmarks/bench_corpus.py``): born-digital pages
0.907-1.00 (Federal Register, IRS instructions, DMCA, newsletter, bundled samples), the
Chronicling America OCR layer of *The National Tribune*, 10 Nov 1898 0.796, and our Tesseract
reading of that page 0.923. See :data:`DEFAULT_MIN_QUALITY`.

The letter-pair table is English, so pages in other Latin-script languages lose a little
(Latin *lorem ipsum* scores 0.84-0.97, so such a page may be OCR'd too: the better
reading is kept, at the cost of the OCR time); the structural rules (case, vowels, repeated letters,
junk characters, digits inside words) hold for any language written with Latin letters. Pages
of other scripts (Greek, Cyrillic, CJK) are not judged: their letters are not Latin, and the
score is then 1.0 with ``scored == 0``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# The patterns below name typographic quotes, dashes and symbols on purpose.
# ruff: noqa: RUF001, RUF003

DEFAULT_MIN_QUALITY = 0.85
"""Below this a text layer is not trusted (``pdf_text_min_quality``).

Measured on the shared corpus and the bundled samples (``benchmarks/bench_corpus.py``): every
born-digital English page scored 0.907 or more (the lowest: the Federal Register's last page;
most pages 0.95-1.00), the noisy 1898 OCR layer 0.796. The threshold sits in the middle of
that gap; the better reading is kept either way, so a wrong call costs OCR time, not text."""

MIN_SCORED_TOKENS = 20
"""Pages with fewer scored tokens are not judged (score 1.0): too little text to tell."""

# A modest list of common English words, written for this module (not copied from any word
# list): function words, everyday nouns, verbs and adjectives, and words of news, government
# and forms. It only feeds the letter-pair table below; a word need not be in it to count.
_COMMON_WORDS = """
the of and to in is was for that on with as by at from his her their this which be are were
have has had not but or an they it he she we you who what when where why how all any each
some more most other such no nor only own same so than too very can will just should now
about above after again against before below between during into through under over until
while because if then there here these those both few many much also back even still well
way down up out off new old first last long great little right big high small large next
early young important public bad able best better late hard major free full half clear sure
real black white least open whole red green blue short strong poor local social political
national federal state states united city county town country world nation people person
man men woman women child children family house home land water fire river road street
street building court office officer army navy war general soldier company regiment troops
government president congress senate law laws rule rules section notice action agency
department service system program information number part parts page paper issue report
news newspaper story article editor letter letters year years month week day days time
times morning evening night hour minute today yesterday tomorrow history school church
money price cost market business work worker job life death health body hand head face eye
eyes name word words place point group problem question fact case area power water light
side order line form forms return tax income amount total instructions file filing
include including required require requirements must may might would could shall being
been do does did done doing make made making take taken taking give given go going gone
come came coming see seen saw know known think thought look looked want wanted use used
using find found tell told ask asked seem seemed feel felt try tried leave left call called
keep kept let begin began show showed hear heard play run ran move moved live lived believe
hold held bring brought happen write wrote written provide provided sit stand stood lose
lost pay paid meet met continue set learn change changed lead led understand watch follow
followed stop create speak read allow add added spend grow open walk win offer remember love
consider appear buy wait serve die send expect build stay fall cut reach kill remain
suggest raise pass sell decide pull proposed propose airplane airplanes aircraft directive
safety inspection comments comment docket regulatory analysis preservation digital library
collection archive archives internet web meeting assembly international members member
october november december january february march april june july august september monday
tuesday wednesday thursday friday saturday sunday washington capitol supreme fire building
destroyed damage career veterans harbor south north east west spring summer autumn winter
quickly again always never often sometimes together however therefore although though
whether within without upon toward towards among across along around behind beyond
something nothing everything anything someone everyone himself herself themselves itself
myself yourself ourselves another either neither every enough several against whom whose
exchange explain example exactly expert excess extra jump judge join enjoy quiet quite
query queen zone size prize amazing lazy organize organization freeze puzzle squad square
yellow yes yet yard youth bodyguard knowledge known knife wrong wrote ghost rhythm
psychology photograph phone graph strength length width depth month eighth twelfth
dwelling twenty twice swift sworn scheme school schedule scholar script spring splendid
bright brought thought through throw thrown three threat shrink shrewd sphere
annual announce channel manner dinner connect enroll unread henry inroad access accept
account occur success flag flat fly floor flow fleet asks books blocks thanks works marks
copy happy reply supply design sign foreign campaign reign align gnaw box fox oxen
mixed six fix exit exist expert employ payment payroll avoid involve obvious jobs clubs
absent observe obtain debt subject object adjust adjoin belongs things kings meetings
withhold withheld fishhook bathhouse english angle single eagle ugly glad glass helpful
help helper pulp gulp almost film elm realm helmet calm palm wolf self golf gulf twelfth
filmed forward reward award upward towards skywalk airworthy dwarf perform perfume
surface nerve serve curve larva admit admiral madman kidney husband handbag input
unpaid inside unplug unpack amplify doctype typical hyphen nymph rhythms cymbal
hymn month months paragraphs depths widths hands birds heads adds odds facts acts
actress sects docs topics attics songs rungs lungs husbands lambs bombs climbs
dumb thumb limb numb lamb tomb plumb crumb comb womb subtle subtract absorb substance
outbreak hatbox lightbulb knob snob garb herb verb curb suburb
johnny john ohio adhere inhabit unhappy behind mayhem hothouse
shipmate equipment development postpone chapter helpmate upmost
knack knot know kneel knee kind kid kite ski skill asked basket desk risk mask husk
like likely bike hike lake make take cake wake woke spoke broke smoke strike
quickly weekly kiwi bankrupt bunker sinking thinking workday weekday backup pickup
monthly athlete highly nightly bushel wholly
already railroad walrus sealing
lb lbs mr mrs dr st jr sr ltd pp vs ft pt hr hrs km kg mg ml oz yd
width lengths strengths twelfths
lawful awful awkward showcase cowboy howl bowl jewel newt
midwest sidewalk bedroom godmother goodness kindness mindful handful
grandfather sandwich windfall redfern
shortcut outcome catcall witness fitness outside outfit outlaw outlook
network setback jetlag hitman batman footnote partner mattress mortgage outgoing
hotdog potpie netball
dogma stigma enigma pigment segment fragment judgment
campus lamp ramp stamp jump pump dump temple simple sample example ample complex
amber number member chamber timber lumber cumber limber
admire advance advice adverse advent adviser adverb
jelly jazz fizz buzz fuzzy dizzy pizza blitz waltz ritz quartz
zebra zero zinc zeal amaze blaze breeze squeeze
vacuum skiing hawaii circumvent broadcast slow slave
"""

_VOWELS = frozenset("aeiouy")
_START = "^"
_END = "$"


def _bigrams(word: str) -> list[str]:
    padded = f"{_START}{word}{_END}"
    return [padded[i : i + 2] for i in range(len(padded) - 1)]


def _learn(words: Iterable[str]) -> frozenset[str]:
    seen: set[str] = set()
    for word in words:
        seen.update(_bigrams(word))
    return frozenset(seen)


_WORDS = frozenset(_COMMON_WORDS.split())
_BIGRAMS = _learn(_WORDS)
"""Letter pairs of English (with ``^`` and ``$`` for a word's start and end), learnt at import
from :data:`_COMMON_WORDS`."""
_RARE_VOWEL_PAIRS = frozenset({"ii", "uu", "yy", "iy", "yu", "uy", "aa"})


def _plausible_pair(pair: str) -> bool:
    """A letter pair English uses: learnt from the word list, or any other pair with a vowel
    in it (``aeiouy``) except a few rare ones (``ii``, ``uu``...) and ``q`` without ``u``."""
    if pair in _BIGRAMS:
        return True
    if pair[0] == "q" or pair in _RARE_VOWEL_PAIRS:
        return False
    return any(ch in _VOWELS for ch in pair)


def rare_pairs(word: str) -> int:
    """How many letter pairs of ``word`` (lower case, with its start and end) English does
    not use (:func:`_plausible_pair`)."""
    return sum(1 for pair in _bigrams(word) if not _plausible_pair(pair))


_OUTER = "\"'“”‘’«»„()[]{}<>.,;:!?¡¿*†‡§¶|/\\-–—_~`^=+#…·•®©™"
_NUMBER = re.compile(r"^[$€£¥+\-−±]?\d[\d.,:/\-–%]*%?$")
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)\S+$|^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$", re.I)
_DOMAIN = re.compile(r"^[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:gov|com|org|net|edu|int|mil)$", re.I)
_ENUMERATOR = re.compile(r"^\(?(?:[a-z]|[ivx]{1,4}|\d{1,3}[a-z]?)[.)][.,;:]?$", re.I)
_CODE = re.compile(r"^(?=.*\d)(?=.*[A-Z])[A-Z0-9]+(?:[-/.][A-Z0-9]+)*$")
_NUMBER_SUFFIX = re.compile(r"^\d+(?:[a-zA-Z]|st|nd|rd|th|s|d)$")
_ROMAN = re.compile(r"^[IVXLC]+$")
_LONG_DIGITS = re.compile(r"\d{4,}")
_SHORT_ABBREVIATION = re.compile(r"^[A-Z][b-df-hj-np-tv-xz]{1,3}$")
_FOOTNOTE = re.compile(r"^\d{1,2}(?=[A-Z][a-z]+$)")
_ABBREVIATION = re.compile(r"^(?:[A-Za-z]\.){1,4}[A-Za-z]?\.?$")
_CASE_OK = re.compile(r"^(?:[A-Z]?[a-z]+|[A-Z]+|(?:[A-Z][a-z]+){2}|[a-z][A-Z][a-z]{2,})$")
_NAME_PREFIX = re.compile(r"^(?:Mc|Mac)(?=[A-Z][a-z])")
_ACRONYM_PLURAL = re.compile(r"^[A-Z]{2,5}s$")
_REPEAT = re.compile(r"([a-z])\1\1", re.I)
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{6,}")
_VOWEL_RUN = re.compile(r"[aeiou]{5,}")
_PIECE_SPLIT = re.compile(r"[-–—/()\[\]]+")
_CAPITAL_AMPERSAND = re.compile(r"(?<=[A-Z])&(?=[A-Z])")
_APOSTROPHES = "'’"
_SHORT_PARTS = frozenset({"s", "t", "d", "m", "ll", "re", "ve"})
"""What may follow an apostrophe (``court's``, ``don't``, ``we'll``)."""
_ONE_LETTER_WORDS = frozenset({"a", "i", "o"})
_MAX_WEIGHT = 8


def _is_latin_letter(ch: str) -> bool:
    return ch.isalpha() and "LATIN" in unicodedata.name(ch, "")


def _fold(text: str) -> str:
    """Accents off (``é`` -> ``e``), so the letter-pair table serves accented words too."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def junk_reason(part: str) -> str | None:
    """Why a letters-only word part (no joiners) is not word-like, or None when it is.

    Reasons: ``case`` (no word's case pattern), ``repeat`` (a letter three times in a row),
    ``vowels`` (no vowel in three letters or more, or five vowels in a row), ``consonants``
    (six consonants in a row), ``pairs`` (two or more letter pairs English does not use, or
    one in a word of up to three letters).
    """
    part = _NAME_PREFIX.sub("", part)  # "McNeil", "MacLeod": judge the name after it
    lower = part.lower()
    if lower in _WORDS:
        return None
    if _ACRONYM_PLURAL.match(part):
        return None  # PDFs, ADs
    if not _CASE_OK.match(part):
        return "case"
    if _REPEAT.search(lower):
        return "repeat"
    if part.isupper() and len(part) <= 5:
        return None  # an acronym: FAA, NTSB, HTML
    if len(lower) >= 3 and not any(ch in _VOWELS for ch in lower):
        return "vowels"
    if _VOWEL_RUN.search(lower):
        return "vowels"
    if _CONSONANT_RUN.search(lower):
        return "consonants"
    unseen = rare_pairs(lower)
    if unseen >= 2 or (unseen == 1 and len(lower) <= 3):
        return "pairs"
    return None


def word_weight(part: str) -> float:
    """1.0 for a word-like part, :data:`RARE_PAIR_VALUE` for one with a single rare letter pair
    (a name, a foreign word, an OCR misreading), 0.0 for junk (:func:`junk_reason`)."""
    if junk_reason(part) is not None:
        return 0.0
    if part.lower() in _WORDS or part.isupper():
        return 1.0
    return RARE_PAIR_VALUE if rare_pairs(part.lower()) else 1.0


RARE_PAIR_VALUE = 0.9
"""How much a word with one letter pair English does not use counts (a word counts 1)."""


@dataclass(frozen=True)
class TokenVerdict:
    """How one token was judged.

    Attributes:
        token: the token with the punctuation around it stripped.
        kind: ``neutral`` (not scored), ``word`` or ``junk``.
        value: 0..1, how word-like (1 for a plain word, 0 for junk).
        reason: for junk, what gave it away (``chars``, ``digits``, ``case``, ``repeat``,
            ``vowels``, ``consonants``, ``pairs``, ``letter``).
    """

    token: str
    kind: str
    value: float
    reason: str = ""


def judge_token(raw: str) -> TokenVerdict:
    """Judge one whitespace-separated token (see the module's docstring)."""
    if _ENUMERATOR.match(raw):
        return TokenVerdict(raw, "neutral", 0.0)
    token = raw.strip(_OUTER)
    if not token or _neutral(token):
        return TokenVerdict(token or raw, "neutral", 0.0)
    token = "".join(ch for ch in token if unicodedata.category(ch) != "Sk")  # "Aviac¸a˜o"
    letters = [ch for ch in token if ch.isalpha()]
    if not letters:
        if any(ch.isdigit() for ch in token):  # digits and symbols, not a number: "4?4", "&0"
            return TokenVerdict(token, "junk", 0.0, "chars")
        return TokenVerdict(token, "neutral", 0.0)  # symbols alone: "&", "×", "■"
    if not all(_is_latin_letter(ch) for ch in letters):
        return TokenVerdict(token, "neutral", 0.0)  # another script: not judged here
    if _ABBREVIATION.match(token):
        return TokenVerdict(token, "word", 1.0)
    folded = _CAPITAL_AMPERSAND.sub("", _fold(token))
    value = 2.0  # above any piece's value: no piece judged yet
    pieces = _PIECE_SPLIT.split(folded)
    for piece in pieces:
        piece = piece.strip(_OUTER)
        if not piece or _neutral(piece) or _ABBREVIATION.match(piece):
            continue
        if len(piece) == 1 and len(pieces) > 1 and piece.isalpha():
            continue  # "1201(c)", "x-ray", "T-shirt"
        reason, piece_value = _judge_piece(piece)
        if reason:
            return TokenVerdict(token, "junk", 0.0, reason)
        value = min(value, piece_value)
    if value > 1.0:
        return TokenVerdict(token, "neutral", 0.0)
    return TokenVerdict(token, "word", value)


def _neutral(token: str) -> bool:
    """Numbers, addresses, codes and Roman numerals: not scored."""
    return bool(
        _NUMBER.match(token)
        or _URL.match(token)
        or _DOMAIN.match(token)
        or _CODE.match(token)
        or _NUMBER_SUFFIX.match(token)
        or _ROMAN.match(token)
        or "\\" in token  # a file path
        or _LONG_DIGITS.search(token)  # dates, ids and print codes: "Sep<11>2014"
        or _SHORT_ABBREVIATION.match(token)  # "Blvd", "Wm", "Jkt": too short to judge
    )


def _judge_piece(piece: str) -> tuple[str, float]:
    """A piece of a token between joiners: its junk reason ("" when word-like) and value."""
    piece = _FOOTNOTE.sub("", piece)  # a footnote mark glued to a word: "2The"
    if any(ch.isdigit() for ch in piece):
        return "digits", 0.0
    if any(not ch.isalpha() and ch not in _APOSTROPHES for ch in piece):
        return "chars", 0.0
    parts = re.split(r"['’]", piece)
    if len(parts) == 1 and len(piece) == 1:
        if piece.lower() in _ONE_LETTER_WORDS or piece.isupper():
            return "", 1.0  # "a", "I", an initial or a form's box letter
        return "letter", 0.0
    if any(not p for p in parts[1:]) or not any(parts):
        return "chars", 0.0
    value = 1.0
    for index, part in enumerate(parts):
        if not part:
            continue  # a leading apostrophe: "'tis"
        if index and part.lower() in _SHORT_PARTS:
            continue  # "court's", "don't"
        if len(part) == 1 and len(parts) > 1:
            continue  # "O'Brien", "d'Arc"
        reason = junk_reason(part)
        if reason is not None:
            return reason, 0.0
        value = min(value, word_weight(part))
    return "", value


JUNK_AT_ZERO = 0.10
"""The weighted junk share at which the score reaches 0: a page where one token in ten is
junk scores 0, a page without junk 1, linearly in between."""
PRIOR_TOKENS = 100
"""Word tokens (of :data:`PRIOR_WEIGHT` each) assumed before counting, so a page with a few
dozen words (a table, a figure) is not judged by two or three odd tokens."""
PRIOR_WEIGHT = 5.0


@dataclass(frozen=True)
class TextQuality:
    """A text's quality score and what it was made of.

    Attributes:
        score: 0..1: ``1 - junk_share / JUNK_AT_ZERO``, floored at 0 (1.0 when too little
            text was scored to tell: see ``judged``).
        junk_share: the junk tokens' share of the scored tokens, weighted by length (capped
            at 8 letters; a word with one rare letter pair counts as half junk), with
            :data:`PRIOR_TOKENS` clean tokens added.
        scored: how many tokens were scored (not neutral).
        junk: how many scored tokens were junk.
        judged: False when fewer than :data:`MIN_SCORED_TOKENS` tokens were scored.
    """

    score: float
    junk_share: float
    scored: int
    junk: int
    judged: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        """The fields as plain data."""
        return {
            "score": self.score,
            "junk_share": self.junk_share,
            "scored": self.scored,
            "junk": self.junk,
            "judged": self.judged,
        }


def score_tokens(tokens: Iterable[str]) -> TextQuality:
    """Score whitespace-separated tokens (see the module's docstring)."""
    total = PRIOR_TOKENS * PRIOR_WEIGHT
    bad = 0.0
    scored = 0
    junk = 0
    for raw in tokens:
        verdict = judge_token(raw)
        if verdict.kind == "neutral":
            continue
        scored += 1
        weight = float(min(len(verdict.token), _MAX_WEIGHT))
        total += weight
        bad += weight * (1.0 - verdict.value)
        if verdict.kind == "junk":
            junk += 1
    if scored < MIN_SCORED_TOKENS:
        return TextQuality(1.0, 0.0, scored, junk, False)
    share = bad / total
    score = max(0.0, 1.0 - share / JUNK_AT_ZERO)
    return TextQuality(round(score, 3), round(share, 4), scored, junk, True)


def score_text(text: str) -> TextQuality:
    """Score a text (a page's, or any other)."""
    return score_tokens(text.split())


def score_lines(lines: Iterable[str]) -> TextQuality:
    """Score a page given as its lines' texts (``[line.text for line in page.lines]``)."""
    return score_tokens(token for line in lines for token in line.split())


def junk_tokens(text: str) -> list[str]:
    """The tokens of ``text`` judged junk (for reports and tests)."""
    return [v.token for v in (judge_token(t) for t in text.split()) if v.kind == "junk"]


__all__ = [
    "DEFAULT_MIN_QUALITY",
    "JUNK_AT_ZERO",
    "MIN_SCORED_TOKENS",
    "PRIOR_TOKENS",
    "PRIOR_WEIGHT",
    "RARE_PAIR_VALUE",
    "TextQuality",
    "TokenVerdict",
    "judge_token",
    "junk_reason",
    "junk_tokens",
    "rare_pairs",
    "score_lines",
    "score_text",
    "score_tokens",
    "word_weight",
]
