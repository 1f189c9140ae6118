"""Trained models behind one interface: cell patches in, calibrated class probabilities out.

Every command that predicts (evaluate, calibrate, classify, count, the review station, export's
checks) goes through `Model`, with one preprocessing path (`preprocess.centre_views`) and one
test-time augmentation; a `Classifier` adds the dual-stage refinement and the "unsure" flag.
Two backends: `TorchModel` (a run folder, a checkpoint, or a module being trained) and
`OnnxModel` (an exported file). The ONNX path never imports PyTorch: a laboratory PC needs only
onnxruntime, numpy, Pillow and scikit-image.

A model that carries a domain reference (`domain.py`) also says, per cell, how far the cell is
from its training cells (`Predictions.distance`); `Classifier.check` turns a set of distances
into the domain check a report heads with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.special import log_softmax
from tqdm import tqdm

from marrowdiff.calibration import Calibration, calibrations_from_dict
from marrowdiff.cellsize import SizeReference, size_from_dict
from marrowdiff.classes import Vocabulary
from marrowdiff.domain import DomainCheck, DomainReference, check_cells, domain_from_dict
from marrowdiff.errors import UserError
from marrowdiff.inference.dualstage import check_locals, combine
from marrowdiff.preprocess import Geometry, centre_views, d4_numpy
from marrowdiff.stain import METHODS, StainReference, reinhard, stain_from_dict

ONNX_METADATA_KEY = "marrowdiff"


class ModelError(UserError, ValueError):
    """A model that cannot be trusted: a damaged file, or outputs that are not numbers."""


def graph_sha256(proto) -> str:
    """sha256 of an ONNX model's graph (nodes and weights; not the metadata that holds it)."""
    import hashlib

    return hashlib.sha256(proto.graph.SerializeToString()).hexdigest()


