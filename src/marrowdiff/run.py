"""A run folder and its checkpoints: the one module that names their files and reads their schema.

    RUN/model.pt      the trained model: a checkpoint (below), written at the end of training
    RUN/last.pt       the last finished epoch, with optimiser state, for `--resume`
    RUN/config.json   the resolved RunConfig
    RUN/splits.json   the splits it was trained on (`splits.Splits`)
    RUN/history.csv   one row per epoch; curves.png draws it
    RUN/audit/        when the run audited and split its data set itself

A checkpoint (format `marrowdiff.checkpoint/2`; /1 files still load) is one `torch.save`d dict
that describes itself: the weights of the unwrapped model (`state_dict`), the resolved config,
the class codes in output order, the vocabulary, the input normalisation, the data it was
trained on (source, fingerprint, fold, sizes), the calibration, the domain reference (what its
training cells look like to it, `domain.py`) and metrics; loading needs nothing else.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from marrowdiff.calibration import Calibration, calibrations_from_dict
from marrowdiff.cellsize import SizeReference, size_from_dict
from marrowdiff.classes import Vocabulary
from marrowdiff.config import RunConfig
from marrowdiff.data.datasets import Dataset, DatasetError, open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.domain import DomainReference, domain_from_dict
from marrowdiff.errors import UserError
from marrowdiff.fileio import write_bytes
from marrowdiff.stain import StainReference, stain_from_dict

MODEL = "model.pt"
LAST = "last.pt"
CONFIG = "config.json"
HISTORY = "history.csv"
CURVES = "curves.png"
FORMAT = "marrowdiff.checkpoint/2"  # /2: `weights_sha256`, checked on every load
FORMATS = ("marrowdiff.checkpoint/1", FORMAT)  # /1 files (no checksum) still load
# Keys every checkpoint has; `state_dict` holds the weights, the rest describes them.
REQUIRED = ("config", "classes", "vocabulary", "normalisation", "data", "state_dict")
TRAINING_STATE = ("state_dict", "optimizer", "scheduler", "averaged")  # not metadata


class CheckpointError(UserError, ValueError):
    """A file that is not a readable marrowdiff checkpoint, or a run folder that cannot be used
    as asked; the message names the file."""


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a user means by `path`: a run folder's model.pt, or the file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint; give a run folder from `marrowdiff train` or a .pt file"
        )
    return path


def weights_sha256(weights: dict) -> str:
    """sha256 of a state dict's tensors: names, dtypes, shapes and bytes, in name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        flat = tensor.contiguous().reshape(-1)  # a 0-d tensor (a counter) too
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically (a reader sees the old file or the new one, never half of one), with the
    checksum of its weights that loading verifies."""
    import torch

    state = state | {"format": FORMAT, "weights_sha256": weights_sha256(state["state_dict"])}
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def load_state(path: str | Path) -> dict:
    """The raw dict of a checkpoint file, loaded safely (weights_only) and checked."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_first_line(error)}); "
            "give a model.pt from `marrowdiff train` or train again"
        ) from None
    if not isinstance(state, dict) or state.get("format") not in FORMATS:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a marrowdiff checkpoint (format {found!r})")
    stored = state.get("weights_sha256")
    if state["format"] == FORMAT and (
        not isinstance(state.get("state_dict"), dict)
        or stored != weights_sha256(state["state_dict"])
    ):
        raise CheckpointError(
            f"{path}: damaged: its weights do not match the checksum written with them; "
            "restore the file from a copy or train again"
        )
    return state


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint, with typed access to what it says about itself."""

    path: Path
    state: dict

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.state["config"])

    @property
    def classes(self) -> list[str]:
        return list(self.state["classes"])

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary.from_dict(self.state["vocabulary"])

    @property
    def normalisation(self):
        from marrowdiff.normalisation import Normalisation

        return Normalisation.from_dict(self.state["normalisation"])

    @property
    def fold(self) -> int:
        return int(self.state["data"]["fold"])

    @property
    def calibrations(self) -> dict[str, Calibration]:
        """ "plain" and "tta" calibrations ({} before calibration)."""
        return calibrations_from_dict(self.state.get("calibration"))

    @property
    def domain(self) -> DomainReference | None:
        """What its training cells look like to it (None: trained before marrowdiff kept one;
        `marrowdiff calibrate RUN` adds it)."""
        return domain_from_dict(self.state.get("domain"))

    @property
    def stain(self) -> StainReference | None:
        """Its training windows' colours, for stain normalisation (None: trained before
        marrowdiff kept them; `marrowdiff calibrate RUN` adds them)."""
        return stain_from_dict(self.state.get("stain"))

    @property
    def size(self) -> SizeReference | None:
        """Its training cells' median size (and microns per pixel, if given)."""
        return size_from_dict(self.state.get("size"))

    @property
    def metadata(self) -> dict:
        """Everything but the weights and the optimiser's state."""
        return {k: v for k, v in self.state.items() if k not in TRAINING_STATE}

    @property
    def folder(self) -> Path:
        return self.path.parent

    def splits(self, dataset: Dataset | None = None) -> Splits:
        """The splits the run was trained on, from the run folder (with its `dataset`, sharing
        the records' path strings)."""
        path = self.folder / Splits.FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the run's splits are missing; cannot find its training and "
                "validation cells (keep the run folder from `marrowdiff train` whole)"
            )
        return Splits.read(path, dataset)

    def dataset(self, data: str | Path | None = None) -> Dataset:
        """The data set it was trained on (or `data`, which must list the same files)."""
        dataset = open_dataset(data or self.state["data"]["source"], self.vocabulary)
        if dataset.fingerprint != self.state["data"]["fingerprint"]:
            raise DatasetError(
                f"{dataset.source} is not the data set {self.path} was trained on (its "
                "listing differs); give that data set with --data"
            )
        return dataset

    def cells(self, splits: Splits | None = None) -> tuple[list[str], list[str]]:
        """(train, val) paths of the run's fold, of its own classes (a local model has few)."""
        splits = splits or self.splits()
        train, val = splits.fold(self.fold)
        return splits.of_classes(train, self.classes), splits.of_classes(val, self.classes)

    def with_state(self, **changes) -> Checkpoint:
        return Checkpoint(self.path, self.state | changes)

    def save(self) -> None:
        save_checkpoint(self.path, self.state)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A run folder's model.pt or a checkpoint file, checked for every key it must have."""
    path = checkpoint_file(path)
    state = load_state(path)
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: a damaged checkpoint, without {', '.join(missing)}")
    checkpoint = Checkpoint(path, state)
    _check_description(checkpoint)
    return checkpoint


def _check_description(checkpoint: Checkpoint) -> None:
    """Every piece a model is built from reads as what it must be (the weights' checksum does
    not cover them): a CheckpointError naming the file, never a TypeError later."""
    try:
        config, classes = checkpoint.config, checkpoint.classes
        if not classes or not all(isinstance(c, str) for c in classes):
            raise TypeError("`classes` is not a list of class codes")
        for piece in (
            "vocabulary",
            "normalisation",
            "calibrations",
            "domain",
            "stain",
            "size",
            "fold",
        ):
            getattr(checkpoint, piece)  # each property parses its part of the state
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        what = f"no {error}" if isinstance(error, KeyError) else _first_line(error)
        raise CheckpointError(
            f"{checkpoint.path}: a damaged checkpoint: its description does not read ({what}); "
            "restore the file from a copy or train again"
        ) from None
    if len(classes) != config.model.num_classes:
        raise CheckpointError(
            f"{checkpoint.path}: {len(classes)} class names for {config.model.num_classes} "
            "outputs; the file is damaged: train again"
        )
