"""The story grammar: sentences a summarizer can work with, consistent figures, determinism."""

from __future__ import annotations

import random
import re

import pytest

from taskflow_server.pdf.stories import TOPICS, VERBS, money_figures, write_story

# Seeds well away from the ones the grammar was looked at with (0..20).
SEEDS = range(1000, 1200)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@pytest.mark.parametrize("seed", SEEDS)
def test_story_reads_as_news(seed: int) -> None:
    rng = random.Random(seed)
    story = write_story(
        rng, "2021-06-15", TOPICS[seed % len(TOPICS)], min_words=rng.randint(0, 700)
    )
    assert story.topic == TOPICS[seed % len(TOPICS)]
    body = story.body
    words = _words(body)
    assert len(words) >= 150
    for sentence in story.sentences:
        assert sentence.endswith(".")
        assert VERBS & set(_words(sentence)), sentence
    for a, b, c in zip(words, words[1:], words[2:], strict=False):
        assert not a == b == c, body
    # The headline is about the story: it shares key nouns with the body.
    title_words = set(_words(story.title))
    shared = [n for n in story.key_nouns if n in title_words and n in set(words)]
    assert len(shared) >= 2, (story.title, story.key_nouns)
    # Figures agree: every dollar amount is one of the story's facts, each fact is printed.
    facts = {v.lower() for v in story.facts.values()}
    assert money_figures(f"{story.title} {story.deck} {body}") <= facts
    for value in story.facts.values():
        if value.startswith("$") or "-" in value:
            assert value in body or value.lower() in body.lower(), value
    if "vote" in story.facts:
        yes, no = (int(n) for n in story.facts["vote"].split("-"))
        assert yes + no == int(story.facts["board_size"]) and yes > no
        for match in re.findall(r"\bvot\w* (\d+)-(\d+)", body):
            assert f"{match[0]}-{match[1]}" == story.facts["vote"]
    if story.dateline:
        assert story.paragraphs[0][: len(story.dateline.split()) + 1] == [
            *story.dateline.split(),
            "\u2014",
        ]
    if story.byline:
        assert story.byline.startswith("By ") and len(story.author.split()) == 2
    assert story.pull_quote and story.pull_quote in body


@pytest.mark.parametrize("topic", TOPICS)
def test_each_topic_has_a_lead_with_a_time(topic: str) -> None:
    story = write_story(random.Random(4242), "2019-11-04", topic)
    lead = " ".join(story.paragraphs[0])
    assert re.search(r"\bon (Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b", lead)


def test_story_is_deterministic_for_a_seed() -> None:
    first = write_story(random.Random(77), "2020-02-02")
    second = write_story(random.Random(77), "2020-02-02")
    assert first == second
    assert write_story(random.Random(78), "2020-02-02") != first


def test_event_day_is_before_the_issue_date() -> None:
    # 2021-06-15 is a Tuesday: the story happened on one of the three working days before it.
    days = set()
    for seed in SEEDS:
        lead = " ".join(write_story(random.Random(seed), "2021-06-15").paragraphs[0])
        days.update(re.findall(r"\bon (\w+day)\b", lead))
    assert days == {"Thursday", "Friday", "Monday"}


def test_unknown_topic_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown topic"):
        write_story(random.Random(1), "2020-01-01", "astrology")
