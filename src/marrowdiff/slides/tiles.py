"""Tiles over a counting region, in level-0 px: cores that partition the region exactly, each
read with a margin of at least a cell around it, so that a cell on a seam is read whole by
every tile that sees it and kept by the one tile whose core holds its centre (`Box.holds`:
half-open, so a centre on a seam belongs to exactly one core). Pure functions."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from marrowdiff.errors import UserError


class RegionError(UserError, ValueError):
    """A --region that is not four numbers, or not on the slide."""


@dataclass(frozen=True)
class Box:
    x: int  # left, level-0 px
    y: int  # top
    w: int
    h: int

    def holds(self, x: float, y: float) -> bool:
        """Whether the point lies in the box, its left and top edges in, right and bottom out."""
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h

    def grown(self, margin: int, within: Box) -> Box:
        """The box with `margin` px around it, clipped to `within`."""
        x0, y0 = max(self.x - margin, within.x), max(self.y - margin, within.y)
        x1 = min(self.x + self.w + margin, within.x + within.w)
        y1 = min(self.y + self.h + margin, within.y + within.h)
        return Box(x0, y0, x1 - x0, y1 - y0)

    @property
    def area(self) -> int:
        return self.w * self.h

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class Tile:
    index: int  # in row-major order over the region's grid: a tile's name in the journal
    row: int
    col: int
    core: Box  # the cells whose centre lies here are this tile's
    read: Box  # what is read: the core with a margin, within the region

    def to_dict(self) -> dict:
        return asdict(self)


def grid(region: Box, core: int, margin: int) -> list[Tile]:
    """Tiles of side `core` (the last row and column smaller) covering `region`, each read with
    `margin` px around it (at least a cell's diameter), in row-major order."""
    if core <= 0 or margin < 0:
        raise ValueError(f"tile side {core} and margin {margin}: a side above 0, a margin >= 0")
    rows, cols = math.ceil(region.h / core), math.ceil(region.w / core)
    tiles = []
    for r in range(rows):
        for c in range(cols):
            x, y = region.x + c * core, region.y + r * core
            box = Box(x, y, min(core, region.x + region.w - x), min(core, region.y + region.h - y))
            tiles.append(Tile(len(tiles), r, c, box, box.grown(margin, region)))
    return tiles


def parse_region(text: str, width: int, height: int, where: str = "the slide") -> Box:
    """`--region X,Y,W,H` (level-0 px) as a Box; outside the slide, or empty, is a RegionError
    that says the slide's size."""
    numbers = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", text or "")
    if not numbers:
        raise RegionError(
            f"--region {text!r}: give X,Y,WIDTH,HEIGHT in level-0 pixels, e.g. 12000,8000,6000,4000"
        )
    x, y, w, h = map(int, numbers.groups())
    if w == 0 or h == 0 or x + w > width or y + h > height:
        raise RegionError(
            f"--region {text}: outside {where}, which is {width} x {height} px at level 0; "
            "give a region within it (QuPath shows level-0 coordinates under the cursor)"
        )
    return Box(x, y, w, h)
