"""Newspaper articles the fake makes up for a pdfxtract page request.

:func:`page_articles` reads like news: it takes the request's text layer ("Text layer of this
page": headline-like lines start articles, ``By ...`` lines are bylines, ``Continued on/from
page N`` notes fill the page links) or, for a scanned page, builds one to three stories from the
small word lists below, seeded by the page, so the same page always gets the same stories.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

WORDS = re.compile(r"\w+", re.UNICODE)
"""A word, in any script."""

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
"""The space after a sentence's final stop."""


_FIRST_NAMES = (
    "Ada", "Bruno", "Carmen", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kaija", "Luca", "Maren", "Nadia", "Oskar", "Priya", "Rafael", "Sofia", "Tomas", "Yara",
)  # fmt: skip


_LAST_NAMES = (
    "Albers", "Brandt", "Castillo", "Dahl", "Eriksen", "Fontaine", "Gallo", "Haas", "Ivanova",
    "Jansen", "Kowalski", "Lindgren", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rinaldi",
)  # fmt: skip


_HEAD_SUBJECTS = (
    "Council", "Harbour Board", "School Board", "Farmers", "Hospital", "Rail Operator",
    "Library", "Fishermen", "University", "Shopkeepers", "Water Authority", "Museum",
)  # fmt: skip


_VERBS = (
    ("Approves", "approved"), ("Delays", "postponed"), ("Debates", "debated"),
    ("Unveils", "unveiled"), ("Rejects", "rejected"), ("Backs", "backed"),
    ("Questions", "questioned"),
)  # fmt: skip


_HEAD_OBJECTS = (
    "Bridge Repairs", "New Budget", "Night Market", "River Survey", "Longer Hours",
    "Bus Timetable", "Solar Roofs", "Harvest Fair", "Flood Defences", "Cycle Lanes",
)  # fmt: skip


_SUBJECTS = (
    "The town council", "The harbour board", "The school board", "Local farmers",
    "The regional hospital", "The rail operator", "The public library", "Inshore fishermen",
    "The university", "Shopkeepers on the high street", "The water authority", "The museum",
)  # fmt: skip


_PROJECTS = (
    "repairs to the old stone bridge", "a budget for the coming year", "a weekly night market",
    "a survey of the river's water", "longer opening hours", "a new bus timetable",
    "solar panels on public roofs", "an autumn harvest fair", "stronger flood defences",
    "a network of cycle lanes",
)  # fmt: skip


_WHEN = (
    "on Monday", "late on Tuesday", "this week", "after a long evening meeting",
    "before the holiday weekend", "on Thursday afternoon",
)  # fmt: skip


_SPEAKERS = (
    "a spokeswoman", "a spokesman", "the chair of the committee", "a local resident",
    "one of the organisers", "an engineer who worked on the plans",
)  # fmt: skip


_SENTENCES = (
    "{subject} {verb} {project} {when}, ending months of discussion.",
    "The decision was welcomed by {speaker}, who said it had been a long time coming.",
    "Not everyone agreed: {speaker} warned that the costs could rise before the work is done.",
    "According to {speaker}, the first results should be visible by the end of the season.",
    "About {number} people attended the meeting, more than at any other this year.",
    "The plan will be reviewed again in {month}, when the first figures are available.",
    "Neighbours said they hoped the change would bring more visitors to the area.",
    "Funding comes partly from the regional government and partly from local donations.",
    "A public exhibition of the plans opens next week in the town hall.",
    "Critics asked why other options had not been studied in more detail.",
)  # fmt: skip


_MONTHS = ("March", "May", "June", "September", "October", "November")


_TOPICS = ("local government", "transport", "education", "environment", "economy", "culture")


_DECKS = (
    "Supporters say the change is overdue; critics worry about the cost.",
    "The vote followed months of debate and a packed public meeting.",
    "Residents will be asked for their views before work begins.",
    "",
)  # fmt: skip


_STOP = frozenset(
    ("the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "at", "by", "from",
     "as", "is", "are", "was", "were", "be", "its", "it", "this", "that", "after", "before",
     "over", "under", "into", "out", "new", "more", "most", "than", "then")
)  # fmt: skip


_TEXT_LAYER = re.compile(r"Text layer of this page[^\n]*\n", re.IGNORECASE)


_PAGE_OF = re.compile(r"\bPage (\d+) of (\d+)\b")


_BYLINE = re.compile(r"^By\s+([A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*){0,3})\s*$")


_CONTINUED_ON = re.compile(r"\bcontinued on page (\d+)\b\.?", re.IGNORECASE)


_CONTINUED_FROM = re.compile(r"\bcontinued from page (\d+)\b\.?", re.IGNORECASE)


