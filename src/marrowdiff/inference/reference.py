"""A trained model's references of its training cells: the domain reference (`domain.py`: their
features, and the threshold its held-out cells set), the stain reference (`stain.py`: their
colours) and the size reference (`cellsize.py`: their median diameter). Written into model.pt
at the end of training and by `marrowdiff calibrate` (which adds them to a model trained before
marrowdiff kept them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from marrowdiff.cellsize import SizeReference, median_diameter
from marrowdiff.domain import DomainReference, fit_reference
from marrowdiff.inference.predict import Model, ModelError
from marrowdiff.stain import StainReference, fit_stain, lab_statistics

# The checkpoint's (and the ONNX metadata's) keys of the references.
KEYS = ("domain", "stain", "size")


@dataclass(frozen=True)
class References:
    """What a model records of its training cells, beside its weights."""

    domain: DomainReference
    stain: StainReference
    size: SizeReference | None  # None when no training cell's size could be measured

    def to_state(self) -> dict:
        """The checkpoint's entries, one per key of `KEYS`."""
        return {
            "domain": self.domain.to_dict(),
            "stain": self.stain.to_dict(),
            "size": None if self.size is None else self.size.to_dict(),
        }


def window_features(model: Model, chunks: Iterable[np.ndarray]) -> np.ndarray:
    """(N, D) penultimate features of (B, 3, S, S) uint8 input windows, chunk by chunk."""
    return _features_and_colours(model, chunks)[0]


def _features_and_colours(model: Model, chunks: Iterable[np.ndarray]):
    """(N, D) features and (N, 3) LAB means and stds of windows, chunk by chunk."""
    parts, means, stds = [], [], []
    for windows in chunks:
        _, features = model.window_outputs(windows)
        if features is None:
            raise ModelError(f"{model.source}: the model gives no features to compare cells by")
        parts.append(features)
        mean, std = lab_statistics(windows)
        means.append(mean)
        stds.append(std)
    if not parts:
        return np.zeros((0, 0), np.float32), np.zeros((0, 3)), np.zeros((0, 3))
    return np.concatenate(parts), np.concatenate(means), np.concatenate(stds)


def fit_references(
    model: Model,
    train: Iterable[np.ndarray],
    held_out: Iterable[np.ndarray] | None,
    squares: list[np.ndarray],
    mpp: float | None = None,
) -> References:
    """The domain, stain and size references of `model` from the centre windows of a sample of
    its training cells (`domain.bank_sample`) and of its held-out (validation) cells, None for
    a run without, and the resized patches (`preprocess.square`) of a few hundred training
    cells (`cellsize.spread`); `mpp`: the training images' microns per pixel, if known. No
    size reference when no training cell's size could be measured."""
    features, means, stds = _features_and_colours(model, train)
    held_out_features = None if held_out is None else window_features(model, held_out)
    diameter = median_diameter(squares)
    size = SizeReference(diameter, len(squares), mpp) if diameter > 0 else None
    return References(fit_reference(features, held_out_features), fit_stain(means, stds), size)