def metadata_sha256(meta: dict) -> str:
    """sha256 of marrowdiff's ONNX metadata (every key but this checksum), graph checksum
    included: so an edited description is caught as surely as an edited graph."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Model:
    """What every backend provides; a backend implements `forward` on (B, 3, S, S) uint8."""

    source: str
    classes: list[str]
    vocabulary: Vocabulary
    geometry: Geometry
    calibrations: dict[str, Calibration]  # "plain" and "tta"
    metadata: dict
    checksum: str = ""  # sha256 of the weights (a checkpoint's) or graph (an ONNX file's)
    domain: DomainReference | None = None  # what its training cells look like to it
    stain: StainReference | None = None  # its training windows' colours (stain.py)
    stain_method: str = "none"  # "reinhard": move each window's colours to `stain` first
    size: SizeReference | None = None  # its training cells' median size (cellsize.py)
    batch_size = 64

    def run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, 3, S, S) uint8 input windows -> (B, C) float64 logits and (B, D) penultimate
        features (None from a model exported without them)."""
        raise NotImplementedError

    def forward(self, windows: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) uint8 input windows -> (B, C) float64 logits."""
        return self.run(windows)[0]

    def calibration(self, tta: bool) -> Calibration:
        return self.calibrations.get("tta" if tta else "plain", Calibration())

    def window_outputs(
        self, windows: np.ndarray, tta: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) logits of input windows (with tta, the mean log-softmax over the 8
        rotations/flips of each window) and (N, D) features of the windows as they are."""
        out, features = [], []
        for start in range(0, len(windows), self.batch_size):
            x = windows[start : start + self.batch_size]
            logits, f = self.run(x)
            if tta:
                views = [log_softmax(logits, axis=1)]
                views += [log_softmax(self.forward(d4_numpy(x, k)), axis=1) for k in range(1, 8)]
                logits = np.mean(views, axis=0)
            out.append(logits)
            features.append(f)
        logits = np.concatenate(out) if out else np.zeros((0, len(self.classes)))
        bad = ~np.isfinite(logits).all(axis=1)
        if bad.any():
            raise ModelError(
                f"{self.source}: the model gave non-finite outputs for {int(bad.sum())} of "
                f"{len(logits)} cells, so no probability can be trusted; the model file is "
                "damaged (restore it, or export or train it again)"
            )
        if not features or any(f is None for f in features):
            return logits, None
        return logits, np.concatenate(features)

    def window_logits(self, windows: np.ndarray, tta: bool = False) -> np.ndarray:
        """(N, C) logits of input windows (`window_outputs`)."""
        return self.window_outputs(windows, tta)[0]

    def outputs(
        self, images: list[np.ndarray], tta: bool = False, distances: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) logits of (H, W, 3) uint8 RGB patches, preprocessed a batch at a time, and
        (N,) each cell's distance from the training cells (NaN without a domain reference, or
        when not asked for: the neighbour search is a tenth of a cell's time)."""
        logits, far = [], []
        for i in range(0, len(images), self.batch_size):
            windows = self.stain_normalised(
                centre_views(images[i : i + self.batch_size], self.geometry)
            )
            batch, features = self.window_outputs(windows, tta)
            logits.append(batch)
            far.append(self.distances(features if distances else None, len(batch)))
        if not logits:
            return np.zeros((0, len(self.classes))), np.zeros(0)
        return np.concatenate(logits), np.concatenate(far)

    def use_stain(self, method: str) -> None:
        """Normalise each input window's stain by `method` ("none" or "reinhard") from now on."""
        if method not in METHODS:
            raise ModelError(f"unknown stain normalisation {method!r}; one of {', '.join(METHODS)}")
        if method != "none" and self.stain is None:
            raise ModelError(
                f"{self.source}: the model holds no reference of its training images' colours "
                "to normalise to: run `marrowdiff calibrate` on its run folder (and export again)"
            )
        self.stain_method = method

    def stain_normalised(self, windows: np.ndarray) -> np.ndarray:
        """The input windows, their colours moved to the training windows' if asked for."""
        if self.stain_method == "reinhard":
            return reinhard(windows, self.stain)
        return windows

    def distances(self, features: np.ndarray | None, n: int) -> np.ndarray:
        """(n,) the distances of cells' features from the training cells (NaN: no reference)."""
        if self.domain is None or features is None:
            return np.full(n, np.nan)
        return self.domain.distances(features)

    def logits(self, images: list[np.ndarray], tta: bool = False) -> np.ndarray:
        """(N, C) logits of (H, W, 3) uint8 RGB patches, preprocessed a batch at a time."""
        return self.outputs(images, tta, distances=False)[0]

    def proba(self, images: list[np.ndarray], tta: bool = False) -> np.ndarray:
        """(N, C) calibrated probabilities."""
        return self.calibration(tta).proba(self.logits(images, tta))


class TorchModel(Model):
    """A PyTorch module with its normalisation: from a checkpoint, or while it trains."""

    def __init__(
        self,
        module,
        normalisation,
        geometry: Geometry,
        classes: list[str],
        vocabulary: Vocabulary,
        calibrations: dict[str, Calibration] | None = None,
        source: str = "<module>",
        metadata: dict | None = None,
        checksum: str = "",
        domain: DomainReference | None = None,
        stain: StainReference | None = None,
        size: SizeReference | None = None,
    ):
        import torch

        self._torch = torch  # imported here: the ONNX path needs none of it
        self.module, self.normalisation = module, normalisation
        self.geometry, self.classes, self.vocabulary = geometry, list(classes), vocabulary
        self.calibrations = calibrations or {}
        self.source, self.metadata = source, metadata or {}
        self.checksum, self.domain, self.stain, self.size = checksum, domain, stain, size
        self.device = next(module.parameters()).device

    @classmethod
    def from_checkpoint(cls, checkpoint, device: str = "cpu") -> TorchModel:
        """A `run.Checkpoint`'s model, built and placed on `device` (cpu, cuda, auto)."""
        from dataclasses import replace

        import torch

        from marrowdiff.distributed.runtime import resolve_device
        from marrowdiff.models import build_model
        from marrowdiff.run import CheckpointError

        config = checkpoint.config
        module = build_model(replace(config.model, pretrained=False))
        try:
            module.load_state_dict(checkpoint.state["state_dict"])
        except RuntimeError as error:  # weights of another shape or architecture
            first = str(error).strip().splitlines()[0]
            raise CheckpointError(
                f"{checkpoint.path}: its weights do not fit its own model description ({first}); "
                "the file is damaged or was not written by marrowdiff: train again"
            ) from None
        module.eval().to(memory_format=torch.channels_last)
        module.to(resolve_device(device, int(os.environ.get("LOCAL_RANK", "0"))))
        return cls(
            module,
            checkpoint.normalisation,
            config.geometry,
            checkpoint.classes,
            checkpoint.vocabulary,
            checkpoint.calibrations,
            str(checkpoint.path),
            checkpoint.metadata,
            checkpoint.state.get("weights_sha256", ""),
            checkpoint.domain,
            checkpoint.stain,
            checkpoint.size,
        )

    def run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from marrowdiff.models import logits_and_features
        from marrowdiff.normalisation import normalise

        torch = self._torch
        self.module.eval()
        with torch.inference_mode():
            x = normalise(
                torch.from_numpy(np.ascontiguousarray(windows)).to(self.device), self.normalisation
            )
            logits, features = logits_and_features(
                self.module, x.contiguous(memory_format=torch.channels_last)
            )
        return logits.double().cpu().numpy(), features.float().cpu().numpy()


