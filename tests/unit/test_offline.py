"""The offline extractive summarizer."""

from __future__ import annotations

import pytest

from taskflow_server.llm.offline import (
    BYLINE,
    FRAGMENT,
    QUOTE,
    SENTENCE,
    STANDING,
    sentence_kind,
    split_sentences,
    strip_boilerplate,
    strip_dateline,
    summarize_text,
)

NEWS = """City council approves new budget for public transport.

The city council voted on Tuesday to approve a budget of 12.5 million euros for public transport.
Mayor J. Rossi said the plan, e.g. the new tram line, would cut traffic by a third.
Opposition members argued that the budget ignores the suburbs. The vote was 21 to 12.
Work on the tram line starts in March. Buses will run every ten minutes from next year.
Residents welcomed the plan but asked for more bicycle lanes. The council will meet again in May.
"""


def test_returns_sentences_of_the_input_in_order() -> None:
    sentences = split_sentences(strip_boilerplate(NEWS))
    summary = summarize_text(NEWS, 3)
    picked = [s for s in sentences if s in summary]
    assert len(picked) == 3
    assert " ".join(picked) == summary
    positions = [NEWS.replace("\n", " ").find(s) for s in picked]
    assert positions == sorted(positions)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_returns_the_asked_number_of_sentences(count: int) -> None:
    sentences = split_sentences(strip_boilerplate(NEWS))
    summary = summarize_text(NEWS, count)
    assert sum(1 for s in sentences if s in summary) == count


def test_short_text_comes_back_whole_and_empty_text_is_empty() -> None:
    assert summarize_text("Only one sentence here.", 3) == "Only one sentence here."
    assert summarize_text("   \n\n ", 3) == ""
    with pytest.raises(ValueError):
        summarize_text(NEWS, 0)


def test_splitter_keeps_abbreviations_initials_and_decimals() -> None:
    sentences = split_sentences(
        'Mr. Smith paid 3.5 dollars. Dr. J. Doe said "no." The U.S. team won! Did it? Yes.'
    )
    assert sentences == [
        "Mr. Smith paid 3.5 dollars.",
        'Dr. J. Doe said "no."',
        "The U.S. team won!",
        "Did it?",
        "Yes.",
    ]


def test_splitter_handles_cjk_full_stops_and_paragraphs() -> None:
    assert split_sentences("今日は晴れです。明日は雨です。\n\nA heading\n\nBody text.") == [
        "今日は晴れです。",
        "明日は雨です。",
        "A heading",
        "Body text.",
    ]


def test_running_heads_and_page_numbers_are_stripped() -> None:
    page = "Federal Register / Vol. 85, No. {n} / Monday, January {n}, 2020 / Rules\n"
    body = "The agency amends its rules on emissions from coal plants. "
    text = "".join(page.format(n=n) + body * 3 + f"\n{n}\n\n" for n in range(1, 5))
    cleaned = strip_boilerplate(text)
    assert "Federal Register" not in cleaned
    assert "\n1\n" not in cleaned
    assert "coal plants" in cleaned
    assert "Federal Register" not in summarize_text(text, 2)


def test_hyphenated_line_breaks_are_joined() -> None:
    assert "disagree" in strip_boilerplate("Critics dis-\nagree with it.")


def test_language_agnostic_italian() -> None:
    testo = (
        "Il consiglio comunale ha approvato il bilancio. Il sindaco ha parlato a lungo del tram. "
        "I cittadini chiedono più piste ciclabili per il centro. La seduta è terminata alle nove."
    )
    summary = summarize_text(testo, 2)
    assert summary
    assert all(s in testo for s in split_sentences(summary))


def test_deterministic() -> None:
    assert summarize_text(NEWS * 5, 4) == summarize_text(NEWS * 5, 4)


# Stories written for these tests in a newspaper style: a dateline and lead (who, what, where,
# when), details with numbers, a quote with attribution, background.
TRAM_STORY = """By Ana Ruiz

HARBOR CITY — The Harbor City council approved a 40 million dollar tram line to the port on \
Tuesday, ending a decade of debate over how to ease traffic on the waterfront.

The tram line will run 6 kilometres from the central station to the container port, with 9 \
stops and a tram every 8 minutes at peak hours. Construction of the tram line is due to start \
in April and to finish in 2029, the council said.

"We have talked about this for ten years, and today we stopped talking," said Mayor Lena Ortiz.

The port handles 2 million containers a year, and most of its workers drive to the waterfront, \
which the council blames for the traffic jams. Shop owners on the waterfront had opposed \
earlier tram plans, fearing years of road works.

The vote was 14 to 5."""

