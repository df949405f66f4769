"""The visible box of a PDF page, and the map from PDF user space to the page as displayed.

A PDF page draws in *user space*: points, origin at the bottom left, y growing upwards. What a
viewer shows is only part of that plane, the *effective box*: the page's ``/CropBox`` clipped
to its ``/MediaBox`` (no crop box means the media box; no usable media box means US Letter).
Both keys are inheritable: a producer may write them once on the page tree (``/Pages``, or any
ancestor reached through ``/Parent``) and leave them out of the pages themselves, as fpdf2 does
for ``/MediaBox``. The page is then turned clockwise by its ``/Rotate`` (also inheritable).

pypdfium2's ``PdfPage.get_mediabox()`` and ``get_cropbox()`` read the page dictionary only
(``FPDFPage_GetMediaBox`` / ``FPDFPage_GetCropBox`` return false when the page itself lacks
the key, and the helpers then fall back to Letter, 612 x 792), so they are wrong for such
pages. PDFium's own page object resolves the inheritance when it loads a page, and exposes the
result through ``FPDF_GetPageBoundingBox`` (``PdfPage.get_bbox()``: the crop box clipped to the
media box, normalised), ``FPDFPage_GetRotation`` (``get_rotation()``) and the page size
(``get_size()``: the effective box's size with width and height swapped for 90 and 270
degrees). That is the box PDFium renders, so :func:`page_box` builds on it and never parses
the page tree itself.

:class:`PageBox` maps user-space points, rectangles and directions into *display space*: the
page as shown upright, origin at its top-left corner, y growing downwards, ``0..width`` by
``0..height`` points. Text positions from PDFium (``FPDFText_GetLooseCharBox`` and friends) are
in user space, whatever the crop box and rotation, and go through this map.
"""

from __future__ import annotations

from dataclasses import dataclass

import pypdfium2 as pdfium


@dataclass(frozen=True)
class PageBox:
    """A page's effective box in user space, and its rotation.

    Attributes:
        left, bottom, right, top: the visible box in PDF user space (points, bottom-left
            origin), normalised so that ``left <= right`` and ``bottom <= top``.
        rotation: how far the page is turned clockwise for display: 0, 90, 180 or 270.
    """

    left: float
    bottom: float
    right: float
    top: float
    rotation: int = 0

    def __post_init__(self) -> None:
        """Reject a rotation that is not a multiple of 90 in ``0..270``."""
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, not {self.rotation!r}")

    @property
    def _turned(self) -> bool:
        return self.rotation in (90, 270)

    @property
    def width(self) -> float:
        """Width of the page as displayed (after rotation), in points."""
        return (self.top - self.bottom) if self._turned else (self.right - self.left)

    @property
    def height(self) -> float:
        """Height of the page as displayed (after rotation), in points."""
        return (self.right - self.left) if self._turned else (self.top - self.bottom)

    @property
    def is_empty(self) -> bool:
        """True when the box has (almost) no area: less than a point in either direction."""
        return self.right - self.left < 1.0 or self.top - self.bottom < 1.0

    def to_display(self, x: float, y: float) -> tuple[float, float]:
        """A user-space point as (x, y) in display space (top-left origin, y down).

        Points outside the box map outside ``0..width`` / ``0..height``; nothing is clipped.
        """
        rotation = self.rotation
        if rotation == 0:
            return x - self.left, self.top - y
        if rotation == 90:
            return y - self.bottom, x - self.left
        if rotation == 180:
            return self.right - x, y - self.bottom
        return self.top - y, self.right - x

    def rect_to_display(
        self, left: float, bottom: float, right: float, top: float
    ) -> tuple[float, float, float, float]:
        """A user-space rectangle as ``(x0, top, x1, bottom)`` in display space.

        The result is normalised (``x0 <= x1``, ``top <= bottom``) whatever the rotation and
        whichever corners are given. Called for every word on a page, so written out per case.
        """
        rotation = self.rotation
        if rotation == 0:
            x0, y0, x1, y1 = left - self.left, self.top - top, right - self.left, self.top - bottom
        elif rotation == 90:
            x0, y0 = bottom - self.bottom, left - self.left
            x1, y1 = top - self.bottom, right - self.left
        elif rotation == 180:
            x0, y0 = self.right - right, bottom - self.bottom
            x1, y1 = self.right - left, top - self.bottom
        else:
            x0, y0, x1, y1 = (
                self.top - top,
                self.right - right,
                self.top - bottom,
                self.right - left,
            )
        if x0 > x1:
            x0, x1 = x1, x0
        if y0 > y1:
            y0, y1 = y1, y0
        return x0, y0, x1, y1

    def vector_to_display(self, dx: float, dy: float) -> tuple[float, float]:
        """A user-space direction (no translation) in display space (y down).

        Text whose baseline direction maps to roughly ``(+1, 0)`` reads upright on screen.
        """
        rotation = self.rotation
        if rotation == 0:
            return dx, -dy
        if rotation == 90:
            return dy, dx
        if rotation == 180:
            return -dx, dy
        return -dy, -dx


def page_box(page: pdfium.PdfPage) -> PageBox:
    """The effective box and rotation of a pypdfium2 page, with inheritance resolved.

    The box is PDFium's own page bounding box (crop box clipped to media box, both looked up
    through the ``/Parent`` chain), which is also the box PDFium renders; its size equals
    ``page.get_size()`` once the rotation is applied. A crop box that misses the media box
    yields an empty box (see :attr:`PageBox.is_empty`).
    """
    left, bottom, right, top = (float(v) for v in page.get_bbox())
    rotation = int(page.get_rotation()) % 360
    if rotation % 90:
        rotation = 0  # PDFium reports multiples of 90 only; be safe with anything else
    return PageBox(
        left=min(left, right),
        bottom=min(bottom, top),
        right=max(left, right),
        top=max(bottom, top),
        rotation=rotation,
    )