class OnnxModel(Model):
    """An exported file: the graph (normalisation inside it) and marrowdiff's metadata, every
    piece of which is checked against the graph and against its checksums when it loads."""

    def __init__(self, path: str | Path, threads: int | None = None, spin: bool = True):
        import onnx
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spin:  # idle threads sleep between runs: the CPU goes to work beside them
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not Path(path).is_file():
            raise ModelError(f"{path}: not a file; give an .onnx file from `marrowdiff export`")
        data = Path(path).read_bytes()
        try:
            proto = onnx.load_from_string(data)
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnx and onnxruntime raise their own, undocumented, types
            raise ModelError(f"{path}: not a readable ONNX model ({error})") from None
        meta = read_onnx_metadata(path, self.session, proto)
        self.metadata = meta
        self.checksum = meta["graph_sha256"]
        self.source = str(path)
        self.classes = list(meta["classes"])
        self.vocabulary = Vocabulary.from_dict(meta["vocabulary"])
        self.geometry = Geometry(**meta["config"]["geometry"])
        self.calibrations = calibrations_from_dict(meta.get("calibration"))
        self.domain = domain_from_dict(meta.get("domain"))
        self.stain = stain_from_dict(meta.get("stain"))
        self.size = size_from_dict(meta.get("size"))
        self.input_name = self.session.get_inputs()[0].name
        self._check_graph(path)

    def _check_graph(self, path) -> None:
        """The graph takes (N, 3, S, S) uint8 at the metadata's input size and gives one output
        per class the metadata names (one test window: a foreign graph fails here)."""
        size = self.geometry.input_size
        try:
            out, features = self.run(np.zeros((1, 3, size, size), np.uint8))
        except Exception as error:  # onnxruntime's own types: shapes or types that do not fit
            first = str(error).strip().splitlines()[0][:200]
            raise ModelError(
                f"{path}: its graph does not take the {size} px uint8 windows its metadata "
                f"describes ({first}); export it again with `marrowdiff export`"
            ) from None
        if out.shape != (1, len(self.classes)):
            raise ModelError(
                f"{path}: its metadata names {len(self.classes)} classes but the graph gives "
                f"{out.shape[-1]} outputs; the file was edited or damaged: export it again"
            )
        if self.domain is not None and (features is None or features.shape[1] != self.domain.dim):
            raise ModelError(
                f"{path}: its metadata holds a domain reference of {self.domain.dim} features "
                "that its graph does not give; the file was edited or damaged: export it again"
            )

    def run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.session.run(None, {self.input_name: windows})
        features = outputs[1].astype(np.float32) if len(outputs) > 1 else None
        return outputs[0].astype(np.float64), features


