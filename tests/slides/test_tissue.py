"""The slide's map: block measures, zone rules, a tile's zone, and the map of a slide."""

from __future__ import annotations

import numpy as np
import pytest

from marrowdiff.slides.reader import Slide
from marrowdiff.slides.tiles import Box, grid
from marrowdiff.slides.tissue import MapConfig, _block_means, survey, tile_zone, zone


def test_blocks_split_the_image_evenly_with_no_sliver_judged_alone():
    values = np.arange(42, dtype=np.float32).reshape(6, 7)
    means = _block_means(values, 3)  # 6 / 3 = 2 rows of 3 px; 7 / 3 -> 2 columns of 4 and 3
    assert means.shape == (2, 2)
    assert means[0, 0] == pytest.approx(values[:3, :4].mean())
    assert means[1, 1] == pytest.approx(values[3:, 4:].mean())


@pytest.mark.parametrize(
    "coverage, nuclear, expected",
    [(0.01, 0.0, "background"), (0.9, 0.6, "particle"), (0.95, 0.1, "thick"),
     (0.2, 0.05, "edge"), (0.6, 0.3, "countable")],
)  # fmt: skip
def test_zone_rules(coverage, nuclear, expected):
    assert zone(coverage, nuclear, MapConfig()) == expected


def test_a_tile_is_countable_only_when_nearly_all_its_blocks_are():
    config = MapConfig()
    assert tile_zone(["countable"] * 9 + ["edge"], config) == "countable"
    assert tile_zone(["countable"] * 8 + ["thick", "background"], config) == "background"
    assert tile_zone(["countable"] * 6 + ["thick"] * 3 + ["edge"], config) == "thick"


def test_the_map_of_a_synthetic_slide_finds_its_zones_where_they_were_drawn(small_slide):
    from tests.slides.conftest import SMALL

    with Slide(small_slide) as slide:
        tiles = grid(Box(0, 0, SMALL.width, SMALL.height), 512, 0)
        slide_map = survey(slide, tiles, MapConfig())
    assert slide_map.thumbnail.shape[1] == 1000
    truth = {t.index: SMALL.zone(t.core.y + t.core.h / 2, t.core.x + t.core.w / 2) for t in tiles}
    countable = [m.index for m in slide_map.tiles if m.zone == "countable"]
    assert countable and all(truth[i] == "countable" for i in countable)
    assert all(truth[m.index] in ("thick", "background") for m in slide_map.tiles
               if m.zone in ("thick", "particle"))  # fmt: skip
    assert slide_map.zones()["edge"] > 0
    ranked = slide_map.ranked()
    scores = [slide_map.tiles[i].score for i in ranked]
    assert sorted(ranked) == sorted(countable) and scores == sorted(scores, reverse=True)
