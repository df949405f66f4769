"""The offline extractive summarizer."""

from __future__ import annotations

import pytest

from taskflow_server.llm.offline import split_sentences, strip_boilerplate, summarize_text

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
