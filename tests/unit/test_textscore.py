"""The text-layer quality score (``taskflow_server.pdf.textscore``)."""

from __future__ import annotations

import pytest

from taskflow_server.pdf.textscore import (
    DEFAULT_MIN_QUALITY,
    judge_token,
    junk_tokens,
    score_lines,
    score_text,
)

CLEAN = (
    "The council met on Tuesday evening to discuss the new budget for public transport. "
    "Members agreed that the tram line should reach the harbor district by the end of next "
    "year, and asked the city's engineers for a report on costs, schedules and safety. "
    "Residents who spoke at the meeting welcomed the plan, though several asked whether "
    "fares would rise. The U.S. Department of Transportation will review Form W-8BEN and "
    "section 401(k) rules on page 12, see www.example.gov for details (about 1,250 words)."
)
NOISY = (
    'f.a iwfrt:w i Wr? !&4?4 w,.i O ilnnnnnnnRnnnQOa tri"i-s- 0. vlSMffe; j9C-v- '
    "theMcherrin dnring the raid r c fire3 wa3 was made through the icy siish..iThe mud "
    "3TTITIT fI ;wft oLA .L Hr&mL ;.;2s!i2Il! &0tarf0rJiiR trtto-lirpJLMi- ljS the troops "
    "crossed a small stream and found it too deep for fording"
)


@pytest.mark.parametrize(
    "token",
    ["iwfrt:w", "!&4?4", "ilnnnnnnnRnnnQOa", "theMcherrin", "fire3", "siish..iThe", "r", "wft"],
)
def test_ocr_junk_is_junk(token: str) -> None:
    assert judge_token(token).kind == "junk"


@pytest.mark.parametrize(
    "token",
    ["The", "harbor", "city's", "U.S.", "don't", "McNeil", "PDFs", "FAA", "x-ray", "Ljubljana."],
)
def test_words_are_words(token: str) -> None:
    verdict = judge_token(token)
    assert verdict.kind == "word" if token != "Ljubljana." else verdict.kind != "neutral"


@pytest.mark.parametrize(
    "token", ["1898.", "$1,250", "(a)", "1040NR", "W-8BEN", "21st", "www.loc.gov", "—", "XIV"]
)
def test_numbers_codes_and_addresses_are_not_scored(token: str) -> None:
    assert judge_token(token).kind == "neutral"


def test_clean_text_scores_high_and_noisy_text_low() -> None:
    clean = score_text(CLEAN * 3)
    noisy = score_text(NOISY * 3)
    assert clean.judged and noisy.judged
    assert clean.score >= 0.95
    assert noisy.score < 0.2 < DEFAULT_MIN_QUALITY
    assert noisy.junk > clean.junk


def test_too_little_text_is_not_judged() -> None:
    quality = score_lines(["iwfrt:w i Wr?", "5"])
    assert not quality.judged and quality.score == 1.0


def test_junk_tokens_lists_the_junk() -> None:
    assert junk_tokens("the ilnnnnnnnRnnnQOa harbor fire3") == ["ilnnnnnnnRnnnQOa", "fire3"]


def test_other_scripts_are_not_judged() -> None:
    assert judge_token("Москва").kind == "neutral"
    assert score_text("Это обычный текст на русском языке " * 10).score == 1.0