def read_onnx_metadata(path, session, proto) -> dict:
    """marrowdiff's metadata of an ONNX file, checked: JSON of the right shape, its checksums
    matching the graph and the metadata itself. Every failure is a ModelError naming the file."""
    raw = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    if raw is None:
        raise ModelError(
            f"{path}: an ONNX model without marrowdiff metadata; "
            "export it with `marrowdiff export RUN --onnx FILE`"
        )
    again = "; export it again with `marrowdiff export`"
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelError(f"{path}: its marrowdiff metadata is not JSON{again}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: its marrowdiff metadata is not a JSON object{again}")
    if meta.get("graph_sha256") != graph_sha256(proto):
        raise ModelError(f"{path}: damaged: its graph does not match its checksum{again}")
    if meta.get("metadata_sha256") != metadata_sha256(meta):
        raise ModelError(
            f"{path}: its metadata was edited or damaged (or exported by an earlier "
            f"marrowdiff, which did not checksum it){again}"
        )
    _check_description(path, meta)
    return meta


def _check_description(path, meta: dict) -> None:
    """The pieces a model is built from: a class list, a vocabulary that names them, an input
    geometry, a normalisation and calibrations of the right types."""
    from marrowdiff.classes import VocabularyError

    classes = meta.get("classes")
    try:
        if not (
            isinstance(classes, list)
            and classes
            and all(isinstance(c, str) for c in classes)
            and len(set(classes)) == len(classes)
        ):
            raise TypeError("`classes` is not a list of distinct class codes")
        vocabulary = Vocabulary.from_dict(meta["vocabulary"])
        missing = set(classes) - set(vocabulary.codes)
        if missing:
            raise TypeError(f"classes {sorted(missing)} are not in its vocabulary")
        Geometry(**meta["config"]["geometry"])
        norm = meta["normalisation"]
        if (
            norm["colour"] not in ("rgb", "yuv")
            or not all(
                len(norm[k]) == 3 and all(isinstance(v, int | float) for v in norm[k])
                for k in ("mean", "std")
            )
            or min(norm["std"]) <= 0
        ):
            raise TypeError("`normalisation` is not a colour space with 3 means and 3 stds")
        calibrations_from_dict(meta.get("calibration"))
        domain_from_dict(meta.get("domain"))
        stain_from_dict(meta.get("stain"))
        size_from_dict(meta.get("size"))
    except (KeyError, TypeError, ValueError, AttributeError, VocabularyError) as error:
        what = f"no {error}" if isinstance(error, KeyError) else str(error)
        raise ModelError(
            f"{path}: its marrowdiff metadata is incomplete ({what}); export it "
            "again with `marrowdiff export`"
        ) from None


