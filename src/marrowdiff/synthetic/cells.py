"""Synthetic, smear-like cell images for tests and benchmarks (no real image is ever committed).

A "cell" is a textured cytoplasm disc with a darker textured nucleus on a pale background with a
few red-cell discs; its texture comes from the random generator, so two cells drawn with the
same parameters look alike but are different cells, as in a real smear.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def synthetic_cell(
    rng: np.random.Generator,
    size: int = 144,
    radius: float | None = None,
    nucleus: float = 0.6,
    hue: float = 0.0,
) -> np.ndarray:
    """(size, size, 3) uint8 image of one cell centred in the patch.

    `radius` is the cell radius in px (default size/4), `nucleus` the nucleus:cell radius
    ratio, `hue` in [-1, 1] shifts the stain from reddish to bluish.
    """
    radius = radius or size / 4
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    background = np.array([235, 215, 205], np.float32) + rng.normal(0, 6, 3)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    for _ in range(rng.integers(2, 6)):  # red cells around the target cell
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(0.6, 0.9) * radius
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
        image[disc] = np.array([220, 160, 160]) + rng.normal(0, 4, 3)
    c = size / 2
    wobble = 1 + 0.08 * np.sin(3 * np.arctan2(yy - c, xx - c) + rng.uniform(0, 6.3))
    dist = np.hypot(yy - c, xx - c) / wobble
    texture = ndi.gaussian_filter(rng.normal(0, 1, (size, size)), 1.2).astype(np.float32)
    texture /= texture.std() + 1e-6
    cytoplasm = dist < radius
    cyto_colour = np.array([185 - 25 * hue, 160, 205 + 20 * hue], np.float32)
    image[cytoplasm] = cyto_colour + 10 * texture[cytoplasm, None]
    off = rng.normal(0, radius * 0.12, 2)
    ndist = np.hypot(yy - c - off[0], xx - c - off[1]) / wobble
    core = ndist < radius * nucleus
    nuc_colour = np.array([110 - 20 * hue, 60, 140 + 20 * hue], np.float32)
    image[core] = nuc_colour + 22 * texture[core, None]
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def recrop(image: np.ndarray, dy: int, dx: int, size: int) -> np.ndarray:
    """A size x size crop centred (dy, dx) px away from the image centre (reflect-padded)."""
    h, w = image.shape[:2]
    pad = size // 2 + max(abs(dy), abs(dx)) + 1
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    top = pad + h // 2 + dy - size // 2
    left = pad + w // 2 + dx - size // 2
    return padded[top : top + size, left : left + size].copy()
