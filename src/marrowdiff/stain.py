"""Stain: the haematoxylin density that detection and the size check threshold, and stain
normalisation at inference (an option): Reinhard et al. 2001, each input window's colours moved
to the model's training windows' in CIELAB. Pure numpy and scikit-image.

A window's L*, a* and b* channels are standardised (its own mean and standard deviation) and
given the training windows' mean and standard deviation (`StainReference`, the average of
per-window statistics over a sample of training cells, recorded in the model). Measured on the
leave-one-source-out benchmark (docs/BENCHMARKS.md, "Another laboratory's cells"); it is off by
default (`--normalise-stain reinhard` turns it on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import lab2rgb, rgb2hed, rgb2lab

METHODS = ("none", "reinhard")
_WHITE = float(rgb2hed(np.full((1, 1, 3), 255, np.uint8))[0, 0, 0])  # a white pixel's


def haematoxylin(image: np.ndarray) -> np.ndarray:
    """(H, W) haematoxylin optical density of an RGB uint8 image (0 where there is none):
    Ruifrok and Johnston's colour deconvolution (`skimage.color.rgb2hed`)."""
    return np.clip(rgb2hed(image)[..., 0] - _WHITE, 0, None)


@dataclass(frozen=True)
class StainReference:
    """The training windows' colour statistics in CIELAB (L*, a*, b*)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"method": "reinhard-lab", "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> StainReference:
        """Raises ValueError (or KeyError, TypeError) on a reference that does not read."""
        if d.get("method") != "reinhard-lab":
            raise ValueError(f"unknown stain reference {d.get('method')!r}")
        mean, std = (tuple(float(v) for v in d[k]) for k in ("mean", "std"))
        if len(mean) != 3 or len(std) != 3 or not all(np.isfinite([*mean, *std])):
            raise ValueError("a stain reference needs 3 finite means and 3 finite stds")
        if min(std) <= 0:
            raise ValueError("a stain reference's standard deviations must be above 0")
        return cls(mean, std)  # type: ignore[arg-type]


def stain_from_dict(d: dict | None) -> StainReference | None:
    return StainReference.from_dict(d) if d else None


def lab_statistics(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) per-window means and (N, 3) standard deviations of L*, a*, b* of (N, 3, S, S)
    uint8 RGB windows."""
    lab = rgb2lab(windows.transpose(0, 2, 3, 1))
    return lab.mean(axis=(1, 2)), lab.std(axis=(1, 2))


def fit_stain(means: np.ndarray, stds: np.ndarray) -> StainReference:
    """The reference of training windows from their (N, 3) `lab_statistics`: the averages."""
    if not len(means):
        raise ValueError("a stain reference needs some training windows")
    return StainReference(tuple(means.mean(0).tolist()), tuple(stds.mean(0).tolist()))


@dataclass(frozen=True)
class ColourShift:
    """How far a set of cells' colours are from the training cells': the mean L*a*b* of their
    input windows against the training windows', and the CIE76 colour difference between the
    two means (about 2 is just noticeable; a change of stain batch or lamp is tens)."""

    input_mean: tuple[float, float, float]
    training_mean: tuple[float, float, float]

    @property
    def delta_e(self) -> float:
        return float(np.linalg.norm(np.subtract(self.input_mean, self.training_mean)))

    def to_dict(self) -> dict:
        return {
            "input_lab_mean": [round(v, 1) for v in self.input_mean],
            "training_lab_mean": [round(v, 1) for v in self.training_mean],
            "delta_e": round(self.delta_e, 1),
        }

    def phrase(self) -> str:
        lab = lambda m: "/".join(f"{v:.0f}" for v in m)  # noqa: E731
        return (
            f"colour: mean L*a*b* {lab(self.input_mean)} against {lab(self.training_mean)} "
            f"for the training cells (difference {self.delta_e:.0f})"
        )


def colour_shift(windows: np.ndarray, reference: StainReference) -> ColourShift | None:
    """The colour shift of (N, 3, S, S) uint8 input windows (None for none)."""
    if not len(windows):
        return None
    means, _ = lab_statistics(windows)
    return ColourShift(tuple(means.mean(0).tolist()), reference.mean)


def reinhard(windows: np.ndarray, reference: StainReference) -> np.ndarray:
    """(N, 3, S, S) uint8 RGB windows with their CIELAB statistics moved to the reference's."""
    if not len(windows):
        return windows
    lab = rgb2lab(windows.transpose(0, 2, 3, 1))
    mean = lab.mean(axis=(1, 2), keepdims=True)
    std = np.maximum(lab.std(axis=(1, 2), keepdims=True), 1e-6)
    moved = (lab - mean) / std * np.asarray(reference.std) + np.asarray(reference.mean)
    moved[..., 0] = np.clip(moved[..., 0], 0, 100)  # L* outside 0..100 is no colour
    rgb = lab2rgb(moved)  # clips out-of-gamut colours into [0, 1]
    return np.ascontiguousarray(
        (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 3, 1, 2)
    )
