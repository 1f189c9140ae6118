"""Where to count, as a haematologist chooses: the slide's map and each tile's score.

Each tile's core is read from a low-resolution level (`MAP_MPP`, about 2 microns per pixel,
where a nucleus is a few pixels across) and measured in blocks of about `BLOCK_UM` microns:
- coverage: the share of pixels with cells on them (optical density above the glass's and
  plasma's, `MapConfig.covered`);
- nuclear: the share of pixels dense in haematoxylin (nuclei, basophilic cytoplasm);
- focus: the variance of the Laplacian of the grey image (Pech-Pacheco et al. 2000);
and each block is given a zone: background (glass), particle (marrow particles: a clump of
nuclei), thick (cells overlapping: no glass between them), feathered edge (sparse, spread and
broken cells) or countable (the even area between them). A tile is countable only when
nearly all its blocks are (`MapConfig.whole`), otherwise it takes the zone most of its other
blocks have. Countable tiles are scored by nucleated-cell density, less for crowding and for
blur, and counted best first. One tile is read at a time,
so memory does not grow with the slide; the thumbnail the report shows is built on the way.
The thresholds suit May-Grunwald-Giemsa and Wright-Giemsa smears and the project's synthetic
slides (docs/slides.md); `--region` counts a user's area instead."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from marrowdiff.slides.reader import Slide
from marrowdiff.slides.tiles import Tile
from marrowdiff.stain import haematoxylin

MAP_MPP = 2.0  # microns per pixel the map is measured at, at most (a coarser level is not used)
BLOCK_UM = 30.0  # microns: the side of the blocks a tile's zone is judged by
THUMBNAIL = 1000  # px, the longer side of the slide's thumbnail in the report
ZONES = ("background", "particle", "thick", "edge", "countable")
ZONE_COLOURS = {  # the report's map: RGB
    "background": (230, 230, 230),
    "particle": (120, 40, 140),
    "thick": (200, 80, 60),
    "edge": (230, 180, 40),
    "countable": (60, 160, 80),
}


@dataclass(frozen=True)
class MapConfig:
    covered: float = 0.6  # summed RGB optical density above which a pixel has a cell on it
    nucleus: float = 0.04  # haematoxylin density above which a pixel is nuclear (at ~1 um/px)
    background: float = 0.05  # coverage below which a block is glass
    edge: float = 0.35  # coverage below which a block is the feathered edge (sparse, broken)
    thick: float = 0.8  # coverage above which cells overlap
    particle: float = 0.5  # nuclear share above which a block is a marrow particle
    crowded: float = 0.6  # coverage from which a countable tile's score falls (to half at thick)
    whole: float = 0.9  # share of a tile's blocks that must be countable for it to be

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TileMap:
    """A tile's measures and zone; `score` orders countable tiles (0 for the others)."""

    index: int
    coverage: float
    nuclear: float
    focus: float
    zone: str
    score: float = 0.0


def map_level(slide: Slide) -> int:
    """The coarsest level no coarser than `MAP_MPP` (level 0 without microns per pixel)."""
    info = slide.info
    if info.mpp is None:
        return 0
    fine = [i for i, d in enumerate(info.level_downsamples) if info.mpp * d <= MAP_MPP]
    return max(fine, default=0)


def measure(image: np.ndarray, config: MapConfig, block: int) -> tuple[np.ndarray, ...]:
    """(coverage, nuclear) of each `block` x `block` px block of an RGB uint8 image at the
    map's scale (the image's last partial row and column of blocks are measured too), and
    the image's focus."""
    od = -np.log((image.astype(np.float32) + 1) / 256).sum(axis=2)
    covered = (od > config.covered).astype(np.float32)
    nuclear = (haematoxylin(image) > config.nucleus).astype(np.float32)
    grey = image.astype(np.float32).mean(axis=2)
    focus = float(ndi.laplace(grey).var()) if min(grey.shape) >= 3 else 0.0
    return _block_means(covered, block), _block_means(nuclear, block), focus


def _block_means(values: np.ndarray, block: int) -> np.ndarray:
    """(rows, cols) means of about `block`-px blocks that split the image evenly (a tile's
    side is rarely a whole number of blocks: no sliver of a block is judged on its own)."""
    h, w = values.shape
    ys = np.linspace(0, h, max(1, round(h / block)) + 1).round().astype(int)
    xs = np.linspace(0, w, max(1, round(w / block)) + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(values, ys[:-1], 0), xs[:-1], 1)
    return sums / (np.diff(ys)[:, None] * np.diff(xs)[None, :])


def zone(coverage: float, nuclear: float, config: MapConfig) -> str:
    """The zone of a block from its coverage and nuclear share (the rules in the docstring)."""
    if coverage < config.background:
        return "background"
    if nuclear > config.particle:
        return "particle"
    if coverage > config.thick:
        return "thick"
    if coverage < config.edge:
        return "edge"
    return "countable"


