"""Trained models behind one interface: a PyTorch run or checkpoint, or an exported ONNX file.

`load_classifier(paths)` takes one model (global) or several (the first global, the rest local
models of a dual-stage set) and gives calibrated probabilities and "unsure" flags. The ONNX path
never imports PyTorch: a laboratory PC needs only onnxruntime, numpy, Pillow and scikit-image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy.special import log_softmax

from marrowdiff.calibration import Calibration
from marrowdiff.classes import Vocabulary
from marrowdiff.dualstage import check_locals, combine
from marrowdiff.preprocess import Geometry, centre_views, d4_numpy

ONNX_METADATA_KEY = "marrowdiff"


class Model:
    """What every backend provides; subclasses implement `_logits` on (B, 3, S, S) uint8."""

    source: str
    classes: list[str]
    vocabulary: Vocabulary
    geometry: Geometry
    calibrations: dict[str, Calibration]  # "plain" and "tta"
    batch_size = 64

    def calibration(self, tta: bool) -> Calibration:
        return self.calibrations.get("tta" if tta else "plain", Calibration())

    def logits(self, images: list[np.ndarray], tta: bool = False) -> np.ndarray:
        """(N, C) logits of the centred patches; with tta, the mean log-softmax over the 8
        rotations/flips (as `train.predict_logits`)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            x = centre_views(images[start : start + self.batch_size], self.geometry)
            if tta:
                views = [log_softmax(self._logits(d4_numpy(x, k)), axis=1) for k in range(8)]
                out.append(np.mean(views, axis=0))
            else:
                out.append(self._logits(x))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def proba(self, images: list[np.ndarray], tta: bool = False) -> np.ndarray:
        """(N, C) calibrated probabilities."""
        return self.calibration(tta).proba(self.logits(images, tta))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchModel(Model):
    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch

        from marrowdiff.distributed import resolve_device
        from marrowdiff.predict import Predictor
        from marrowdiff.transforms import normalise

        self._torch, self._normalise = torch, normalise  # imported here: ONNX needs neither
        self.device = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
        self.predictor = Predictor.load(path)
        self.predictor.model.to(self.device)
        self.source = str(path)
        self.classes = self.predictor.classes
        self.vocabulary = self.predictor.vocabulary
        self.geometry = self.predictor.config.geometry
        self.calibrations = _calibrations(self.predictor.metadata.get("calibration"))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            batch = self._normalise(
                torch.from_numpy(x).to(self.device), self.predictor.normalisation
            )
            out = self.predictor.model(batch.contiguous(memory_format=torch.channels_last))
        return out.double().cpu().numpy()


class OnnxModel(Model):
    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own, undocumented, exception types
            raise ValueError(f"{path}: not a readable ONNX model ({error})") from error
        meta = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        if meta is None:
            raise ValueError(
                f"{path}: an ONNX model without marrowdiff metadata; "
                "export it with `marrowdiff export RUN --onnx FILE`"
            )
        meta = json.loads(meta)
        self.metadata = meta
        self.source = str(path)
        self.classes = list(meta["classes"])
        self.vocabulary = Vocabulary.from_dict(meta["vocabulary"])
        self.geometry = Geometry(**meta["config"]["geometry"])
        self.calibrations = _calibrations(meta.get("calibration"))
        self.input_name = self.session.get_inputs()[0].name

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0].astype(np.float64)


def _calibrations(d: dict | None) -> dict[str, Calibration]:
    return {k: Calibration.from_dict(v) for k, v in (d or {}).items()}


def load_model(path: str | Path, device: str = "cpu") -> Model:
    """A run folder, a .pt checkpoint or an exported .onnx file. `device` (cpu, cuda, auto)
    places a PyTorch model; an ONNX model runs on the CPU (ONNX Runtime's CPU provider)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such model; give a run folder from `marrowdiff train`, "
            "a .pt checkpoint or an .onnx file from `marrowdiff export`"
        )
    if path.suffix.lower() == ".onnx":
        return OnnxModel(path)
    return TorchModel(path, device)


class Classifier:
    """A global model, optionally refined by local models of neighbouring stages."""

    def __init__(self, global_: Model, locals_: list[Model] = ()):
        check_locals(global_.classes, global_.source, locals_)
        self.global_, self.locals_ = global_, list(locals_)
        self.classes = global_.classes
        self.vocabulary = global_.vocabulary
        self.geometry = global_.geometry

    def calibration(self, tta: bool) -> Calibration:
        return self.global_.calibration(tta)

    def classify(
        self, images: list[np.ndarray], tta: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) calibrated probabilities and (N,) bool "unsure" flags."""
        proba = self.global_.proba(images, tta)
        if self.locals_ and len(images):
            proba = combine(
                proba, self.classes, [(m.proba(images, tta), m.classes) for m in self.locals_]
            )
        threshold = self.calibration(tta).threshold
        return proba, proba.max(1) < threshold if len(proba) else np.zeros(0, bool)


def load_classifier(paths: list[str | Path], device: str = "cpu") -> Classifier:
    if not paths:
        raise ValueError("no model given")
    models = [load_model(p, device) for p in paths]
    return Classifier(models[0], models[1:])
