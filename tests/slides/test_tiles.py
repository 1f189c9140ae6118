"""Tiles: cores partition the region, margins are clipped to it, a centre has one owner."""

from __future__ import annotations

import numpy as np
import pytest

from marrowdiff.slides.tiles import Box, RegionError, grid, parse_region


def test_cores_partition_the_region_and_reads_add_the_margin_within_it():
    region = Box(100, 50, 1000, 700)
    tiles = grid(region, core=300, margin=40)
    assert len(tiles) == 4 * 3  # ceil(1000 / 300) columns, ceil(700 / 300) rows
    covered = np.zeros((700, 1000), int)
    for t in tiles:
        covered[
            t.core.y - 50 : t.core.y - 50 + t.core.h, t.core.x - 100 : t.core.x - 100 + t.core.w
        ] += 1
        r = t.read
        assert r.x == max(t.core.x - 40, 100) and r.y == max(t.core.y - 40, 50)
        assert r.x + r.w == min(t.core.x + t.core.w + 40, 1100)
    assert (covered == 1).all()


def test_a_point_on_a_seam_belongs_to_exactly_one_core():
    tiles = grid(Box(0, 0, 600, 600), core=300, margin=50)
    rng = np.random.default_rng(0)
    points = [(300.0, 300.0), (299.999, 300.0), (0.0, 599.5)] + list(rng.uniform(0, 600, (200, 2)))
    for x, y in points:
        assert sum(t.core.holds(x, y) for t in tiles) == 1


def test_a_region_is_parsed_and_checked_against_the_slide():
    assert parse_region("12000, 8000,6000,4000", 30000, 20000) == Box(12000, 8000, 6000, 4000)
    with pytest.raises(RegionError, match="30000 x 20000"):
        parse_region("28000,8000,6000,4000", 30000, 20000)
    with pytest.raises(RegionError, match="X,Y,WIDTH,HEIGHT"):
        parse_region("12000,8000", 30000, 20000)


def test_a_cell_two_tiles_measured_on_either_side_of_their_seam_is_kept_once():
    from marrowdiff.slides.seams import seam_duplicates

    tiles = grid(Box(0, 0, 600, 300), core=300, margin=50)  # a seam at x = 300
    cells = [
        (0, 299.6, 120.0),  # tile 0 sees a cell just left of the seam...
        (0, 150.0, 150.0),
        (1, 300.5, 120.3),  # ...tile 1 the same cell just right of it: dropped (counted later)
        (1, 301.0, 200.0),  # a cell of its own beside the seam, 80 px from the first
        (1, 450.0, 150.0),
    ]
    assert seam_duplicates(cells, tiles, diameter=100) == {2}
    # two cells of one tile are never joined here (a tile joins its own pieces already)
    assert seam_duplicates([(0, 295.0, 120.0), (0, 297.0, 125.0)], tiles, 100) == set()
