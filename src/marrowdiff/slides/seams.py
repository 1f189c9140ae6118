"""The one cell two tiles both kept: a cell whose centre lies on a seam, measured a pixel to
one side by one tile and a pixel to the other by its neighbour (each tile finds its cells with
its own thresholds, so a centre moves by a pixel or two between them). On a slide of 106,000
cells, 11 were kept twice so, each within 2.2 px of a seam. After counting, cells within
`BAND` of their tile's edge are paired with those of other tiles closer than `SAME` cell
diameters: the later-counted of each pair is dropped. Two distinct cells are never that close
(a tile already joins pieces closer than 0.7 diameters: `DetectConfig.merge`)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from marrowdiff.slides.tiles import Tile

BAND = 0.1  # cell diameters from a tile's core edge within which a cell may be on the seam
SAME = 0.3  # cell diameters: two tiles' cells closer than this are one cell


def seam_duplicates(
    cells: list[tuple[int, float, float]], tiles: list[Tile], diameter: float
) -> set[int]:
    """Indices (into `cells`: (tile, x, y) in level-0 px, in counting order) of the cells
    that another tile counted first."""
    band, same = BAND * diameter, SAME * diameter
    near = []
    for i, (tile, x, y) in enumerate(cells):
        core = tiles[tile].core
        if min(x - core.x, core.x + core.w - x, y - core.y, core.y + core.h - y) < band:
            near.append(i)
    if len(near) < 2:
        return set()
    points = np.array([cells[i][1:] for i in near])
    drop = set()
    for a, b in sorted(cKDTree(points).query_pairs(same)):
        i, j = near[a], near[b]
        if cells[i][0] != cells[j][0]:  # two tiles' views of one cell: keep the first counted
            drop.add(max(i, j))
    return drop
