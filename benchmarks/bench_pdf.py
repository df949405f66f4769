"""PDF extraction benchmark: offline CPU time, and an event loop kept free by the CPU pool.

Measures, on the shared corpus (``../shared/corpus/pdfs`` beside the repository, or
``--corpus DIR``):

1. CPU time of :func:`extract_offline` (best of ``--repeat`` runs) for the 15-page Federal
   Register issue (target: under 1 s) and the 50-page IRS instructions, plus the bundled
   sample archive;
2. the latency of a tiny coroutine (``asyncio.sleep(0.005)`` in a loop) while the 50-page
   extraction runs, once in the :class:`CpuPool` (target: worst lateness under 50 ms) and once
   inline on the loop, for contrast.

3. the layout on FRESH pages of the second, independent generator
   (:mod:`taskflow_server.testing.broadsheet`): ``--issues`` issues from seeds
   ``BASE, BASE+1, ...``, where BASE is ``--seed`` or, by default, drawn at run time from
   1,000,000 up and printed (the unit tests use seeds 1 to 16 and the rules were tuned on
   seeds below 2,000, so these pages were never seen): title precision and recall, body
   similarity of matched titles, extraction seconds per page (the text path,
   :func:`extract_offline`), and the reader's peak memory reading one issue (the largest over
   the issues), measured in a fresh process: the rise of the resident set above its level
   before the read, which includes PDFium's own allocations, and the tracemalloc peak of
   Python objects.

4. the first ``--scanned-issues`` of those issues as image-only scans (every page a grey,
   slightly skewed, noisy ``--scan-dpi`` image: ``samples.scanned_copy``) read by offline OCR and
   the same layout analysis: title precision and recall, body similarity, and OCR seconds per
   page on one core (Tesseract is limited to one thread per page; pages run in parallel).

Prints a table on stdout and, with ``--json PATH``, writes the figures as JSON. Without the
corpus only the generator section runs (and the exit status is 2).

    python benchmarks/bench_pdf.py [--corpus DIR] [--repeat 3] [--issues 20] [--seed BASE]
        [--scanned-issues 6] [--scan-dpi 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from taskflow_server.cpu import CpuPool
from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.extract import extract_offline
from taskflow_server.pdf.ocr import DEFAULT_ENGINE, OcrOptions
from taskflow_server.pdf.quality import Quality, compare
from taskflow_server.pdf.reader import open_pdf
from taskflow_server.pdf.samples import scanned_copy, scanned_truth
from taskflow_server.testing.broadsheet import make_broadsheet

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "pdfs"
FEDERAL_REGISTER = "federal-register-2020-17221.pdf"
IRS = "i1040nr.pdf"


def cpu_seconds(data: bytes, repeat: int) -> tuple[float, float, int, int]:
    """(best CPU seconds, best wall seconds, pages, articles) of offline extraction."""
    best_cpu = best_wall = float("inf")
    pages = articles = 0
    for _ in range(repeat):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = extract_offline(data, "bench.pdf", None)
        best_cpu = min(best_cpu, time.process_time() - cpu0)
        best_wall = min(best_wall, time.perf_counter() - wall0)
        pages = len(result["pages"])
        articles = sum(len(p["articles"]) for p in result["pages"])
    return best_cpu, best_wall, pages, articles


async def loop_latency(work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """Lateness (ms) of a 5 ms sleep loop while ``work`` runs, and the work's wall time."""
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lateness.append((time.perf_counter() - before - 0.005) * 1000.0)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    stop.set()
    await tick
    ordered = sorted(lateness)
    return {
        "work_s": round(elapsed, 3),
        "ticks": len(lateness),
        "max_ms": round(ordered[-1], 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
        "median_ms": round(statistics.median(ordered), 2),
    }


async def latency_runs(data: bytes) -> dict[str, dict[str, float]]:
    """The 50-page extraction in the CPU pool, then inline on the loop."""
    pool = CpuPool(1)
    try:
        await pool.run(pow, 1, 1, timeout=60)  # the worker process is up before we measure

        async def in_pool() -> None:
            await pool.run(extract_offline, data, IRS, None, timeout=120)

        async def inline() -> None:
            extract_offline(data, IRS, None)

        return {"cpu_pool": await loop_latency(in_pool), "inline": await loop_latency(inline)}
    finally:
        pool.shutdown()


FRESH_SEEDS_FROM = 1_000_000
"""Benchmark seeds of the second generator start here, far from the test and tuning seeds."""


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` figure in KiB (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux ``clear_refs``); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def reader_peak(documents: Sequence[bytes]) -> dict[str, float]:
    """Read every page of each PDF and report the largest peak memory of one read, in MiB.

    Meant to run in a fresh process. ``rss_growth_mib``: how far the resident set rose above
    its level before the read (peak RSS reset before each read on Linux; elsewhere the growth
    of ``ru_maxrss``, which can only underestimate); ``python_peak_mib``: the tracemalloc peak
    of Python objects. PDFium's own allocations show in the first figure only.
    """
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # ru_maxrss units
    growth = python = 0.0
    pages = 0
    for data in documents:
        exact = _reset_peak()
        before = _status_kib("VmRSS") if exact else None
        max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        with open_pdf(data) as pdf:
            count = len(list(pdf.pages()))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        after = _status_kib("VmHWM") if exact else None
        if before is not None and after is not None:
            rise = (after - before) / 1024.0
        else:
            rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max_before) / scale
        if rise >= growth:
            growth, pages = rise, count
        python = max(python, peak / 1024.0 / 1024.0)
    return {
        "pages": float(pages),
        "rss_growth_mib": round(growth, 1),
        "python_peak_mib": round(python, 1),
    }


def broadsheet_run(base: int, issues: int) -> dict[str, Any]:
    """Quality, speed and reader memory on ``issues`` fresh issues from seed ``base`` on."""
    total = Quality()
    pages = 0
    cpu = wall = 0.0
    documents: list[bytes] = []
    for seed in range(base, base + issues):
        data, truth = make_broadsheet(seed)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = extract_offline(data, truth["filename"], None)
        cpu += time.process_time() - cpu0
        wall += time.perf_counter() - wall0
        pages += len(result["pages"])
        total.add(compare(result, truth))
        documents.append(data)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        memory = pool.submit(reader_peak, documents).result(timeout=300)
    return {
        "seeds": [base, base + issues - 1],
        "issues": issues,
        "pages": pages,
        "true_titles": total.true_titles,
        "found_titles": total.found_titles,
        "title_precision": round(total.title_precision, 4),
        "title_recall": round(total.title_recall, 4),
        "body_similarity": round(total.body_similarity, 4),
        "inserts_as_titles": len(total.insert_titles),
        "cpu_s_per_page": round(cpu / max(pages, 1), 4),
        "wall_s_per_page": round(wall / max(pages, 1), 4),
        "reader_memory": memory,
        "misses": total.misses,
        "inserts_taken_as_titles": total.insert_titles,
    }


def scanned_run(base: int, issues: int, dpi: int) -> dict[str, Any]:
    """Quality and OCR speed on image-only scans (grey, skewed, noisy, ``dpi``) of ``issues``
    fresh issues of the second generator: OCR, then the same layout analysis."""
    total = Quality()
    pages = 0
    wall = 0.0
    for seed in range(base, base + issues):
        data, truth = make_broadsheet(seed)
        name = truth["filename"].replace(".pdf", "-scan.pdf")
        scan = scanned_copy(data, seed, dpi=dpi)
        started = time.perf_counter()
        result = extract_offline(scan, name, None, ocr=OcrOptions(dpi=dpi))
        wall += time.perf_counter() - started
        pages += len(result["pages"])
        total.add(compare(result, scanned_truth(truth, name)))
    return {
        "seeds": [base, base + issues - 1],
        "issues": issues,
        "pages": pages,
        "dpi": dpi,
        "title_precision": round(total.title_precision, 4),
        "title_recall": round(total.title_recall, 4),
        "body_similarity": round(total.body_similarity, 4),
        "inserts_as_titles": len(total.insert_titles),
        "ocr_s_per_page_one_core": round(wall / max(pages, 1), 2),
        "misses": total.misses,
    }


def scanned_report(figures: dict[str, Any]) -> str:
    """The scanned-issues section as text."""
    rows = [
        ["seeds", "issues", "pages", "dpi", "title P", "title R", "body sim", "s/page (1 core)"],
        [
            f"{figures['seeds'][0]}..{figures['seeds'][1]}",
            str(figures["issues"]),
            str(figures["pages"]),
            str(figures["dpi"]),
            f"{figures['title_precision']:.3f}",
            f"{figures['title_recall']:.3f}",
            f"{figures['body_similarity']:.3f}",
            f"{figures['ocr_s_per_page_one_core']:.2f}",
        ],
    ]
    return table(rows)


def broadsheet_report(figures: dict[str, Any]) -> str:
    """The generator section as text."""
    memory = figures["reader_memory"]
    rows = [
        ["seeds", "issues", "pages", "title P", "title R", "body sim", "inserts as titles"],
        [
            f"{figures['seeds'][0]}..{figures['seeds'][1]}",
            str(figures["issues"]),
            str(figures["pages"]),
            f"{figures['title_precision']:.3f}",
            f"{figures['title_recall']:.3f}",
            f"{figures['body_similarity']:.3f}",
            str(figures["inserts_as_titles"]),
        ],
    ]
    speed = (
        f"text path: {figures['cpu_s_per_page']:.3f} CPU s/page, "
        f"{figures['wall_s_per_page']:.3f} wall s/page; reader peak memory over the issues: "
        f"+{memory['rss_growth_mib']:.1f} MiB RSS (issue of {int(memory['pages'])} pages), "
        f"{memory['python_peak_mib']:.1f} MiB Python heap"
    )
    return table(rows) + "\n" + speed


def table(rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with a header rule."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--issues", type=int, default=20, help="fresh generated issues")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"first generator seed (default: drawn at run time, >= {FRESH_SEEDS_FROM:,})",
    )
    parser.add_argument(
        "--scanned-issues",
        type=int,
        default=6,
        help="of those issues, how many to also read as image-only scans through OCR (0: none)",
    )
    parser.add_argument("--scan-dpi", type=int, default=150)
    args = parser.parse_args(argv)
    base = args.seed
    if base is None:
        base = random.SystemRandom().randrange(FRESH_SEEDS_FROM, 2**31 - args.issues)
    sys.stdout.write(f"Second generator (testing.broadsheet), fresh seeds from {base}\n")
    sys.stdout.flush()
    fresh = broadsheet_run(base, args.issues)
    sys.stdout.write(broadsheet_report(fresh) + "\n\n")
    scanned: dict[str, Any] | None = None
    if args.scanned_issues:
        sys.stdout.write(
            f"The same generator as image-only scans, read by offline OCR ({DEFAULT_ENGINE})\n"
        )
        sys.stdout.flush()
        scanned = scanned_run(base, args.scanned_issues, args.scan_dpi)
        sys.stdout.write(scanned_report(scanned) + "\n\n")
    if not (args.corpus / FEDERAL_REGISTER).exists():
        sys.stderr.write(f"corpus not found in {args.corpus}; pass --corpus DIR\n")
        if args.json is not None:
            args.json.write_text(
                json.dumps({"broadsheet": fresh, "scanned": scanned}, indent=2) + "\n"
            )
        return 2

    inputs = [
        (FEDERAL_REGISTER, (args.corpus / FEDERAL_REGISTER).read_bytes()),
        (IRS, (args.corpus / IRS).read_bytes()),
    ]
    inputs += [(p.name, p.read_bytes()) for p in sorted(sample_dir().glob("*.pdf"))]
    extraction: list[dict[str, Any]] = []
    rows = [["file", "pages", "articles", "cpu s", "wall s", "cpu ms/page"]]
    for name, data in inputs:
        cpu, wall, pages, articles = cpu_seconds(data, args.repeat)
        extraction.append(
            {"file": name, "pages": pages, "articles": articles, "cpu_s": cpu, "wall_s": wall}
        )
        rows.append(
            [
                name,
                str(pages),
                str(articles),
                f"{cpu:.3f}",
                f"{wall:.3f}",
                f"{cpu / pages * 1000:.1f}",
            ]
        )
    latency = asyncio.run(latency_runs(inputs[1][1]))
    lat_rows = [["50-page extraction", "work s", "ticks", "max ms", "p99 ms", "median ms"]]
    for mode, figures in latency.items():
        lat_rows.append(
            [
                mode,
                f"{figures['work_s']:.3f}",
                str(int(figures["ticks"])),
                f"{figures['max_ms']:.1f}",
                f"{figures['p99_ms']:.1f}",
                f"{figures['median_ms']:.2f}",
            ]
        )
    machine = f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}"
    sys.stdout.write(f"Offline extraction (best of {args.repeat}; Python {machine})\n")
    sys.stdout.write(table(rows) + "\n\n")
    sys.stdout.write("Event-loop lateness of a 5 ms sleep loop during the extraction\n")
    sys.stdout.write(table(lat_rows) + "\n")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "extraction": extraction,
                    "loop_latency": latency,
                    "broadsheet": fresh,
                    "scanned": scanned,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
