"""Patches -> network input: geometry, colour space, normalisation, D4 views and data recipes.

Geometry: every patch is resized once so that its side maps to `canvas` px, reflect-padded by
the largest shift, and kept in a uint8 `PatchBank`. An *item* (index, dy, dx, d4) is one view:
the `input_size` window centred (dy, dx) px from the patch centre, turned by one of the 8
rotations/flips. Recipes (the paper's Table 1 and the default) are lists of items per epoch,
computed from (seed, epoch) alone: oversampling is a view, never files, and every process of a
distributed run can take its own shard of the same list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from marrowdiff.preprocess import Geometry, canvas

# RGB -> YUV as Torch7's image.rgb2yuv (BT.601), which the paper used.
RGB_TO_YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]]
)


@dataclass(frozen=True)
class Normalisation:
    colour: str  # "yuv" or "rgb"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"colour": self.colour, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalisation:
        return cls(d["colour"], tuple(d["mean"]), tuple(d["std"]))


def to_colour(x: torch.Tensor, colour: str) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> the colour space the model was trained in."""
    if colour == "rgb":
        return x
    if colour == "yuv":
        return torch.einsum("ij,bjhw->bihw", RGB_TO_YUV.to(x.dtype), x)
    raise ValueError(f"unknown colour space {colour!r}; use 'yuv' or 'rgb'")


def fit_normalisation(images: torch.Tensor, colour: str) -> Normalisation:
    """Per-channel mean and std of (N, 3, H, W) uint8 training images in `colour` space."""
    sums = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for chunk in images.split(256):
        x = to_colour(chunk.float() / 255.0, colour).double()
        sums += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // 3
    mean = sums / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return Normalisation(colour, tuple(mean.tolist()), tuple(std.tolist()))


def normalise(x: torch.Tensor, norm: Normalisation) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB -> normalised float input."""
    x = to_colour(x.float() / 255.0, norm.colour)
    mean = torch.tensor(norm.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def d4(x: torch.Tensor, k: int) -> torch.Tensor:
    """View k (0..7) of the dihedral group on the last two axes: rotate k % 4 quarter turns,
    then mirror left-right when k >= 4. View 0 is the identity."""
    y = torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def cut_views(canvas_of, items: np.ndarray, geometry: Geometry) -> torch.Tensor:
    """(B, 4) items [index, dy, dx, d4] -> (B, 3, S, S) uint8 windows, cut from the canvases
    that `canvas_of(index)` gives ((3, C + 2P, C + 2P) uint8)."""
    g = geometry
    s, base = g.input_size, g.pad + (g.canvas - g.input_size) // 2
    out = torch.empty((len(items), 3, s, s), dtype=torch.uint8)
    for row, (i, dy, dx, k) in enumerate(np.asarray(items, dtype=np.int64)):
        window = canvas_of(int(i))[:, base + dy : base + dy + s, base + dx : base + dx + s]
        out[row] = d4(window, int(k))
    return out


class PatchBank:
    """All patches of a split resized onto padded canvases: (N, 3, C + 2P, C + 2P) uint8."""

    def __init__(self, images: list[np.ndarray], geometry: Geometry):
        self.geometry = geometry
        side = geometry.canvas + 2 * geometry.pad
        bank = np.empty((len(images), 3, side, side), dtype=np.uint8)
        for i, image in enumerate(images):
            bank[i] = canvas(image, geometry).transpose(2, 0, 1)
        self.canvases = torch.from_numpy(bank)

    def __len__(self) -> int:
        return len(self.canvases)

    @classmethod
    def concatenate(cls, banks: list[PatchBank]) -> PatchBank:
        """One bank of several of the same geometry, in order."""
        out = cls([], banks[0].geometry)
        out.canvases = torch.cat([b.canvases for b in banks])
        return out

    def canvas(self, i: int) -> torch.Tensor:
        return self.canvases[i]

    def views(self, items: np.ndarray) -> torch.Tensor:
        """(B, 4) items [index, dy, dx, d4] -> (B, 3, S, S) uint8 windows."""
        return cut_views(self.canvas, items, self.geometry)

    def centre(self, indices=None) -> torch.Tensor:
        """The unshifted, unturned view of each patch (all when indices is None)."""
        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        return self.views(np.stack([indices, *np.zeros((3, len(indices)), np.int64)], axis=1))
