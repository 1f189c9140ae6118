"""`marrowdiff calibrate`: fit (or refit) a trained run's calibration on its validation cells,
through the same `TorchModel` every command predicts with, and its domain reference (which a
model trained before marrowdiff kept one gets this way)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marrowdiff.calibration import MODES, TARGET_ACCURACY, calibrate_modes
from marrowdiff.cellsize import spread
from marrowdiff.domain import bank_sample
from marrowdiff.inference.predict import TorchModel, in_chunks
from marrowdiff.inference.reference import fit_references
from marrowdiff.preprocess import centre_views, square
from marrowdiff.run import CheckpointError, load_checkpoint


def calibrate_run(
    run: str | Path,
    data: str | Path | None = None,
    target: float = TARGET_ACCURACY,
    log=print,
    progress: bool = False,
    mpp: float | None = None,
) -> dict:
    """Fit (or refit) a run's calibration on its validation split, and its references of its
    training cells (domain, stain, size; `mpp`: its images' microns per pixel, kept if not
    given), and store them in model.pt."""
    checkpoint = load_checkpoint(run)
    if checkpoint.fold == -1:
        raise CheckpointError(
            f"{checkpoint.path} was trained on all of train-validation (fold -1): no "
            "validation cells are left to calibrate on"
        )
    dataset = checkpoint.dataset(data)
    splits = checkpoint.splits(dataset)
    _, val = checkpoint.cells(splits)
    if not val:
        raise CheckpointError(f"{checkpoint.path}: no validation cells of its classes")
    model = TorchModel.from_checkpoint(checkpoint)
    labels = splits.label_indices(val, model.classes)

    def every_mode(images: list[np.ndarray]) -> np.ndarray:
        return np.stack([model.logits(images, tta) for tta in MODES.values()], axis=1)

    stacked = in_chunks(dataset.load_paths, val, every_mode, progress=progress, desc="val")
    logits = {mode: stacked[:, k] for k, mode in enumerate(MODES)}
    calibration = calibrate_modes(logits, labels, target, log)
    train, _ = splits.fold(checkpoint.fold)  # every training cell: other classes' too
    sample = [train[i] for i in bank_sample(len(train), checkpoint.config.train.seed)]

    def windows(paths: list[str]):
        for i in range(0, len(paths), 256):
            yield centre_views(dataset.load_paths(paths[i : i + 256]), model.geometry)

    mpp = mpp or (checkpoint.size.mpp if checkpoint.size else None)
    squares = [square(x, model.geometry) for x in dataset.load_paths(spread(sample))]
    references = fit_references(model, windows(sample), windows(val), squares, mpp)
    domain = references.domain
    log(
        f"domain reference: {len(domain.bank)} training cells; {domain.expected:.1%} of "
        f"{len(val)} validation cells lie beyond its threshold"
    )
    checkpoint.with_state(calibration=calibration, **references.to_state()).save()
    return calibration
