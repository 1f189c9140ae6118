"""Data recipes: the items (patch, shift, rotation/flip) each training epoch sees.

A recipe turns the training labels into a shuffled (M, 4) array of items [index, dy, dx, d4],
computed from (seed, epoch) alone: oversampling is a view, never files, and every process of a
distributed run can take its own shard of the same list. The six recipes of the paper's Table 1
are here by name, with the fast default `balanced-random`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marrowdiff.preprocess import Geometry


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