def tile_zone(zones: list[str], config: MapConfig) -> str:
    """A tile's zone from its blocks': countable when nearly all are, else the commonest of
    the others (ties in `ZONES` order)."""
    share = {z: zones.count(z) / len(zones) for z in ZONES}
    if share["countable"] >= config.whole:
        return "countable"
    return max((z for z in ZONES if z != "countable"), key=lambda z: share[z])


def scored(maps: list[TileMap], config: MapConfig) -> list[TileMap]:
    """The maps with each countable tile's score: its nuclear share (nucleated-cell density),
    down to half as its coverage rises from `crowded` to `thick` (cells touching), and in
    proportion to its focus below the countable tiles' median (blur)."""
    countable = [m.focus for m in maps if m.zone == "countable"]
    sharp = float(np.median(countable)) if countable else 1.0
    out = []
    for m in maps:
        score = 0.0
        if m.zone == "countable":
            crowding = np.clip(
                (m.coverage - config.crowded) / (config.thick - config.crowded), 0, 1
            )
            focus = min(1.0, m.focus / sharp) if sharp > 0 else 1.0
            score = m.nuclear * (1 - 0.5 * crowding) * focus
        out.append(TileMap(m.index, m.coverage, m.nuclear, m.focus, m.zone, float(score)))
    return out


@dataclass
class SlideMap:
    """Every tile's map, and the slide's thumbnail (RGB uint8) with its scale."""

    tiles: list[TileMap]
    thumbnail: np.ndarray
    scale: float  # thumbnail px per level-0 px
    level: int  # the level the map was read at

    def ranked(self) -> list[int]:
        """Indices of the countable tiles, best first (ties: in reading order)."""
        countable = [m for m in self.tiles if m.zone == "countable"]
        return [m.index for m in sorted(countable, key=lambda m: (-m.score, m.index))]

    def zones(self) -> dict[str, int]:
        return {z: sum(m.zone == z for m in self.tiles) for z in ZONES}


def survey(slide: Slide, tiles: list[Tile], config: MapConfig, progress=None) -> SlideMap:
    """Read each tile's core at the map level and measure it; the thumbnail on the way."""
    info, level = slide.info, map_level(slide)
    ds = info.level_downsamples[level]
    scale = THUMBNAIL / max(info.width, info.height)
    thumb = np.full((max(1, round(info.height * scale)), max(1, round(info.width * scale)), 3),
                    255, np.uint8)  # fmt: skip
    mpp = info.mpp * ds if info.mpp else None
    block = max(4, round(BLOCK_UM / mpp)) if mpp else 48
    maps = []
    for tile in tiles:
        box = tile.core
        w, h = max(1, round(box.w / ds)), max(1, round(box.h / ds))
        image = slide.read(box.x, box.y, w, h, level)
        coverage, nuclear, focus = measure(image, config, block)
        zones = [zone(c, n, config) for c, n in zip(coverage.ravel(), nuclear.ravel(), strict=True)]
        maps.append(TileMap(tile.index, float(coverage.mean()), float(nuclear.mean()), focus,
                            tile_zone(zones, config)))  # fmt: skip
        _paste(thumb, image, box.x * scale, box.y * scale, box.w * scale, box.h * scale)
        if progress is not None:
            progress(1)
    return SlideMap(scored(maps, config), thumb, scale, level)


def _paste(thumb: np.ndarray, image: np.ndarray, x: float, y: float, w: float, h: float):
    x0, y0 = int(round(x)), int(round(y))
    x1, y1 = min(int(round(x + w)), thumb.shape[1]), min(int(round(y + h)), thumb.shape[0])
    if x1 > x0 and y1 > y0:
        small = Image.fromarray(image).resize((x1 - x0, y1 - y0), Image.BILINEAR)
        thumb[y0:y1, x0:x1] = np.asarray(small)


def drawn(slide_map: SlideMap, tiles: list[Tile], counted: set[int]) -> Image.Image:
    """The thumbnail with each tile's zone outlined faintly and the counted tiles boxed."""
    canvas = Image.fromarray(slide_map.thumbnail)
    draw = ImageDraw.Draw(canvas, "RGBA")
    s = slide_map.scale
    for tile, m in zip(tiles, slide_map.tiles, strict=True):
        b = tile.core
        box = [b.x * s, b.y * s, (b.x + b.w) * s - 1, (b.y + b.h) * s - 1]
        if tile.index in counted:
            draw.rectangle(box, outline=(0, 90, 220, 255), width=2)
        elif m.zone != "background":
            draw.rectangle(box, fill=(*ZONE_COLOURS[m.zone], 40))
    return canvas
