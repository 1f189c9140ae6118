"""Synthetic smear fields with known cell positions, for testing and benchmarking detection.

No labelled bone-marrow fields are public, so fields are made from labelled single-cell patches:
each patch is pasted through a feathered disc onto a smear-like background (pale plasma with red
cells), at known centres, some of them touching another cell and some cut by the field border.
The truth is each patch's centre, where the archive's annotators centred the cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from marrowdiff.evaluation.detection import TrueCell


@dataclass(frozen=True)
class FieldConfig:
    height: int = 1080
    width: int = 1330  # the paper's fields: 1080 x 1330 px at x1000
    cells: int = 14  # nucleated cells per field
    patch_size: int = 144  # side, px, that each patch covers in the field
    disc: float = 0.40  # radius of the pasted disc, as a fraction of the patch side
    touching: float = 0.3  # fraction of cells placed touching an earlier one
    border_cells: int = 1  # cells placed across the field border
    red_cells: int = 160  # red-cell discs in the background


def smear_background(
    rng: np.random.Generator, height: int, width: int, red_cells: int, radius: float
) -> np.ndarray:
    """(H, W, 3) float32: pale, slightly uneven plasma with pink red-cell discs (pale centres)."""
    base = np.array([232, 220, 215], np.float32) + rng.normal(0, 5, 3)
    shade = ndi.zoom(rng.normal(0, 1, (6, 7)), (height / 6, width / 7), order=3)[:height, :width]
    image = base + 6 * shade[..., None].astype(np.float32)
    yy, xx = np.ogrid[:height, :width]
    red = np.array([222, 165, 160], np.float32) + rng.normal(0, 4, 3)
    for _ in range(red_cells):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.45, 0.6) * radius
        y0, y1 = int(max(cy - r - 1, 0)), int(min(cy + r + 2, height))
        x0, x1 = int(max(cx - r - 1, 0)), int(min(cx + r + 2, width))
        d = np.hypot(yy[y0:y1] - cy, xx[:, x0:x1] - cx) / r
        alpha = np.clip((1 - d) * 4, 0, 1)[..., None]
        pallor = 0.35 * np.exp(-((d / 0.45) ** 2))[..., None]  # central pallor
        colour = red * (1 - pallor) + base * pallor
        image[y0:y1, x0:x1] = image[y0:y1, x0:x1] * (1 - alpha) + colour * alpha
    return image


def paste(field: np.ndarray, patch: np.ndarray, cy: float, cx: float, radius: float) -> None:
    """Blend `patch` (already at field scale) into float `field`, centred at (cy, cx), through a
    disc of `radius` px feathered over its outer 20%."""
    side = patch.shape[0]
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, field.shape[0]), min(left + side, field.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = np.hypot(yy - cy, xx - cx) / radius
    alpha = np.clip((1 - d) / 0.2, 0, 1)[..., None]
    region = patch[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
    field[y0:y1, x0:x1] = field[y0:y1, x0:x1] * (1 - alpha) + region * alpha


def make_field(
    patches: list[np.ndarray], labels: list[str], config: FieldConfig, seed: int
) -> tuple[np.ndarray, list[TrueCell]]:
    """A (H, W, 3) uint8 field with up to `config.cells` of the given patches pasted in, and their
    true centres. Patches are drawn at random; cells that cannot be placed are left out."""
    rng = np.random.default_rng(seed)
    side, radius = config.patch_size, config.disc * config.patch_size
    field = smear_background(rng, config.height, config.width, config.red_cells, radius)
    order = rng.permutation(len(patches))[: config.cells]
    placed: list[TrueCell] = []
    for n, i in enumerate(order):
        patch = np.asarray(
            Image.fromarray(patches[i]).resize((side, side), Image.BICUBIC)
            if patches[i].shape[:2] != (side, side)
            else patches[i]
        )
        position = _place(rng, placed, config, radius, border=n < config.border_cells)
        if position is None:
            continue
        cy, cx = position
        paste(field, patch, cy, cx, radius)
        border = min(cy, cx, config.height - cy, config.width - cx) < radius * 0.9
        placed.append(TrueCell(float(cy), float(cx), labels[i], bool(border)))
    field += rng.normal(0, 1.5, field.shape)
    return np.clip(field, 0, 255).round().astype(np.uint8), placed


def _place(
    rng: np.random.Generator,
    placed: list[TrueCell],
    config: FieldConfig,
    radius: float,
    border: bool,
) -> tuple[float, float] | None:
    """A centre for the next cell: across the border, touching an earlier cell (its discs
    overlapping by a tenth), or free; never closer than 1.6 radii to another cell."""
    h, w = config.height, config.width
    for _ in range(200):
        if border:
            cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
            edge = rng.integers(4)
            inset = rng.uniform(0.2, 0.6) * radius
            cy = inset if edge == 0 else h - inset if edge == 1 else cy
            cx = inset if edge == 2 else w - inset if edge == 3 else cx
        elif placed and rng.random() < config.touching:
            anchor = placed[rng.integers(len(placed))]
            angle = rng.uniform(0, 2 * np.pi)
            gap = rng.uniform(1.6, 1.8) * radius
            cy, cx = anchor.y + gap * np.sin(angle), anchor.x + gap * np.cos(angle)
        else:
            cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
        if not border and min(cy, cx, h - cy, w - cx) < radius:
            continue
        if all(np.hypot(cy - c.y, cx - c.x) >= 1.6 * radius for c in placed):
            return cy, cx
    return None


def write_fields(dataset, paths: list[str], out: Path, n: int = 4) -> Path:
    """`n` synthetic 1080 x 1330 fields pasted from the cells of `paths` of a data set (the
    demo uses held-out test cells; docs/counting.md), as PNGs in `out`."""
    from marrowdiff.fileio import save_image

    wanted = set(paths)
    records = [r for r in dataset.records if r.path in wanted]
    patches = [dataset.load(r) for r in records]
    for k in range(n):
        field, _ = make_field(patches, [r.label for r in records], FieldConfig(), seed=k)
        save_image(out / f"synthetic-field-{k + 1}.png", Image.fromarray(field))
    return out
