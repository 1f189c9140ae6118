"""Patches -> training views: canvases kept in a bank, D4 views cut from them.

Geometry: every patch is resized once so that its side maps to `canvas` px, reflect-padded by
the largest shift, and kept in a uint8 `PatchBank`. An *item* (index, dy, dx, d4) is one view:
the `input_size` window centred (dy, dx) px from the patch centre, turned by one of the 8
rotations/flips (`recipes.py` says which items an epoch draws).
"""

from __future__ import annotations

import numpy as np
import torch

from marrowdiff.preprocess import Geometry, canvas


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
