"""Time the offline extractive summarizer: the budget is < 50 ms per 2,000-word text.

    python benchmarks/bench_offline.py [--runs 50] [--words 2000] [FILE ...]

Without files it summarises deterministic synthetic news-like texts of ``--words`` words (with
running heads and page numbers, so the cleaning step is timed too); with files, each file's
text. Prints one JSON line (median, p95 and worst milliseconds) and exits 1 when the median is
over the budget.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from taskflow_server.llm.offline import summarize_text

BUDGET_MS = 50.0

_VOCABULARY_TEXT = (
    "council budget river harbour tram line city mayor residents plan study traffic coal plant "
    "emissions rule agency court judge market price farmers harvest school teachers students "
    "hospital doctors patients election vote party minister bridge road railway station storm "
    "flood rain summer winter report committee members law tax company workers union strike"
)
_FILLER_TEXT = "the a of to in and on for with by from at as that this is was were will said"
_VOCABULARY = _VOCABULARY_TEXT.split()
_FILLER = _FILLER_TEXT.split()


def synthetic_text(words: int, seed: int) -> str:
    """A news-like text of about ``words`` words with a running head every 300 words."""
    rng = random.Random(seed)
    out: list[str] = []
    count = 0
    page = 1
    while count < words:
        if count % 300 == 0:
            out.append(f"\nThe Daily Example / Vol. 12, No. {page} / Monday\n{page}\n")
            page += 1
        length = rng.randint(8, 28)
        sentence = [
            rng.choice(_VOCABULARY) if rng.random() < 0.45 else rng.choice(_FILLER)
            for _ in range(length)
        ]
        out.append(" ".join(sentence).capitalize() + ".")
        count += length
        if rng.random() < 0.15:
            out.append("\n\n")
    return " ".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--sentences", type=int, default=3)
    args = parser.parse_args(argv)
    if args.files:
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in args.files]
    else:
        texts = [synthetic_text(args.words, seed) for seed in range(args.runs)]
    timings: list[float] = []
    for i in range(max(args.runs, len(texts))):
        text = texts[i % len(texts)]
        started = time.perf_counter()
        summarize_text(text, args.sentences)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    report = {
        "benchmark": "offline_summarizer",
        "texts": len(texts),
        "runs": len(timings),
        "words_per_text": round(statistics.mean(len(t.split()) for t in texts)),
        "median_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 2),
        "max_ms": round(timings[-1], 2),
        "budget_ms": BUDGET_MS,
    }
    report["within_budget"] = report["median_ms"] < BUDGET_MS
    print(json.dumps(report))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
