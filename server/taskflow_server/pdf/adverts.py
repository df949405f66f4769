"""Advertisements: display type centred in a box, told apart from stories under centred heads.

An advertisement (or a promotion box) is set as display type: every line centred on one
vertical axis, in two or more sizes, its small print centred line by line. A story's text is
set flush left or justified, so its paragraph ends, indented first lines and columns lie off
any one axis; but justified lines are centred too, so a story under a centred headline can
share one axis with everything under its head. The difference is in the running text:
justified lines meet both edges of one measure line after line, while centred small print
is as wide as its words on each line.

The layout (:mod:`.layout`) asks :func:`display_matter` which article heads, with the blocks
of their regions, are advertisements, and drops them. The functions work on any block with
lines and a vertical extent (:class:`Boxed`), so this module needs nothing of the layout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from taskflow_server.pdf.reader import Line, line_bands


class Boxed(Protocol):
    """What these rules read of a block: its lines, its vertical extent and its type size."""

    @property
    def lines(self) -> list[Line]:
        """The block's lines, top to bottom."""
        ...

    @property
    def top(self) -> float:
        """The top of the block's box."""
        ...

    @property
    def bottom(self) -> float:
        """The bottom of the block's box."""
        ...

    @property
    def size(self) -> float:
        """The font size of most of the block's characters."""
        ...


JUSTIFIED_LINES = 6
"""Running text under a centred head has at least this many lines justified to one measure
(an advertisement's centred small print has fewer lines that meet both edges)."""
JUSTIFY_TOLERANCE = 0.4
"""How far (in body sizes) a justified line's edges may lie from its measure's edges."""


