"""Offline OCR engines compared on our scans: seconds per page, word recall and precision.

Two pages, each engine (:data:`taskflow_server.pdf.ocr.ENGINES`) on each, in one run:

(a) page 1 of the bundled sample ``gazette-01.pdf`` turned into a scan by
    :func:`taskflow_server.pdf.samples.scan_image` (grey, skewed by up to 0.6 degrees, light
    noise, 150 dpi); the truth is that page's own text layer, so word recall and precision
    (bags of lower-cased words) are reported;
(b) page 1 of the 1856 Weekly Journal (``sample-4page-issue.pdf`` of the shared corpus,
    ``../shared/corpus/pdfs`` beside the repository, or ``--corpus DIR``), which has no text
    layer: word count and mean confidence only.

Each page is rendered and deskewed once (the deskew time is reported apart); the engine's time
is wall time of its ``read`` (best of ``--repeat``). Engines not installed are reported as such.

    python benchmarks/bench_ocr.py [--corpus DIR] [--repeat 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.ocr import (
    ENGINES,
    deskew,
    get_engine,
    mean_confidence,
    render_page,
)
from taskflow_server.pdf.reader import open_pdf
from taskflow_server.pdf.samples import scan_image

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "pdfs"
SCANNED_ISSUE = "sample-4page-issue.pdf"
SAMPLE = "gazette-01.pdf"


def words(text: str) -> Counter[str]:
    """Lower-cased word tokens (letters and digits) as a bag."""
    return Counter(re.findall(r"[0-9a-z]+", text.lower()))


def recall_precision(found: Counter[str], truth: Counter[str]) -> tuple[float, float]:
    """Bag-of-words recall and precision of ``found`` against ``truth``."""
    hit = sum((found & truth).values())
    recall = hit / max(sum(truth.values()), 1)
    precision = hit / max(sum(found.values()), 1)
    return recall, precision


def sample_page() -> tuple[Any, Counter[str]]:
    """The scanned sample page (150 dpi image) and the words of its text layer."""
    data = (sample_dir() / SAMPLE).read_bytes()
    with open_pdf(data) as pdf:
        page = pdf.read_page(0)
    truth = words(" ".join(line.text for line in page.lines))
    image = scan_image(data, 1, random.Random("bench-ocr"), dpi=150)
    return image, truth


def run_engine(name: str, image: Any, repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` seconds and what the engine read."""
    engine = get_engine(name)
    if not engine.available():
        return {"engine": name, "available": False}
    best = float("inf")
    lines: list[Any] = []
    for _ in range(repeat):
        started = time.perf_counter()
        lines = engine.read(image, None)
        best = min(best, time.perf_counter() - started)
    text = " ".join(line.text for line in lines)
    return {
        "engine": name,
        "available": True,
        "seconds": round(best, 2),
        "lines": len(lines),
        "words": sum(words(text).values()),
        "confidence": mean_confidence(lines),
        "text": text,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both pages through every engine and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]

    pages: dict[str, tuple[Any, Counter[str] | None]] = {}
    image, truth = sample_page()
    pages["gazette p1 scan 150 dpi"] = (image, truth)
    issue = args.corpus / SCANNED_ISSUE
    if issue.exists():
        image, _w, _h = render_page(issue.read_bytes(), 1, dpi=150)
        pages["1856 Weekly Journal p1"] = (image, None)
    else:
        print(f"corpus page missing ({issue}); only the sample page is measured", file=sys.stderr)

    rows: list[dict[str, Any]] = []
    for label, (raw, truth_words) in pages.items():
        started = time.perf_counter()
        straight, angle = deskew(raw)
        deskew_s = time.perf_counter() - started
        for name in names:
            row = {"page": label, "pixels": f"{raw.width}x{raw.height}", "skew": angle}
            row["deskew_seconds"] = round(deskew_s, 2)
            row.update(run_engine(name, straight, args.repeat))
            if row.get("available") and truth_words is not None:
                recall, precision = recall_precision(words(row["text"]), truth_words)
                row.update(recall=round(recall, 3), precision=round(precision, 3))
                row["truth_words"] = sum(truth_words.values())
            rows.append(row)

    print(f"python {platform.python_version()}, {platform.machine()}, repeat={args.repeat}")
    header = "| page | engine | s/page | words | mean conf | recall | precision | skew (deskew s) |"
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if not row.get("available"):
            print(f"| {row['page']} | {row['engine']} | not installed | | | | | |")
            continue
        print(
            f"| {row['page']} ({row['pixels']}) | {row['engine']} | {row['seconds']:.2f} | "
            f"{row['words']} | {row['confidence']:.3f} | {row.get('recall', '-')} | "
            f"{row.get('precision', '-')} | {row['skew']:+.2f} ({row['deskew_seconds']:.2f}) |"
        )
    if args.json:
        for row in rows:
            row.pop("text", None)
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
