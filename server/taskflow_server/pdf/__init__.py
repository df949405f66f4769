"""Newspaper PDF reading: pypdfium2 reader, offline layout splitter, samples and quality.

Modules: :mod:`.reader` (safe opening, text lines with font sizes, page images),
:mod:`.layout` (columns, reading order, headlines -> articles), :mod:`.extract` (the functions
the CPU pool runs), :mod:`.samples` (a generator of sample issues with ground truth) and
:mod:`.quality` (precision, recall and body similarity against ground truth). The bundled sample
archive lives in ``data/`` (:func:`sample_dir`).
"""

from __future__ import annotations

from pathlib import Path


def sample_dir() -> Path:
    """The folder of bundled sample issues (PDF + ground-truth JSON), installed with the package."""
    return Path(__file__).resolve().parent / "data"
