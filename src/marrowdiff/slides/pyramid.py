"""The one writer of slide files: tiled pyramidal TIFFs (tifffile, deflate), which OpenSlide
reads as `generic-tiff` with their microns per pixel from the resolution tags.

Level 0 is made tile by tile by a `render(y, x, h, w)` function and never held whole; each
coarser level (half the size of the one before) is gathered in a memory-mapped file beside the
output while the level above it is written, so memory stays a few tiles whatever the size."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

TILE = 512  # px, the TIFF's tile side (OpenSlide reads any)
SMALLEST = 512  # px, levels are halved until the longer side is at most this


def level_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """(height, width) of each level: level 0, then halved until it fits `SMALLEST`."""
    sizes = [(height, width)]
    while max(sizes[-1]) > SMALLEST:
        h, w = sizes[-1]
        sizes.append((max(1, h // 2), max(1, w // 2)))
    return sizes


def write_pyramid(
    path: str | Path,
    height: int,
    width: int,
    render: Callable[[int, int, int, int], np.ndarray],
    mpp: float,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """A tiled pyramidal RGB TIFF of `height` x `width` px at `mpp` microns per pixel, level 0
    drawn by `render(y, x, h, w)` -> (h, w, 3) uint8, written atomically."""
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = level_sizes(height, width)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.levels.") as tmp:
        coarser = [
            np.lib.format.open_memmap(os.path.join(tmp, f"{i}.npy"), "w+", np.uint8, (h, w, 3))
            for i, (h, w) in enumerate(sizes[1:], 1)
        ]
        resolution = (1e4 / mpp, 1e4 / mpp)  # px per centimetre
        options = {
            "photometric": "rgb",
            "tile": (TILE, TILE),
            "compression": "zlib",
            "compressionargs": {"level": 1},
            "resolution": resolution,
            "resolutionunit": "CENTIMETER",
            "metadata": None,
        }
        part = os.path.join(tmp, "slide.tiff")  # renamed over `path` when whole: atomic
        with tifffile.TiffWriter(part, bigtiff=True) as tif:
            first = coarser[0] if coarser else None
            tiles = _rendered(height, width, render, first, progress)
            tif.write(tiles, shape=(height, width, 3), dtype=np.uint8, **options)
            for i, level in enumerate(coarser):
                if i + 1 < len(coarser):
                    _halve_into(level, coarser[i + 1])
                tif.write(
                    _tiles_of(level), shape=level.shape, dtype=np.uint8, subfiletype=1, **options
                )  # 1: a reduced-resolution copy, which OpenSlide takes for a level
                level.flush()
        os.replace(part, path)
    return path


def _rendered(height, width, render, half, progress) -> Iterator[np.ndarray]:
    """Level 0's tiles in row-major order, each also halved into `half` (level 1)."""
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            h, w = min(TILE, height - y), min(TILE, width - x)
            tile = render(y, x, h, w)
            if half is not None:
                small = _halved(tile)
                hy, hx = y // 2, x // 2
                sh = min(small.shape[0], half.shape[0] - hy)
                sw = min(small.shape[1], half.shape[1] - hx)
                half[hy : hy + sh, hx : hx + sw] = small[:sh, :sw]
            if h < TILE or w < TILE:  # tifffile takes whole tiles: pad the last row and column
                tile = np.pad(tile, ((0, TILE - h), (0, TILE - w), (0, 0)), constant_values=255)
            if progress is not None:
                progress(1)
            yield tile


def _halved(image: np.ndarray) -> np.ndarray:
    """The image at half its size: the rounded mean of each 2 x 2 block (PIL's box
    reduction; an odd last row or column is a block of its own)."""
    return np.asarray(Image.fromarray(image).reduce(2))


def _halve_into(source: np.ndarray, target: np.ndarray) -> None:
    for y in range(0, target.shape[0], TILE):
        band = _halved(np.asarray(source[2 * y : 2 * (y + TILE)]))
        target[y : y + band.shape[0]] = band[: target.shape[0] - y, : target.shape[1]]


def _tiles_of(level: np.ndarray) -> Iterator[np.ndarray]:
    h, w = level.shape[:2]
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            tile = np.asarray(level[y : y + TILE, x : x + TILE])
            th, tw = tile.shape[:2]
            if th < TILE or tw < TILE:
                tile = np.pad(tile, ((0, TILE - th), (0, TILE - tw), (0, 0)), constant_values=255)
            yield tile


def tiles_in(height: int, width: int) -> int:
    """Level 0's tile count (a progress bar's total)."""
    return math.ceil(height / TILE) * math.ceil(width / TILE)