def load_model(path: str | Path, device: str = "cpu", spin: bool = True) -> Model:
    """A run folder, a .pt checkpoint or an exported .onnx file. `device` (cpu, cuda, auto)
    places a PyTorch model; an ONNX model runs on the CPU (ONNX Runtime's CPU provider)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such model; give a run folder from `marrowdiff train`, "
            "a .pt checkpoint or an .onnx file from `marrowdiff export`"
        )
    if path.suffix.lower() == ".onnx":
        return OnnxModel(path, spin=spin)
    from marrowdiff.run import load_checkpoint

    return TorchModel.from_checkpoint(load_checkpoint(path), device)


def top_classes(proba: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """(N,) the class each of N objects is given, from (N, C) probabilities and which of the C
    classes enter the differential (`counted`): first, cell or not, by the summed probability
    of the counted classes against the others (ties: a cell); then the likeliest class of
    that side. Plain argmax would set a cell aside whenever its probability is spread over
    neighbouring stages while the rest sits on one outcome (0.3 red cell against 0.7 over six
    stages); with every class counted (or none) it is argmax."""
    cell = proba[:, counted].sum(1) >= proba[:, ~counted].sum(1)
    side = np.where(cell[:, None], counted[None, :], ~counted[None, :])
    return np.where(side, proba, -np.inf).argmax(1)


class Predictions(NamedTuple):
    """What a classifier says of N cells."""

    proba: np.ndarray  # (N, C) calibrated probabilities
    unsure: np.ndarray  # (N,) bool: below the calibrated threshold
    distance: np.ndarray  # (N,) from the training cells (`domain.py`); NaN without a reference


class Classifier:
    """A global model, optionally refined by local models of neighbouring stages (dual-stage)."""

    def __init__(self, global_: Model, locals_: list[Model] = ()):
        check_locals(global_.classes, global_.source, locals_)
        self.global_, self.locals_ = global_, list(locals_)
        self.classes = global_.classes
        self.vocabulary = global_.vocabulary
        self.geometry = global_.geometry
        # which classes enter the differential (a platelet or a red cell does not); a class
        # the vocabulary does not know is counted
        known = set(self.vocabulary.codes)
        self.counted = np.array(
            [c not in known or self.vocabulary.counted(c) for c in self.classes], bool
        )

    @property
    def dual_stage(self) -> bool:
        return bool(self.locals_)

    def calibration(self, tta: bool) -> Calibration:
        return self.global_.calibration(tta)

    @property
    def stain_method(self) -> str:
        """The stain normalisation of the input windows ("none", "reinhard")."""
        return self.global_.stain_method

    @property
    def domain(self) -> DomainReference | None:
        """The global model's domain reference (the local models see the same cells)."""
        return self.global_.domain

    def check(self, distances: np.ndarray) -> DomainCheck:
        """The domain check of a set of cells (an unchecked one without a domain reference)."""
        return check_cells(distances, self.domain)

    @property
    def checksum(self) -> str:
        """The models' identity for a report: the first 12 hex digits of each one's sha256."""
        return ",".join(m.checksum[:12] for m in (self.global_, *self.locals_) if m.checksum)

    def refine(
        self, global_proba: np.ndarray, images: list[np.ndarray], tta: bool = False
    ) -> np.ndarray:
        """The global model's probabilities, refined by the local models (unchanged without)."""
        if not self.locals_ or not len(images):
            return global_proba
        return combine(
            global_proba, self.classes, [(m.proba(images, tta), m.classes) for m in self.locals_]
        )

    def proba(self, images: list[np.ndarray], tta: bool = False) -> np.ndarray:
        """(N, C) calibrated probabilities."""
        return self.refine(self.global_.proba(images, tta), images, tta)

    def unsure(self, proba: np.ndarray, tta: bool = False) -> np.ndarray:
        """(N,) bool: below the calibrated threshold, the cells to look at first."""
        return proba.max(1) < self.calibration(tta).threshold if len(proba) else np.zeros(0, bool)

    def top(self, proba: np.ndarray) -> np.ndarray:
        """(N,) the class index each object is given (`top_classes`)."""
        return top_classes(proba.reshape(-1, len(self.classes)), self.counted)

    def classify(self, images: list[np.ndarray], tta: bool = False) -> Predictions:
        """Calibrated probabilities, "unsure" flags and distances from the training cells."""
        logits, distance = self.global_.outputs(images, tta)
        proba = self.refine(self.calibration(tta).proba(logits), images, tta)
        return Predictions(proba, self.unsure(proba, tta), distance)


def load_classifier(
    paths: list[str | Path], device: str = "cpu", stain: str = "none", spin: bool = True
) -> Classifier:
    """One model, or a dual-stage set: the first global, the rest local models; `stain`:
    the stain normalisation of their input windows ("none" or "reinhard", `stain.py`).
    `spin=False`: ONNX Runtime's idle threads sleep between runs instead of spinning, for
    work that runs beside the classifier (a slide's tile readers: 515 -> 586 cells/s on 2
    cores; classifying alone, spinning is faster: 1,060 against 1,010 cells/s)."""
    if not paths:
        raise ValueError("no model given")
    models = [load_model(p, device, spin) for p in paths]
    for model in models:
        model.use_stain(stain)
    return Classifier(models[0], models[1:])


# Images decoded at once by `in_chunks`: 1,024 patches of 144 px are 64 MB, so that evaluating,
# calibrating or checking a model on a split of 30,000 cells holds one chunk, not 2 GB.
CHUNK = 1024


def in_chunks(
    load, paths: list[str], fn, chunk: int = CHUNK, progress: bool = False, desc: str = "cells"
) -> np.ndarray:
    """fn(images) (an array with one row per image) over the images of `paths`, decoded
    `chunk` at a time by `load(paths)`, rows in the order of `paths`; with `progress`, a bar
    of cells done, their rate and the time left."""
    parts = []
    with tqdm(total=len(paths), disable=not progress, desc=desc, unit="cell") as bar:
        for i in range(0, len(paths), chunk):
            parts.append(fn(load(paths[i : i + chunk])))
            bar.update(min(chunk, len(paths) - i))
    return np.concatenate(parts) if parts else fn([])
