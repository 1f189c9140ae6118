"""Marrow-like whole slides with known cells: a tiled pyramidal TIFF (`slides.pyramid`) laid
out like an aspirate smear, and every nucleated cell's true position, class and zone beside it.

Across the slide, left to right, as a smear is spread: a thick area (red cells piled on each
other) holding marrow particles (clumps of nucleated cells), the countable area (red cells
side by side, nucleated cells apart), the feathered edge (few cells, spread thin), then bare
glass; glass above and below too. Nucleated cells are real single-cell patches (e.g. held-out
test cells) pasted through a feathered disc (`fields.paste`), turned and flipped at random.
The slide is drawn tile by tile from a plan, so one of any size takes a few tiles of memory.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from marrowdiff.fileio import atomic_open
from marrowdiff.slides.pyramid import write_pyramid
from marrowdiff.synthetic.fields import paste

BLOCK = 512  # px: red cells are drawn from a generator seeded per block of this side
PLASMA = np.array([236, 226, 222], np.float32)  # the smear between cells
GLASS = np.array([244, 244, 242], np.float32)
RED = np.array([222, 160, 158], np.float32)


@dataclass(frozen=True)
class SlideConfig:
    width: int = 8192  # level 0, px
    height: int = 6144
    mpp: float = 0.136  # microns per pixel: the archive's field scale (docs/slides.md)
    patch_size: int = 144  # px each pasted cell's patch covers
    disc: float = 0.40  # radius of the pasted disc, as a fraction of the patch side
    spacing: float = 135.0  # px between nucleated cells in the countable area
    thick_end: float = 0.25  # fractions of the width where each zone ends, left to right
    countable_end: float = 0.78
    edge_end: float = 0.92
    margin: float = 0.06  # glass above and below, a fraction of the height
    particles: int = 3  # marrow particles in the thick area
    red_radius: float = 27.0  # px (7.5 microns at 0.136)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def zone(self, y: float, x: float) -> str:
        """The zone of a level-0 point (particles aside: they lie within the thick area)."""
        if y < self.margin * self.height or y >= (1 - self.margin) * self.height:
            return "background"
        f = x / self.width
        if f < self.thick_end:
            return "thick"
        if f < self.countable_end:
            return "countable"
        return "edge" if f < self.edge_end else "background"


# Red-cell and nucleated-cell spacing by zone, as multiples of `red_radius` and `spacing`.
RED_SPACING = {"thick": 0.9, "countable": 2.1, "edge": 4.5, "particle": 1.3}
CELL_SPACING = {"thick": 2.0, "countable": 1.0, "edge": 3.5, "particle": 0.62}


@dataclass
class SlidePlan:
    """Every nucleated cell of a slide: level-0 centre, class, zone, patch and orientation."""

    config: SlideConfig
    y: np.ndarray  # (N,) float
    x: np.ndarray
    patch: np.ndarray  # (N,) int, index into the patches
    turn: np.ndarray  # (N,) int, 0-7: four rotations, each flipped or not
    zone: list[str]
    particles: list[tuple[float, float, float]]  # (cy, cx, radius)

    def __len__(self) -> int:
        return len(self.y)


def plan(config: SlideConfig, n_patches: int) -> SlidePlan:
    """Where each nucleated cell goes: a jittered grid per zone, denser in particles."""
    rng = np.random.default_rng(config.seed)
    particles = []
    for _ in range(config.particles):
        room = min(0.09 * config.height, 0.45 * config.thick_end * config.width)
        r = rng.uniform(0.55, 1.0) * room
        cy = rng.uniform(config.margin * config.height + r, (1 - config.margin) * config.height - r)
        cx = rng.uniform(r, config.thick_end * config.width - r)
        particles.append((cy, cx, r))
    ys, xs, zones = [], [], []
    for name, step in CELL_SPACING.items():
        gap = step * config.spacing
        gy, gx = np.mgrid[gap / 2 : config.height : gap, gap / 2 : config.width : gap]
        gy = gy.ravel() + rng.uniform(-0.18, 0.18, gy.size) * gap
        gx = gx.ravel() + rng.uniform(-0.18, 0.18, gx.size) * gap
        inside = np.array([_in_particle(particles, y, x) for y, x in zip(gy, gx, strict=True)])
        where = [config.zone(y, x) for y, x in zip(gy, gx, strict=True)]
        keep = [
            (w == name and not p) if name != "particle" else (p and w == "thick")
            for w, p in zip(where, inside, strict=True)
        ]
        ys.append(gy[keep])
        xs.append(gx[keep])
        zones += [name] * int(np.sum(keep))
    y, x = np.concatenate(ys), np.concatenate(xs)
    radius = config.disc * config.patch_size
    inner = (y > radius) & (y < config.height - radius) & (x > radius) & (x < config.width - radius)
    order = np.flatnonzero(inner)
    return SlidePlan(
        config,
        y[order],
        x[order],
        rng.integers(0, n_patches, order.size),
        rng.integers(0, 8, order.size),
        [zones[i] for i in order],
        particles,
    )


def _in_particle(particles, y: float, x: float) -> bool:
    return any(np.hypot(y - cy, x - cx) < r for cy, cx, r in particles)


class Renderer:
    """Draws any region of a planned slide: plasma, red cells, then the nucleated cells."""

    def __init__(self, slide_plan: SlidePlan, patches: list[np.ndarray]):
        self.plan, self.config = slide_plan, slide_plan.config
        self.stamps = red_cell_stamps(self.config.red_radius)
        side = self.config.patch_size
        self.patches = [_at_side(p, side) for p in patches]
        by, bx = (slide_plan.y // BLOCK).astype(int), (slide_plan.x // BLOCK).astype(int)
        order = np.lexsort((bx, by))  # the cells block by block
        starts = np.flatnonzero(np.r_[True, np.diff(by[order]) | np.diff(bx[order]) != 0])
        self.blocks = (
            {
                (int(by[order[s]]), int(bx[order[s]])): part
                for s, part in zip(starts, np.split(order, starts[1:]), strict=True)
            }
            if len(order)
            else {}
        )

    def __call__(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        config = self.config
        image = np.empty((h, w, 3), np.float32)
        yy = np.arange(y0, y0 + h)[:, None]
        xx = np.arange(x0, x0 + w)[None, :]
        glass = (yy < config.margin * config.height) | (yy >= (1 - config.margin) * config.height)
        glass = glass | (xx >= config.edge_end * config.width)
        image[:] = np.where(glass[..., None], GLASS, PLASMA)
        reach = int(config.red_radius * 1.2) + 1
        for by in range((y0 - reach) // BLOCK, (y0 + h + reach) // BLOCK + 1):
            for bx in range((x0 - reach) // BLOCK, (x0 + w + reach) // BLOCK + 1):
                self._red_cells(image, y0, x0, by, bx)
        radius = config.disc * config.patch_size
        half = config.patch_size // 2 + 1
        for by in range((y0 - half) // BLOCK, (y0 + h + half) // BLOCK + 1):
            for bx in range((x0 - half) // BLOCK, (x0 + w + half) // BLOCK + 1):
                for i in self.blocks.get((by, bx), ()):
                    patch = _turned(self.patches[self.plan.patch[i]], self.plan.turn[i])
                    paste(image, patch, self.plan.y[i] - y0, self.plan.x[i] - x0, radius)
        noise = np.random.default_rng([config.seed, y0, x0]).standard_normal(
            image.shape[:2], dtype=np.float32
        )
        image += noise[..., None]
        np.clip(image, 0, 255, out=image)
        return np.rint(image, out=image).astype(np.uint8)

    def _red_cells(self, image: np.ndarray, y0: int, x0: int, by: int, bx: int) -> None:
        """The red cells of block (by, bx), drawn where they fall in the region."""
        config = self.config
        if by < 0 or bx < 0:
            return
        cy0, cx0 = (by + 0.5) * BLOCK, (bx + 0.5) * BLOCK
        where = config.zone(cy0, cx0)
        if where == "background":
            return
        if where == "thick" and _in_particle(self.plan.particles, cy0, cx0):
            where = "particle"
        rng = np.random.default_rng([config.seed, 7, by, bx])
        n = int(round((BLOCK / (RED_SPACING[where] * config.red_radius)) ** 2))
        h, w = image.shape[:2]
        for cy, cx, k in zip(
            rng.uniform(by * BLOCK, (by + 1) * BLOCK, n),
            rng.uniform(bx * BLOCK, (bx + 1) * BLOCK, n),
            rng.integers(0, len(self.stamps), n),
            strict=True,
        ):
            if config.zone(cy, cx) == "background":  # the block reaches onto bare glass
                continue
            keep, add = self.stamps[k]
            half = keep.shape[0] // 2
            top, left = int(round(cy)) - y0 - half, int(round(cx)) - x0 - half
            ya, yb = max(top, 0), min(top + keep.shape[0], h)
            xa, xb = max(left, 0), min(left + keep.shape[1], w)
            if ya >= yb or xa >= xb:
                continue
            region = image[ya:yb, xa:xb]
            region *= keep[ya - top : yb - top, xa - left : xb - left]
            region += add[ya - top : yb - top, xa - left : xb - left]


def red_cell_stamps(radius: float, sizes: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    """(keep, add) of red cells of `sizes` radii from 0.85 to 1.1 x `radius`: a pixel under
    one becomes pixel x keep + add (a pink disc with a pale centre, 64% opaque, so that
    overlapping red cells darken as in a thick area)."""
    stamps = []
    for r in radius * np.linspace(0.85, 1.1, sizes):
        half = int(np.ceil(r)) + 1
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
        d = np.hypot(yy, xx) / r
        alpha = (np.clip((1 - d) * 4, 0, 1) * 0.85 * 0.75)[..., None].astype(np.float32)
        pallor = (0.3 * np.exp(-((d / 0.45) ** 2)))[..., None]
        colour = (RED * (1 - pallor) + PLASMA * pallor).astype(np.float32)
        stamps.append((1 - alpha, colour * alpha))
    return stamps


def _at_side(patch: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    if patch.shape[:2] == (side, side):
        return patch
    return np.asarray(Image.fromarray(patch).resize((side, side), Image.BICUBIC))


def _turned(patch: np.ndarray, turn: int) -> np.ndarray:
    out = np.rot90(patch, turn % 4)
    return out[:, ::-1] if turn >= 4 else out


def write_slide(
    path: str | Path,
    patches: list[np.ndarray],
    labels: list[str],
    config: SlideConfig,
    progress=None,
) -> tuple[Path, Path]:
    """The slide as a tiled pyramidal TIFF at `path`, and its truth as `path` + ".cells.csv"
    (x, y in level-0 px, class, zone; one row per nucleated cell)."""
    path = Path(path)
    slide_plan = plan(config, len(patches))
    write_pyramid(path, config.height, config.width, Renderer(slide_plan, patches), config.mpp,
                  progress)  # fmt: skip
    truth = truth_path(path)
    with atomic_open(truth, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["x", "y", "class", "zone"])
        for y, x, k, z in zip(slide_plan.y, slide_plan.x, slide_plan.patch, slide_plan.zone,
                              strict=True):  # fmt: skip
            writer.writerow([round(float(x), 1), round(float(y), 1), labels[k], z])
    return path, truth


def truth_path(slide: str | Path) -> Path:
    return Path(f"{slide}.cells.csv")


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """A slide's truth file: arrays x, y (float), class and zone (str)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "x": np.array([float(r["x"]) for r in rows]),
        "y": np.array([float(r["y"]) for r in rows]),
        "class": np.array([r["class"] for r in rows]),
        "zone": np.array([r["zone"] for r in rows]),
    }


# The demo's slide: mostly countable area (6 tiles of 1024 px), about 1,000 nucleated cells
DEMO = SlideConfig(width=4608, height=4096, thick_end=0.15, countable_end=0.85, edge_end=0.95,
                   margin=0.03, particles=2)  # fmt: skip


def write_demo_slide(dataset, paths: list[str], out: Path, config: SlideConfig = DEMO):
    """A synthetic slide pasted from the cells of `paths` of a data set (the demo uses the
    held-out test cells), at `out`, with its truth beside it; reused when it is there."""
    out = Path(out)
    if out.exists() and truth_path(out).exists():
        return out
    wanted = set(paths)
    records = [r for r in dataset.records if r.path in wanted]
    write_slide(out, [dataset.load(r) for r in records], [r.label for r in records], config)
    return out
