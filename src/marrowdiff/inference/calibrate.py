"""`marrowdiff calibrate`: fit (or refit) a trained run's calibration on its validation cells,
through the same `TorchModel` every command predicts with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marrowdiff.calibration import MODES, TARGET_ACCURACY, calibrate_modes
from marrowdiff.inference.predict import TorchModel, in_chunks
from marrowdiff.run import CheckpointError, load_checkpoint


def calibrate_run(
    run: str | Path,
    data: str | Path | None = None,
    target: float = TARGET_ACCURACY,
    log=print,
    progress: bool = False,
) -> dict:
    """Fit (or refit) a run's calibration on its validation split and store it in model.pt."""
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
    checkpoint.with_state(calibration=calibration).save()
    return calibration
