"""PDF extraction benchmark: offline CPU time, and an event loop kept free by the CPU pool.

Measures, on the shared corpus (``../shared/corpus/pdfs`` beside the repository, or
``--corpus DIR``):

1. CPU time of :func:`extract_offline` (best of ``--repeat`` runs) for the 15-page Federal
   Register issue (target: under 1 s) and the 50-page IRS instructions, plus the bundled
   sample archive;
2. the latency of a tiny coroutine (``asyncio.sleep(0.005)`` in a loop) while the 50-page
   extraction runs, once in the :class:`CpuPool` (target: worst lateness under 50 ms) and once
   inline on the loop, for contrast.

Prints a table on stdout and, with ``--json PATH``, writes the figures as JSON.

    python benchmarks/bench_pdf.py [--corpus DIR] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from taskflow_server.cpu import CpuPool
from taskflow_server.pdf import sample_dir
from taskflow_server.pdf.extract import extract_offline

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
    args = parser.parse_args(argv)
    if not (args.corpus / FEDERAL_REGISTER).exists():
        sys.stderr.write(f"corpus not found in {args.corpus}; pass --corpus DIR\n")
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
            json.dumps({"extraction": extraction, "loop_latency": latency}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
