"""Standing matter of printed documents is told from what a document says (made-up examples
in the shapes official notices and newspapers use)."""

from __future__ import annotations

import pytest

from taskflow_server.pdf.layout import lead_summary
from taskflow_server.pdf.standing import is_standing_matter, own_summary


@pytest.mark.parametrize(
    "sentence",
    [
        "This part of the Bulletin lists notices of hearings scheduled by the board.",
        "The purpose of these notices is to let residents comment in time.",
        "FOR FURTHER INFORMATION CONTACT: Jo Smith, Harbour Office, telephone 555-0100.",
        "DATES: Comments are due by March 3.",
        "BILLING CODE 1234-56-P",
        "[Docket No. HB-2031-0042]",
        "Continued on page 7",
        "See page 12, column 3.",
    ],
)
def test_standing_matter(sentence: str) -> None:
    assert is_standing_matter(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "The harbour board proposes to close the north pier for repairs until May.",
        "Residents said the new bus line would save them an hour a day.",
        "The council approved the budget by a vote of five to two.",
    ],
)
def test_what_a_document_says(sentence: str) -> None:
    assert not is_standing_matter(sentence)


def test_a_documents_own_summary_leads_its_lead_summary() -> None:
    body = (
        "This section of the Bulletin contains notices of proposed rules. HARBOUR BOARD "
        "AGENCY: Harbour Board. SUMMARY: The board proposes to close the north pier for "
        "repairs. Boats will moor at the south quay. DATES: Comments are due by March 3."
    )
    assert own_summary(body) == (
        "The board proposes to close the north pier for repairs. Boats will moor at the south quay."
    )
    assert lead_summary(body).startswith("The board proposes to close the north pier")
    assert own_summary("No label here. Just text.") is None


def test_lead_summary_skips_standing_matter_while_anything_else_is_left() -> None:
    body = "This page lists the week's notices. The ferry will run every hour from Monday."
    assert lead_summary(body, max_sentences=1) == "The ferry will run every hour from Monday."
    assert lead_summary("Continued on page 7") == "Continued on page 7"
