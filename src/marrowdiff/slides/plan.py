"""Where a slide is counted: the scale check (before any work), the tiles over the slide or
the user's region, the map, and the order tiles are counted in."""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from marrowdiff.slides.count import SlideCountConfig
from marrowdiff.slides.reader import Slide, SlideError
from marrowdiff.slides.resolution import Working, working_scale
from marrowdiff.slides.tiles import Box, Tile, grid, parse_region
from marrowdiff.slides.tissue import SlideMap, survey


@dataclass
class Plan:
    """Where a slide is counted: its tiles, its map, the order they are counted in."""

    working: Working
    region: Box
    tiles: list[Tile]
    slide_map: SlideMap
    order: list[int]  # tile indices, counted first to last
    chosen_by: str  # "map" (the best countable tiles) or "region" (--region)


def plan_slide(
    slide: Slide, model_mpp: float | None, config: SlideCountConfig, progress: bool = False
) -> Plan:
    """The scale check (before any work), the tiles, the map and the counting order."""
    info = slide.info
    working = working_scale(info, model_mpp, config.mpp)
    region = (
        parse_region(config.region, info.width, info.height, str(slide.path))
        if config.region
        else Box(0, 0, info.width, info.height)
    )
    per_px = working.level0_per_model_px
    tiles = grid(region, round(config.tile * per_px), round(config.margin * per_px))
    with tqdm(total=len(tiles), desc="map", unit="tile", disable=not progress, leave=False) as bar:
        slide_map = survey(slide, tiles, config.map, bar.update)
    if config.region:
        order = [m.index for m in slide_map.tiles if m.zone != "background"]
        return Plan(working, region, tiles, slide_map, order, "region")
    order = slide_map.ranked()
    if config.cells is None:  # every countable tile: in reading order, so margins are cached
        order = sorted(order)
    if not order:
        zones = ", ".join(f"{k} {v}" for k, v in slide_map.zones().items() if v)
        raise SlideError(
            f"{slide.path}: no countable area found (tiles by zone: {zones}): the smear may "
            "be too thick or too thin everywhere, or not a smear; choose an area with --region "
            "X,Y,W,H (docs/slides.md)"
        )
    return Plan(working, region, tiles, slide_map, order, "map")
