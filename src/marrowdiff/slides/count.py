"""A slide's cells: choose its tiles (`tissue`), then read each at the model's scale, find,
crop and classify its nucleated cells (`counting.count`'s steps), and keep those whose centre
its core holds (`tiles`). Cells are kept compactly (`TileCells`: arrays, no crops), written
to the journal tile by tile, and read back for the report: memory does not grow with the
slide beyond a few bytes a cell."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from marrowdiff.counting.count import CountConfig
from marrowdiff.counting.detect import crop, detect
from marrowdiff.inference.predict import Classifier
from marrowdiff.slides.reader import Slide
from marrowdiff.slides.resolution import Working
from marrowdiff.slides.tiles import Tile
from marrowdiff.slides.tissue import MapConfig

FLAG_CODES = ("", "unsure", "border")  # TileCells.flag: an index into these


@dataclass(frozen=True)
class SlideCountConfig:
    count: CountConfig = field(default_factory=CountConfig)
    cells: int | None = 500  # stop once this many are in the differential; None: every cell
    region: str | None = None  # "X,Y,W,H" in level-0 px: count every tile of it instead
    mpp: float | None = None  # the slide's microns per pixel, over the file's
    tile: int = 2048  # px of the model's scale: a tile core's side (about 280 microns)
    map: MapConfig = field(default_factory=MapConfig)
    gallery: int = 24  # cells of each class (and each reason) the report shows
    with_label: bool = False  # copy the slide's label image into the report (a patient's name)

    @property
    def margin(self) -> int:
        """px of the model's scale read around each core: a cell whose centre the core holds
        is read whole (its crop reaches half a patch, 72 px; its blob a large cell's radius,
        up to about 100 px; at 0.8 patches, 11 of 23,000 cells were counted twice)."""
        return round(1.1 * self.count.detect.patch_size)

    def to_dict(self) -> dict:
        return {
            "cells": "all" if self.cells is None else self.cells,
            "region": self.region,
            "mpp": self.mpp,
            "tile": self.tile,
            "margin": self.margin,
            "map": self.map.to_dict(),
            "tta": self.count.tta,
            "include_border": self.count.include_border,
            "detect": self.count.detect.to_dict(),
        }


@dataclass
class TileCells:
    """One tile's cells: level-0 centres, class indices, top probabilities, flags (into
    FLAG_CODES), distances from the training cells and calibrated probabilities."""

    tile: int
    x: np.ndarray  # (N,) float64, level-0 px
    y: np.ndarray
    label: np.ndarray  # (N,) int
    probability: np.ndarray  # (N,) float
    flag: np.ndarray  # (N,) int8
    distance: np.ndarray  # (N,) float
    proba: np.ndarray  # (N, C) float32

    def __len__(self) -> int:
        return len(self.x)


def read_tile(slide: Slide, tile: Tile, working: Working) -> np.ndarray:
    """The tile's read box at the model's scale: read from the working level, resized."""
    box, ds = tile.read, working.downsample
    w, h = max(1, round(box.w / ds)), max(1, round(box.h / ds))
    image = slide.read(box.x, box.y, w, h, working.level)
    if abs(working.factor - 1) > 1e-3:
        size = (max(1, round(w * working.factor)), max(1, round(h * working.factor)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return image


@dataclass
class Prepared:
    """A tile read and its cells found and cropped: the classifier's input."""

    tile: Tile
    x: np.ndarray  # (N,) level-0 px of the cells its core holds
    y: np.ndarray
    border: np.ndarray  # (N,) bool: cut by the region's edge
    patches: list[np.ndarray]


def prepare_tile(slide: Slide, tile: Tile, working: Working, config: CountConfig) -> Prepared:
    """Read a tile at the model's scale, find its cells, keep those its core holds, crop them."""
    image = read_tile(slide, tile, working)
    return held_cells(tile, image, detect(image, config.detect), working, config)


def held_cells(
    tile: Tile, image: np.ndarray, found: list, working: Working, config: CountConfig
) -> Prepared:
    """Of the cells `found` in the tile's read `image`, those whose centre its core holds,
    cropped."""
    per_px = working.level0_per_model_px
    xs = np.array([tile.read.x + d.x * per_px for d in found], float)
    ys = np.array([tile.read.y + d.y * per_px for d in found], float)
    mine = [i for i in range(len(found)) if tile.core.holds(xs[i], ys[i])]
    side = config.detect.patch_size
    return Prepared(
        tile,
        xs[mine],
        ys[mine],
        np.array([found[i].border and not config.include_border for i in mine], bool),
        [crop(image, found[i].y, found[i].x, side) for i in mine],
    )


def classify_tile(classifier: Classifier, prepared: Prepared, config: CountConfig) -> TileCells:
    """The prepared tile's cells, classified."""
    if prepared.patches:
        proba, unsure, distance = classifier.classify(prepared.patches, config.tta)
    else:
        n = len(classifier.classes)
        proba, unsure, distance = np.zeros((0, n)), np.zeros(0, bool), np.zeros(0)
    top = np.asarray(classifier.top(proba), int)
    flag = np.where(prepared.border, 2, np.where(np.asarray(unsure, bool), 1, 0))
    return TileCells(
        prepared.tile.index,
        prepared.x,
        prepared.y,
        top,
        proba[np.arange(len(top)), top],
        flag.astype(np.int8),
        np.asarray(distance, float),
        np.asarray(proba, np.float32),
    )


def in_differential(cells: TileCells, counted: np.ndarray) -> int:
    """How many of a tile's cells enter the differential: not cut by the border, and of a
    counted class (`counted`: the model's class mask)."""
    return int(((cells.flag != 2) & counted[cells.label]).sum())
