"""Debris and artefacts drawn on a field's own background (pure, seeded).

No shared data set labels debris, so the "debris or artefact" outcome learns from drawn
examples on real backgrounds: stain precipitate (a cluster of small dark-violet dots), a fibre
or scratch, and an out-of-focus purple smear. A laboratory's own `x` (not a cell) verdicts,
exported by the review station, bring real ones (docs/review.md)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("precipitate", "fibre", "smear")


def draw_debris(background: np.ndarray, rng: np.random.Generator, kind: str = "") -> np.ndarray:
    """`background` (H, W, 3 uint8) with one drawn artefact at its centre."""
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    h, w = background.shape[:2]
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    cy, cx = (h - 1) / 2 + rng.normal(0, 4), (w - 1) / 2 + rng.normal(0, 4)
    if kind == "precipitate":
        spread = rng.uniform(4, 16)
        for _ in range(int(rng.integers(6, 40))):
            y, x, r = cy + rng.normal(0, spread), cx + rng.normal(0, spread), rng.uniform(1, 3.5)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.uniform(180, 255)))
        blur = rng.uniform(0.3, 1.0)
    elif kind == "fibre":
        t = np.linspace(-1, 1, 24)
        angle, bend, length = rng.uniform(0, np.pi), rng.normal(0, 0.3), rng.uniform(25, 60)
        ys = cy + length * (t * np.sin(angle) + bend * t**2 * np.cos(angle))
        xs = cx + length * (t * np.cos(angle) - bend * t**2 * np.sin(angle))
        draw.line(list(zip(xs, ys, strict=True)), fill=int(rng.uniform(150, 230)),
                  width=int(rng.integers(1, 4)))  # fmt: skip
        blur = rng.uniform(0.3, 1.2)
    elif kind == "smear":
        ry, rx = rng.uniform(8, 28), rng.uniform(8, 28)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.uniform(90, 170)))
        blur = rng.uniform(3, 8)
    else:
        raise ValueError(f"unknown debris kind {kind!r}; use one of {', '.join(KINDS)}")
    alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(blur)), np.float32)[..., None] / 255
    colour = np.array([70, 35, 110], np.float32) + rng.normal(0, 15, 3)  # dark violet
    out = background.astype(np.float32) * (1 - alpha) + colour * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def background_point(
    shape: tuple[int, int], taken: list[tuple[float, float]], away: float, rng, tries: int = 30
) -> tuple[float, float] | None:
    """A point of a field of `shape` at least `away` px from every point `taken` and from
    the border, or None when none was found in `tries` draws."""
    h, w = shape
    if min(h, w) < away:
        return None
    for _ in range(tries):
        y, x = rng.uniform(away / 2, h - away / 2), rng.uniform(away / 2, w - away / 2)
        if all(np.hypot(y - ty, x - tx) >= away for ty, tx in taken):
            return float(y), float(x)
    return None
