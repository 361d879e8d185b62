"""Where the subject goes: its box in the mask, and the crop/fit/placement plan.

Plain arithmetic on integers (no torch), so the rules — remove.bg's, which users know — are
tested on their own: crop to the subject's box plus a margin (which may reach past the
photo's edges: that part is empty), then, with a fixed ``size``, scale the crop to fit inside
it and place it by ``position`` (percent of the free space left of and above it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.options import Layout

# A pixel belongs to the subject's box when its mask is at least this opaque (of 255): faint
# haze far from the subject must not stretch the box to the photo's edges.
FOREGROUND_THRESHOLD = 13  # about 5 %


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.width, self.height)


EMPTY = Box(0, 0, 0, 0)


def subject_box(mask: np.ndarray) -> Box:
    """The box of the H×W uint8 mask's pixels at or over ``FOREGROUND_THRESHOLD``; ``EMPTY``
    when there are none."""
    solid = mask >= FOREGROUND_THRESHOLD
    rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
    if rows.size == 0:
        return EMPTY
    return Box(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


@dataclass(frozen=True)
class Plan:
    """Take ``source`` (a region of the photo, possibly past its edges), scale it to
    ``target``'s size and put it at ``target`` on a canvas of ``canvas`` (width, height)."""

    source: Box
    target: Box
    canvas: tuple[int, int]

    def identity(self, width: int, height: int) -> bool:
        """Whether the plan leaves a ``width`` × ``height`` photo as it is."""
        whole = Box(0, 0, width, height)
        return self.source == whole and self.target == whole

    def canvas_source(self) -> tuple[float, float, float, float]:
        """The photo region (left, top, width, height, fractional) the whole canvas shows
        under the same scaling: for a background that fills the canvas (blur)."""
        sx = self.target.width / self.source.width
        sy = self.target.height / self.source.height
        left = self.source.left - self.target.left / sx
        top = self.source.top - self.target.top / sy
        return left, top, self.canvas[0] / sx, self.canvas[1] / sy


def plan(width: int, height: int, subject: Box, layout: Layout) -> Plan:
    """The plan for a photo of ``width`` × ``height`` whose subject is ``subject``."""
    if layout.crop:
        if subject.empty:
            raise ValueError("no subject to crop to")
        top, right, bottom, left = layout.margin.pixels(subject.width, subject.height)
        source = Box(
            subject.left - left,
            subject.top - top,
            subject.width + left + right,
            subject.height + top + bottom,
        )
    else:
        source = Box(0, 0, width, height)
    if layout.size is None:
        return Plan(source, Box(0, 0, source.width, source.height), (source.width, source.height))
    canvas_w, canvas_h = layout.size
    scale = min(canvas_w / source.width, canvas_h / source.height)
    fit_w = max(1, min(canvas_w, round(source.width * scale)))
    fit_h = max(1, min(canvas_h, round(source.height * scale)))
    px, py = layout.position
    left = round((canvas_w - fit_w) * px / 100)
    top = round((canvas_h - fit_h) * py / 100)
    return Plan(source, Box(left, top, fit_w, fit_h), (canvas_w, canvas_h))
