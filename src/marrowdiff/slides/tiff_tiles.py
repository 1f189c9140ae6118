"""Regions of a plain tiled TIFF read straight from its tiles: a generic pyramidal TIFF whose
levels are 8-bit RGB tiles, uncompressed or deflate (as `synthetic.slide`, QuPath and
`tifffile` write them). OpenSlide reads these too, and gives the same pixels (a test checks
it), but it paints every region from its cache of decoded tiles, which costs half as much as
decoding them: 35 ms of CPU a megapixel cold, 18 warm, against 10 and 0.7 here (one decode
per tile into a cache of RGB tiles, then plain copies; `bench/slide_stages.py`).
`reader.Slide` uses this for the levels it suits and OpenSlide for everything else (JPEG
tiles, other scanners' formats).

Thread-safe: tiles are read with `os.pread` and the cache is locked, so one `TiffTiles` serves
every reader thread."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

# TIFF tags' values this reader handles; any other level is OpenSlide's.
PLAIN = {1, 8, 32946}  # compression: none, Adobe deflate, deflate
RGB = 2  # photometric interpretation
CONTIG = 1  # planar configuration: RGBRGB...
ORIENTATION = 274  # the tag; 1: rows top to bottom, columns left to right


class TileDecodeError(Exception):
    """A tile whose bytes do not decode (a damaged or truncated file)."""


class TiffTiles:
    """The levels of a tiled TIFF that are plain 8-bit RGB, by OpenSlide level index."""

    def __init__(self, path: Path, tiff, pages: dict, cache_bytes: int):
        self.path = path
        self._tiff = tiff  # the open TiffFile that owns `pages`
        self._pages = pages  # OpenSlide level -> tifffile page
        self._fd = os.open(path, os.O_RDONLY)
        self._cache: OrderedDict = OrderedDict()
        self._bytes, self._limit = 0, cache_bytes
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: Path, level_dimensions: tuple[tuple[int, int], ...], cache_bytes: int
    ) -> TiffTiles | None:
        """The file's plain levels (matched to OpenSlide's by their size), or None when it has
        none, or is not a TIFF `tifffile` reads."""
        import tifffile

        try:
            tiff = tifffile.TiffFile(path)
        except Exception:  # noqa: BLE001 - any file tifffile cannot parse stays OpenSlide's
            return None
        try:
            pages = {}
            for level, (width, height) in enumerate(level_dimensions):
                page = next(
                    (p for p in tiff.pages if p.shape[:2] == (height, width) and _plain(p)), None
                )
                if page is not None:
                    pages[level] = page
        except Exception:  # noqa: BLE001 - a page tifffile cannot read: OpenSlide's too
            pages = {}
        if not pages:
            tiff.close()
            return None
        return cls(path, tiff, pages, cache_bytes)

    def reads(self, level: int) -> bool:
        return level in self._pages

    def read(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        """(height, width, 3) uint8 RGB of a region of `level` whose top left is (x, y) in that
        level's px; outside the level is white (the glass), as OpenSlide gives it."""
        page = self._pages[level]
        full_h, full_w = page.shape[:2]
        th, tw = page.tilelength, page.tilewidth
        across, down = -(-full_w // tw), -(-full_h // th)
        out = np.full((height, width, 3), 255, np.uint8)
        for row in range(max(0, y // th), min(down, -(-(y + height) // th))):
            for col in range(max(0, x // tw), min(across, -(-(x + width) // tw))):
                tile = self._tile(page, row * across + col)
                y0, x0 = max(y, row * th), max(x, col * tw)
                y1 = min(y + height, row * th + th, full_h)
                x1 = min(x + width, col * tw + tw, full_w)
                if y1 > y0 and x1 > x0:
                    out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[
                        y0 - row * th : y1 - row * th, x0 - col * tw : x1 - col * tw
                    ]
        return out

    def _tile(self, page, index: int) -> np.ndarray:
        key = (page.index, index)
        with self._lock:
            tile = self._cache.get(key)
            if tile is not None:
                self._cache.move_to_end(key)
                return tile
        tile = self._decode(page, index)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = tile
                self._bytes += tile.nbytes
            while self._bytes > self._limit and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.nbytes
        return tile

    def _decode(self, page, index: int) -> np.ndarray:
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if count == 0:  # a tile the scanner left out: glass, as OpenSlide paints it
            return np.full((page.tilelength, page.tilewidth, 3), 255, np.uint8)
        try:
            raw = os.pread(self._fd, count, offset)
            data = page.decode(raw, index)[0] if len(raw) == count else None
        except Exception as exc:  # noqa: BLE001 - zlib, tifffile and OS errors alike
            raise TileDecodeError(str(exc) or type(exc).__name__) from exc
        if len(raw) != count:
            raise TileDecodeError(f"{count - len(raw)} of its {count} bytes are missing")
        if data is None or data.shape[-3:] != (page.tilelength, page.tilewidth, 3):
            raise TileDecodeError(f"tile {index} decodes to {getattr(data, 'shape', None)}")
        return data.reshape(page.tilelength, page.tilewidth, 3)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None


def _plain(page) -> bool:
    """Whether a TIFF page is one this reader decodes exactly as OpenSlide does."""
    return bool(
        page.is_tiled
        and int(page.compression) in PLAIN
        and int(page.photometric) == RGB
        and int(page.planarconfig) == CONTIG
        and page.samplesperpixel == 3
        and not page.extrasamples
        and page.bitspersample == 8
        and int(page.predictor) == 1
        and int(page.fillorder) == 1
        and _tag(page, ORIENTATION, 1) == 1
        and page.tiledepth == 1
        and page.dtype == np.uint8
    )


def _tag(page, code: int, default: int) -> int:
    tag = page.tags.get(code)
    return default if tag is None else int(tag.value)