def display_matter(
    blocks: Sequence[Boxed],
    head_of: dict[int, int],
    owners: dict[int, int],
    body_size: float,
    display_ratio: float,
) -> set[int]:
    """Blocks of advertisements: an article head whose whole region is centred display type.

    An advertisement (or a promotion box) centres every line in its box, in two or more sizes
    of type, while an article's text is set flush left or justified: its paragraph ends,
    indented first lines and the columns of a multi-column story all lie off any one axis.
    So a head is display matter when (nearly) every line of its region shares one axis.

    Args:
        blocks: the page's blocks.
        head_of: each block of an article head (a headline and its deck) to its head block.
        owners: each other block to the head whose region holds it.
        body_size: the body text's font size.
        display_ratio: type at least this many body sizes is display type, not text type.

    Returns:
        The indices of the blocks that are advertisements.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for k, head in head_of.items():
        members[head].append(k)
    for k, head in owners.items():
        if head in members:
            members[head].append(k)
    # Display type is often set with wide white between its parts, so one advertisement can
    # read as several heads: heads stacked on one axis are judged together.
    groups = [_contiguous(blocks, group, body_size) for group in members.values()]
    axes = [
        common_axis(join_bands([ln for k in g for ln in blocks[k].lines], body_size), body_size)
        for g in groups
    ]
    root = list(range(len(groups)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i, axis in enumerate(axes):
        for j, other in enumerate(axes):
            if i == j or axis is None or other is None or abs(axis - other) > 0.5 * body_size:
                continue
            if _stacked(blocks, groups[i], groups[j], body_size):
                root[find(j)] = find(i)
    chains: dict[int, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        chains[find(i)].extend(group)
    found: set[int] = set()
    for chain in chains.values():
        lines = join_bands([ln for k in chain for ln in blocks[k].lines], body_size)
        if centred_display(lines, body_size, display_ratio):
            found.update(chain)
    return found


def _contiguous(blocks: Sequence[Boxed], group: Sequence[int], body_size: float) -> list[int]:
    """The blocks of ``group`` stacked without a wide gap, from its top down.

    A head's region can reach far down its columns (to the next head); an advertisement is
    only the compact stack of lines at its top.
    """
    order = sorted(group, key=lambda k: blocks[k].top)
    run = order[:1]
    for k in order[1:]:
        bottom = max(blocks[j].bottom for j in run)
        size = max(blocks[j].size for j in run)
        if blocks[k].top - bottom > max(3.0 * body_size, 1.5 * size):
            break
        run.append(k)
    return run


def join_bands(lines: Sequence[Line], body_size: float) -> list[Line]:
    """Pieces of one printed line as one line: side by side on one baseline, a word space or
    two apart. OCR cuts a centred line of small print where its words stand wide ("Drivers,"
    | "cooks and"), and each piece alone is off the axis the whole line is centred on."""
    out: list[Line] = []
    for pieces in line_bands(lines, 0.3):
        joined = [pieces[0]]
        for line in pieces[1:]:
            prev = joined[-1]
            # A word space: up to two ems of text type (OCR's ink boxes widen it), or most
            # of an em of display type (a monospaced face puts a character between words).
            if 0.0 <= line.x0 - prev.x1 <= max(2.0 * body_size, 0.9 * min(prev.size, line.size)):
                joined[-1] = Line(
                    f"{prev.text} {line.text}",
                    prev.x0,
                    min(prev.top, line.top),
                    line.x1,
                    max(prev.bottom, line.bottom),
                    max(prev.size, line.size),
                    prev.bold and line.bold,
                    prev.italic and line.italic,
                )
            else:
                joined.append(line)
        out.extend(joined)
    return out


def common_axis(lines: Sequence[Line], body_size: float) -> float | None:
    """The vertical axis all ``lines`` are centred on, or None when they are not."""
    if not lines:
        return None
    centres = sorted((ln.x0 + ln.x1) / 2.0 for ln in lines)
    axis = centres[len(centres) // 2]
    off = sum(
        1 for ln in lines if abs((ln.x0 + ln.x1) / 2.0 - axis) > max(0.3 * body_size, 0.1 * ln.size)
    )
    return axis if off <= 0.1 * len(lines) else None


def _stacked(
    blocks: Sequence[Boxed], upper: Sequence[int], lower: Sequence[int], body_size: float
) -> bool:
    """True when group ``lower`` starts a short way under group ``upper``."""
    bottom = max(blocks[k].bottom for k in upper)
    top = min(blocks[k].top for k in lower)
    size = max(blocks[k].size for k in upper)
    return -1.0 <= top - bottom <= max(3.0 * body_size, 1.5 * size)


def centred_display(lines: Sequence[Line], body_size: float, display_ratio: float) -> bool:
    """Three or more lines in two or more sizes, (nearly) all centred on one vertical axis,
    and not a story's running text (:func:`justified_text`) under a centred head."""
    if len(lines) < 3 or len({round(ln.size) for ln in lines}) < 2:
        return False
    axis = common_axis(lines, body_size)
    if axis is None:
        return False
    widest = max(ln.width for ln in lines)
    if sum(1 for ln in lines if ln.width < widest - body_size) < 2:
        return False
    return not justified_text(lines, body_size, display_ratio)


def justified_text(lines: Sequence[Line], body_size: float, display_ratio: float) -> bool:
    """True when most of the text-type ``lines`` are running text justified to one measure.

    Justified lines of a column are centred too, so a centred headline over its story can
    share one axis with everything under it. But justified lines fill the measure edge to
    edge, both edges on the same two verticals, line after line; an advertisement's small
    print is centred line by line, each line as wide as its words, so only a few of its
    lines (by chance) meet both edges. A story has at least :data:`JUSTIFIED_LINES` such
    lines, and they are most of its text-type lines.
    """
    text = [ln for ln in lines if ln.size < display_ratio * body_size]
    if len(text) < JUSTIFIED_LINES:
        return False
    measure = max(ln.width for ln in text)
    full = [ln for ln in text if ln.width >= measure - body_size]
    left = sorted(ln.x0 for ln in full)[len(full) // 2]
    right = sorted(ln.x1 for ln in full)[len(full) // 2]
    tolerance = JUSTIFY_TOLERANCE * body_size
    flush = sum(
        1 for ln in text if abs(ln.x0 - left) <= tolerance and abs(ln.x1 - right) <= tolerance
    )
    return flush >= JUSTIFIED_LINES and 2 * flush > len(text)


__all__ = [
    "JUSTIFIED_LINES",
    "JUSTIFY_TOLERANCE",
    "Boxed",
    "centred_display",
    "common_axis",
    "display_matter",
    "join_bands",
    "justified_text",
]
