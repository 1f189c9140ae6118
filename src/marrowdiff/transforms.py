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

from marrowdiff.preprocess import Geometry, resize_patch, white_balance

__all__ = ["Geometry", "resize_patch", "white_balance"]  # re-exported: they started here

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


class PatchBank:
    """All patches of a split resized onto padded canvases: (N, 3, C + 2P, C + 2P) uint8."""

    def __init__(self, images: list[np.ndarray], geometry: Geometry):
        self.geometry = geometry
        c, p = geometry.canvas, geometry.pad
        bank = np.empty((len(images), 3, c + 2 * p, c + 2 * p), dtype=np.uint8)
        for i, image in enumerate(images):
            square = resize_patch(image, c)
            if geometry.white_balance:
                square = white_balance(square)
            bank[i] = np.pad(square, ((p, p), (p, p), (0, 0)), mode="reflect").transpose(2, 0, 1)
        self.canvases = torch.from_numpy(bank)

    def __len__(self) -> int:
        return len(self.canvases)

    def views(self, items: np.ndarray) -> torch.Tensor:
        """(B, 4) items [index, dy, dx, d4] -> (B, 3, S, S) uint8 windows."""
        g = self.geometry
        s, base = g.input_size, g.pad + (g.canvas - g.input_size) // 2
        out = torch.empty((len(items), 3, s, s), dtype=torch.uint8)
        for row, (i, dy, dx, k) in enumerate(np.asarray(items, dtype=np.int64)):
            window = self.canvases[i, :, base + dy : base + dy + s, base + dx : base + dx + s]
            out[row] = d4(window, int(k))
        return out

    def centre(self, indices=None) -> torch.Tensor:
        """The unshifted, unturned view of each patch (all when indices is None)."""
        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        return self.views(np.stack([indices, *np.zeros((3, len(indices)), np.int64)], axis=1))


# ---------------------------------------------------------------------------------------------
# Data recipes


@dataclass(frozen=True)
class Recipe:
    name: str
    augment: bool  # the 8 rotations/flips
    oversample: int  # images per class per epoch (0: the original counts)
    random: bool = False  # draw fresh shifts and views every epoch (the fast default)

    def items(self, labels: np.ndarray, geometry: Geometry, seed: int, epoch: int) -> np.ndarray:
        """(M, 4) items [index, dy, dx, d4] of one epoch, shuffled."""
        rng = np.random.default_rng([seed, epoch if self.random else 0])
        shift = geometry.pad
        base = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            n = self.oversample or len(members)
            if n <= len(members):
                chosen = members if n == len(members) else rng.choice(members, n, replace=False)
                rows = _unshifted(chosen)
                if self.random:
                    rows[:, 1:] = _nonzero_shifts(rng, n, shift)
            else:  # originals plus re-crops at jittered centres, never a copy of an original
                extra = _recrops(rng, members, n - len(members), shift)
                rows = np.concatenate([_unshifted(members), extra])
            base.append(rows)
        base = np.concatenate(base)
        if self.augment and not self.random:
            items = np.concatenate(
                [np.column_stack([base, np.full(len(base), k)]) for k in range(8)]
            )
        else:
            views = rng.integers(0, 8, len(base)) if self.augment else np.zeros(len(base), int)
            items = np.column_stack([base, views])
        order = np.random.default_rng([seed, epoch, 1]).permutation(len(items))
        return items[order].astype(np.int64)


def _unshifted(indices: np.ndarray) -> np.ndarray:
    """(n, 3) [index, 0, 0]: the patches at their own centres."""
    return np.stack([indices, np.zeros_like(indices), np.zeros_like(indices)], axis=1)


def _recrops(rng: np.random.Generator, members: np.ndarray, n: int, shift: int) -> np.ndarray:
    """(n, 3) [index, dy, dx] re-crops of `members` with non-zero shifts, all distinct while
    there are enough (each patch has (2 shift + 1)^2 - 1 of them)."""
    side = 2 * shift + 1
    per_patch = side * side - 1
    if per_patch == 0:
        return _unshifted(rng.choice(members, n))
    total = len(members) * per_patch
    pick = rng.choice(total, n, replace=n > total)
    offset = pick % per_patch
    offset = offset + (offset >= per_patch // 2)  # skip the centre, (0, 0)
    return np.stack(
        [members[pick // per_patch], offset // side - shift, offset % side - shift], axis=1
    )


def _nonzero_shifts(rng: np.random.Generator, n: int, shift: int) -> np.ndarray:
    """(n, 2) integer shifts in [-shift, shift]^2 other than (0, 0)."""
    if shift == 0:
        return np.zeros((n, 2), np.int64)
    out = rng.integers(-shift, shift + 1, (n, 2))
    zero = (out == 0).all(axis=1)
    while zero.any():
        out[zero] = rng.integers(-shift, shift + 1, (int(zero.sum()), 2))
        zero = (out == 0).all(axis=1)
    return out


RECIPES = {
    r.name: r
    for r in [
        Recipe("original", augment=False, oversample=0),
        Recipe("augmented", augment=True, oversample=0),
        Recipe("oversampled-300", augment=False, oversample=300),
        Recipe("oversampled-600", augment=False, oversample=600),
        Recipe("augmented+oversampled-300", augment=True, oversample=300),
        Recipe("augmented+oversampled-600", augment=True, oversample=600),
        # The fast default: every epoch a fresh class-balanced draw of re-crops and views.
        Recipe("balanced-random", augment=True, oversample=100, random=True),
    ]
}
TABLE1_RECIPES = [name for name in RECIPES if name != "balanced-random"]


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]