FLOOD_STORY = """RIVERTON — Flood waters from the swollen Elm River forced 300 families from \
their homes in Riverton on Sunday, after two days of heavy rain broke the river's banks.

Rescue crews in boats carried 42 people from flooded streets near the river, and the town \
opened two schools as shelters for the families. The Elm River rose 3 metres in 24 hours, its \
highest level since 1998.

"The water came up to the windows in less than an hour," said Tom Baker, a baker whose shop \
stands near the bridge.

Forecasters expect the river to fall by Wednesday. The town council will meet on Monday to \
count the cost of the flood damage to homes and roads."""

LIBRARY_STORY = """MILLBROOK — The Millbrook public library will stay open until midnight on \
weekdays from next month, the library board decided on Thursday, after students asked for a \
quiet place to study late.

The library will hire 4 more staff for the late hours, at a cost of 180,000 dollars a year \
paid from the town's education fund. Last year 52,000 people visited the library, a third of \
them students.

"Half my class studies in the car park because the library closes at six," said Priya Shah, \
a student at Millbrook High School.

The board will review the late opening hours of the library after a year."""

_STORIES = [
    (TRAM_STORY, "Harbor City council approved", "talked about this", {"tram", "council"}),
    (FLOOD_STORY, "Flood waters", "came up to the windows", {"river", "flood"}),
    (LIBRARY_STORY, "public library will stay open", "car park", {"library", "students"}),
]


@pytest.mark.parametrize(("story", "lead", "quote", "key_nouns"), _STORIES)
def test_news_summary_is_lead_and_key_sentence_not_quote_or_byline(
    story: str, lead: str, quote: str, key_nouns: set[str]
) -> None:
    for count in (1, 2, 3):
        summary = summarize_text(story, count)
        picked = split_sentences(summary)
        lead_sentence = next(s for s in split_sentences(story) if lead in s)
        assert picked[0] == lead_sentence, (count, summary)  # the dateline stays with it
        assert quote not in summary and "By Ana" not in summary
        assert len(picked) == count
        words = {w.lower().strip(".,") for w in summary.split()}
        assert key_nouns <= words, summary
    sentences = split_sentences(strip_boilerplate(story))
    positions = [sentences.index(s) for s in split_sentences(summarize_text(story, 3))]
    assert positions == sorted(positions)


def test_sentence_kinds_and_datelines() -> None:
    assert sentence_kind("By Ana Ruiz") == BYLINE
    assert sentence_kind("By ANA RUIZ, Staff Writer") == BYLINE
    assert sentence_kind("By Friday, the council had voted on the new budget.") == SENTENCE
    assert sentence_kind('"We waited ten years for this," said Mayor Lena Ortiz.') == QUOTE
    assert sentence_kind("Photo: Crowds at the harbor on Tuesday.") == FRAGMENT
    assert sentence_kind("ACTION: Final rule.") == STANDING  # an administrative label
    assert sentence_kind("Council Approves Tram Line") == FRAGMENT
    lead = "HARBOR CITY — The council voted 14 to 5 on Tuesday to build a tram line."
    assert sentence_kind(lead) == SENTENCE
    assert strip_dateline(lead).startswith("The council")
    assert strip_dateline("WASHINGTON (AP) — The Senate met.") == "The Senate met."
    assert split_sentences("RIVERTON —\n\nThe river rose. Schools closed.") == [
        "RIVERTON — The river rose.",
        "Schools closed.",
    ]


def test_lead_is_the_first_real_sentence_even_after_a_quote() -> None:
    story = (
        '"It is a sad day for the harbor," said the mayor. '
        "The old lighthouse on the north pier was closed on Monday after an inspection found "
        "cracks in its walls. Engineers said the lighthouse could fall in a storm. "
        "The city will ask for bids to repair the lighthouse walls this spring. "
        "Visitors can still walk on the pier."
    )
    summary = summarize_text(story, 2)
    assert summary.startswith("The old lighthouse")
    assert "sad day" not in summary
