"""How large the cells of a set of images are, against the model's training cells: the scale
check and the `--rescale auto` factor. Pure numpy, SciPy and scikit-image.

A cell's size is the equivalent diameter of the stained blob nearest the centre of its patch
as the model resizes it (`preprocess.square`: the whole patch, not the smaller input window, so
that an enlarged cell is not cut off): haematoxylin density (colour deconvolution), smoothed,
above its Otsu level, closed and filled. One cell's figure depends on its type (a blast's
nucleus is larger than a neutrophil's lobes), so only the median over many cells is compared:
the model records its training cells' median (`SizeReference`), and a count or classify
compares its own cells' median with it. A ratio outside `ALIKE` means the images were taken at
another magnification (or framed otherwise); `--rescale auto` then frames every cell so that
it has the training cells' size (a count crops a larger or smaller square around each cell, a
classify takes a patch's centre or sets the patch on its background), and `--mpp` does so
from the microns per pixel of both, when the model knows its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from marrowdiff.stain import haematoxylin

ALIKE = (0.8, 1.25)  # size ratios (input / training) taken as the same scale
LIMITS = (0.4, 2.5)  # the largest rescaling `--rescale auto` applies
SAMPLE = 200  # cells a set's median is measured on


def cell_diameter(image: np.ndarray) -> float:
    """Equivalent diameter, px, of the stained blob nearest the centre of an (H, W, 3) uint8
    RGB image; NaN when nothing is stained."""
    h = ndi.gaussian_filter(haematoxylin(image), 1.0)
    if float(h.max()) - float(h.min()) < 1e-3:
        return float("nan")
    mask = ndi.binary_fill_holes(ndi.binary_closing(h > threshold_otsu(h), iterations=2))
    labels, n = ndi.label(mask)
    if not n:
        return float("nan")
    cy, cx = (s // 2 for s in mask.shape)
    nearest = ndi.distance_transform_edt(labels == 0, return_indices=True)[1]
    blob = labels[nearest[0, cy, cx], nearest[1, cy, cx]]
    return float(2 * np.sqrt((labels == blob).sum() / np.pi))


def spread(items: list, n: int = SAMPLE) -> list:
    """At most `n` of `items`, evenly spaced over them (every class of a sorted list)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def median_diameter(images: list[np.ndarray]) -> float:
    """Median `cell_diameter` of (H, W, 3) uint8 images (NaN if none is measurable)."""
    sizes = [cell_diameter(image) for image in images]
    finite = [s for s in sizes if np.isfinite(s)]
    return float(np.median(finite)) if finite else float("nan")


@dataclass(frozen=True)
class SizeReference:
    """The model's training cells' scale: their median diameter in its resized patches
    (`preprocess.square`), and the microns per pixel of its training images when the person
    who trained it gave them."""

    diameter: float  # px of the resized patch
    cells: int  # how many training windows it was measured on
    mpp: float | None = None  # microns per pixel of the training images (`train --mpp`)

    def to_dict(self) -> dict:
        return {"diameter": self.diameter, "cells": self.cells, "mpp": self.mpp}

    @classmethod
    def from_dict(cls, d: dict) -> SizeReference:
        """Raises ValueError (or KeyError, TypeError) on a reference that does not read."""
        diameter, mpp = float(d["diameter"]), d.get("mpp")
        if not diameter > 0 or (mpp is not None and not float(mpp) > 0):
            raise ValueError("a size reference needs a diameter and microns per pixel above 0")
        return cls(diameter, int(d["cells"]), None if mpp is None else float(mpp))


def size_from_dict(d: dict | None) -> SizeReference | None:
    return SizeReference.from_dict(d) if d else None


@dataclass(frozen=True)
class Scale:
    """The scale a set of images was read at: the factor each image was resized by, why, and
    the cell sizes that were compared."""

    factor: float = 1.0  # each image was resized by this before anything else
    source: str = "none"  # "none", "mpp" (--mpp) or "cell size" (--rescale auto)
    input_diameter: float | None = None  # median cell diameter, resized-patch px, as read
    training_diameter: float | None = None

    @property
    def ratio(self) -> float | None:
        """Input cells' median size over the training cells' (None if not measured)."""
        if self.input_diameter is None or not self.training_diameter:
            return None
        return self.input_diameter / self.training_diameter

    def to_dict(self) -> dict:
        ratio = self.ratio
        return {
            "factor": round(self.factor, 4),
            "source": self.source,
            "input_cell_diameter": _rounded(self.input_diameter),
            "training_cell_diameter": _rounded(self.training_diameter),
            "size_ratio": None if ratio is None else round(ratio, 3),
        }

    def warning(self) -> str:
        """What a report says when the cells were read at another scale than the training
        cells' and nothing corrected it ("" otherwise)."""
        ratio = self.ratio
        if self.source != "none" or ratio is None or ALIKE[0] <= ratio <= ALIKE[1]:
            return ""
        return (
            f"the cells are {ratio:.2f} times the size of the model's training cells (median "
            f"diameter {self.input_diameter:.0f} against {self.training_diameter:.0f} px of its "
            "resized patches): the images are at another magnification; give their microns "
            "per pixel (--mpp) or let marrowdiff frame them to it (--rescale auto)"
        )


def _rounded(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 1)


def rescale_factor(input_diameter: float, reference: SizeReference) -> float:
    """The resize that brings cells of `input_diameter` to the training cells' size, within
    `LIMITS` (1.0 when the input's size is not known)."""
    if not np.isfinite(input_diameter) or input_diameter <= 0:
        return 1.0
    return float(np.clip(reference.diameter / input_diameter, *LIMITS))


def reframed(image: np.ndarray, factor: float) -> np.ndarray:
    """A single-cell patch whose cell will look `factor` times as large in the model's window:
    its centred 1/factor (factor > 1), or the patch on a background of its border's median
    colour, 1/factor of its side (factor < 1). The model resizes every patch to its
    window, so a patch's framing, not its pixel count, sets the cell's size there."""
    if abs(factor - 1.0) < 1e-3:
        return image
    h, w = image.shape[:2]
    if factor > 1:
        ch, cw = max(1, round(h / factor)), max(1, round(w / factor))
        top, left = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(image[top : top + ch, left : left + cw])
    py, px = round(h * (1 / factor - 1) / 2), round(w * (1 / factor - 1) / 2)
    edge = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    out = np.empty((h + 2 * py, w + 2 * px, 3), np.uint8)
    out[:] = np.median(edge, axis=0).astype(np.uint8)  # the slide's background around it
    out[py : py + h, px : px + w] = image
    return out
