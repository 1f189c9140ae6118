"""Export a trained model to ONNX for deployment: normalisation inside the graph, the class
vocabulary, geometry and calibration in its metadata, so the file alone classifies cells.

The graph takes `patches`, (N, 3, S, S) uint8 RGB windows (`preprocess.centre_views`), and gives
`logits`, (N, C), and `features`, (N, D), the penultimate layer the domain check compares with
the training cells' (`domain.py`; the reference is in the metadata). With `int8`, the graph is
quantised (`quantize.quantize_int8`) on the run's training cells, and how far it moved from the
float graph on the validation cells is measured and stored in the metadata under "quantisation".
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from marrowdiff.cellsize import spread
from marrowdiff.fileio import write_bytes
from marrowdiff.inference.predict import (
    ONNX_METADATA_KEY,
    OnnxModel,
    TorchModel,
    graph_sha256,
    in_chunks,
    load_model,
    metadata_sha256,
)
from marrowdiff.inference.quantize import agreement, quantize_int8
from marrowdiff.inference.reference import KEYS
from marrowdiff.models import logits_and_features
from marrowdiff.normalisation import Normalisation, to_colour
from marrowdiff.preprocess import centre_views
from marrowdiff.run import Checkpoint, load_checkpoint

OPSET = 17


class Deployable(nn.Module):
    """uint8 RGB patches -> logits and features, with the model's colour space and
    normalisation built in."""

    def __init__(self, model: nn.Module, norm: Normalisation):
        super().__init__()
        self.model, self.colour = model, norm.colour
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1))

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `normalisation.normalise`, with the constants as buffers of the graph."""
        x = to_colour(patches.float() / 255.0, self.colour)
        return logits_and_features(self.model, (x - self.mean) / self.std)


def onnx_metadata(checkpoint: Checkpoint) -> dict:
    """What an exported file says about its model. A file is shared with other laboratories:
    it names its training data by file name and fingerprint and its checkpoint by the sha256
    of its weights, never by a path on the machine that trained it."""
    keep = ("format", "marrowdiff_version", "config", "classes", "vocabulary", "normalisation")
    meta = {k: checkpoint.state[k] for k in keep if k in checkpoint.state}
    meta["calibration"] = checkpoint.state.get("calibration") or {}
    for reference in KEYS:
        if checkpoint.state.get(reference):
            meta[reference] = checkpoint.state[reference]
    data = dict(checkpoint.state.get("data", {}))
    if "source" in data:
        data["source"] = Path(data["source"]).name
    meta["data"] = data
    meta["exported_from"] = {"weights_sha256": checkpoint.state.get("weights_sha256")}
    return meta


def export_graph(module: nn.Module, size: int, path: str | Path) -> None:
    """Trace a (N, 3, size, size) uint8 -> (logits, features) module to an ONNX file at
    `path`, with a dynamic batch dimension; no metadata (see `export_onnx`)."""
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (which needs
        # onnxscript, exports 10x slower here and gives the same graph to 1e-5); it stays
        # while PyTorch < 2.14 has it (the pinned range).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            dynamo=False,  # the TorchScript exporter: no onnxscript needed
            input_names=["patches"],
            output_names=["logits", "features"],
            dynamic_axes={
                "patches": {0: "cells"},
                "logits": {0: "cells"},
                "features": {0: "cells"},
            },
            opset_version=OPSET,
        )


def export_onnx(
    model_path: str | Path,
    out: str | Path,
    int8: bool = False,
    data: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Write `out` (atomically) and check that ONNX Runtime loads it; returns its path. With
    `int8`, a quantised graph whose calibration cells come from the run's splits and data set
    (`data` if it has moved)."""
    import onnx

    checkpoint = load_checkpoint(model_path)
    model = TorchModel.from_checkpoint(checkpoint)
    size = model.geometry.input_size
    wrapper = Deployable(
        model.module.eval().to(memory_format=torch.contiguous_format), model.normalisation
    )
    meta = onnx_metadata(checkpoint)
    doc = (
        f"marrowdiff cell classifier ({checkpoint.config.model.name}, "
        f"{len(model.classes)} classes): input uint8 RGB (N, 3, {size}, {size})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        export_graph(wrapper, size, raw)
        proto = _described(onnx.load(str(raw)), meta, doc)
        if int8:
            write_bytes(raw, proto.SerializeToString())
            proto = _quantised(checkpoint, raw, data, meta, doc + ", int8", progress)
        write_bytes(out, proto.SerializeToString())
    OnnxModel(out)  # loads and reads back its metadata, or raises
    return Path(out)


def _described(proto, meta: dict, doc: str):
    """`proto` with our metadata (replacing any) and doc string, checked."""
    import onnx

    kept = [e for e in proto.metadata_props if e.key != ONNX_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    meta = meta | {"graph_sha256": graph_sha256(proto)}
    entry = proto.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = json.dumps(meta | {"metadata_sha256": metadata_sha256(meta)})
    proto.doc_string = doc
    onnx.checker.check_model(proto)
    return proto


# Training cells that calibrate the int8 ranges: a sample this large, spread evenly over the
# sorted training paths (so that every class is in it), bounds the memory at any data size.
QUANT_CALIBRATION_CELLS = 1000  # 600 MB of 224 px float windows


def calibration_sample(paths: list[str], n: int = QUANT_CALIBRATION_CELLS) -> list[str]:
    """At most `n` of `paths`, evenly spaced over them in sorted order (deterministic)."""
    return spread(sorted(paths), n)


def _quantised(
    checkpoint: Checkpoint,
    float_path: Path,
    data: str | Path | None,
    meta: dict,
    doc: str,
    progress: bool = False,
):
    """The int8 graph of the float one at `float_path`, calibrated on the run's training cells;
    its metadata adds "quantisation": how far it moved from the float graph on the run's
    validation cells (training cells for a fold -1 run)."""
    dataset = checkpoint.dataset(data)
    splits = checkpoint.splits(dataset)
    train_paths, val_paths = checkpoint.cells(splits)  # a local model's: of its classes only
    reference = OnnxModel(float_path)
    sample = calibration_sample(train_paths)
    proto = quantize_int8(float_path, centre_views(dataset.load_paths(sample), reference.geometry))
    proto = _described(proto, meta, doc)
    checked = float_path.with_name("int8.onnx")
    write_bytes(checked, proto.SerializeToString())
    split, paths = ("val", val_paths) if val_paths else ("train", train_paths)
    quantised = OnnxModel(checked)

    def both(images: list[np.ndarray]) -> np.ndarray:
        return np.stack([reference.proba(images), quantised.proba(images)], axis=1)

    pq = in_chunks(dataset.load_paths, paths, both, progress=progress, desc="checking int8")
    labels = [splits.labels[p] for p in paths]
    report = {
        "method": "onnxruntime static, QDQ, uint8 activations, int8 per-channel weights, "
        "min-max ranges; first conv and classifier in float",
        "calibration_cells": len(sample),
        "compared_on": split,
        **agreement(pq[:, 0], pq[:, 1], reference.classes, labels),
    }
    return _described(proto, {**meta, "quantisation": report}, doc)


def quantisation_summary(path: Path) -> str:
    """One line: how far an int8 file moved from its float model (stored in its metadata)."""
    q = load_model(path).metadata["quantisation"]
    line = (
        f"int8 against float on {q['cells']} {q['compared_on']} cells: {q['class_changes']} "
        f"change class, probabilities move by at most {q['max_probability_change']:.3f}"
    )
    if "accuracy_int8" in q:
        line += f"; accuracy {q['accuracy_int8']:.3f} (float {q['accuracy_float']:.3f})"
    return line