def _page_rng(page: int, text: str) -> random.Random:
    digest = hashlib.sha256(f"{page}\n{text}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _made_up_body(rng: random.Random, subject: str, verb: str, project: str, sentences: int) -> str:
    fills = {
        "subject": subject,
        "verb": verb,
        "project": project,
        "when": rng.choice(_WHEN),
        "number": rng.randrange(40, 400, 10),
        "month": rng.choice(_MONTHS),
    }
    chosen = [_SENTENCES[0], *rng.sample(_SENTENCES[1:], min(sentences - 1, len(_SENTENCES) - 1))]
    paragraphs: list[str] = []
    for start in range(0, len(chosen), 3):
        group = chosen[start : start + 3]
        paragraphs.append(
            " ".join(line.format(speaker=rng.choice(_SPEAKERS), **fills) for line in group)
        )
    return "\n\n".join(paragraphs)


def _made_up_article(rng: random.Random) -> dict[str, Any]:
    index = rng.randrange(len(_SUBJECTS))
    project = rng.randrange(len(_PROJECTS))
    head_verb, verb = rng.choice(_VERBS)
    title = f"{_HEAD_SUBJECTS[index]} {head_verb} {_HEAD_OBJECTS[project]}"
    body = _made_up_body(rng, _SUBJECTS[index], verb, _PROJECTS[project], rng.randint(4, 7))
    return {
        "title": title,
        "subtitle": rng.choice(_DECKS),
        "author": f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        "body": body,
        "topics": rng.sample(_TOPICS, 2),
    }


def _is_headline(line: str) -> bool:
    """A short line that reads like a headline (not a masthead, byline, note or sentence)."""
    words = line.split()
    if not 2 <= len(words) <= 14 or len(line) > 100:
        return False
    if line[-1] in ".,;:!?" or not line[0].isalpha() or not line[0].isupper():
        return False
    if line.isupper() or _BYLINE.match(line) or line.lower().startswith("continued"):
        return False
    return sum(any(ch.isdigit() for ch in word) for word in words) * 3 < len(words)


def _text_layer_articles(layer: str, rng: random.Random) -> list[dict[str, Any]]:
    """Articles read off a page's text layer: each headline-like line starts one, a ``By``
    line is its author, a one-sentence line between headline and byline its subtitle, and the
    lines that follow (paragraphs kept) its body, up to the next headline."""
    articles: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    paragraph: list[str] = []

    def flush() -> None:
        if current is not None and paragraph:
            current["paragraphs"].append(" ".join(paragraph))
        paragraph.clear()

    for raw in layer.splitlines():
        line = " ".join(raw.split())
        if not line:
            flush()
            continue
        if _is_headline(line):
            flush()
            current = {"title": line, "author": "", "subtitle": "", "paragraphs": []}
            articles.append(current)
            continue
        if current is None:
            continue  # the masthead and dateline above the first headline
        byline = _BYLINE.match(line)
        if byline and not current["author"]:
            flush()
            if len(current["paragraphs"]) == 1 and not current["subtitle"]:
                current["subtitle"] = current["paragraphs"].pop()
            current["author"] = byline.group(1)
            continue
        paragraph.append(line)
    flush()
    if not articles:
        lines = [" ".join(raw.split()) for raw in layer.splitlines() if raw.strip()]
        if not lines:
            return []
        title = " ".join(lines[0].split()[:10]).rstrip(".,;:")
        articles = [{"title": title, "author": "", "subtitle": "", "paragraphs": lines[1:]}]
    out: list[dict[str, Any]] = []
    for article in articles:
        if len(out) == 3:
            break
        body = "\n\n".join(article.pop("paragraphs"))
        on_page = _CONTINUED_ON.search(body)
        from_page = _CONTINUED_FROM.search(body)
        body = _CONTINUED_FROM.sub("", _CONTINUED_ON.sub("", body))
        body = "\n\n".join(p.strip() for p in body.split("\n\n") if p.strip())
        if not body:
            if out:
                continue  # a lone headline (a caption, a running head) is not an article
            body = _made_up_body(rng, "The town council", "debated", rng.choice(_PROJECTS), 4)
        article["body"] = body
        article["continued_on_page"] = int(on_page.group(1)) if on_page else None
        article["continued_from_page"] = int(from_page.group(1)) if from_page else None
        out.append(article)
    return out


def _topics(title: str, rng: random.Random) -> list[str]:
    words: list[str] = []
    for word in WORDS.findall(title.lower()):
        if len(word) > 3 and word not in _STOP and word not in words and not word.isdigit():
            words.append(word)
    words.sort(key=len, reverse=True)
    return words[:3] or rng.sample(_TOPICS, 2)


def page_articles(text: str) -> list[dict[str, Any]]:
    """One to three news articles for the page described by a pdfxtract request's text
    (``Page N of M`` and, when given, the text layer), the same for the same text."""
    found = _PAGE_OF.search(text)
    page = int(found.group(1)) if found else 1
    split = _TEXT_LAYER.search(text)
    layer = text[split.end() :] if split else ""
    rng = _page_rng(page, layer or text)
    articles = _text_layer_articles(layer, rng) if layer.strip() else []
    if not articles:
        articles = [_made_up_article(rng) for _ in range(rng.randint(1, 3))]
    for article in articles:
        article.setdefault("continued_from_page", None)
        article.setdefault("continued_on_page", None)
        if not article.get("topics"):
            article["topics"] = _topics(article["title"], rng)
        sentences = [s for s in SENTENCE_BREAK.split(article["body"].replace("\n\n", " ")) if s]
        article["summary"] = " ".join(sentences[:2])[:400]
    return articles
