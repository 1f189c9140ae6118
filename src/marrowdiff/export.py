"""Export a trained model to ONNX for deployment: normalisation inside the graph, the class
vocabulary, geometry and calibration in its metadata, so the file alone classifies cells.

The graph takes `patches`, (N, 3, S, S) uint8 RGB windows (`preprocess.centre_views`), and gives
`logits`, (N, C). (Static int8 quantisation was tried and left out: 8% faster here, and 1.5%
of the archive's cells changed class; see docs/BENCHMARKS.md.)
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from marrowdiff.engine import ONNX_METADATA_KEY, OnnxModel
from marrowdiff.fileio import write_bytes
from marrowdiff.predict import Predictor
from marrowdiff.transforms import Normalisation, to_colour

OPSET = 17


class Deployable(nn.Module):
    """uint8 RGB patches -> logits, with the model's colour space and normalisation built in."""

    def __init__(self, model: nn.Module, norm: Normalisation):
        super().__init__()
        self.model, self.colour = model, norm.colour
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """As `transforms.normalise`, with the constants as buffers of the graph."""
        x = to_colour(patches.float() / 255.0, self.colour)
        return self.model((x - self.mean) / self.std)


def onnx_metadata(predictor: Predictor) -> dict:
    keep = ("format", "marrowdiff_version", "config", "classes", "vocabulary", "normalisation")
    meta = {k: predictor.metadata[k] for k in keep if k in predictor.metadata}
    meta["calibration"] = predictor.metadata.get("calibration") or {}
    meta["data"] = predictor.metadata.get("data", {})
    meta["exported_from"] = predictor.source
    return meta


def export_graph(module: nn.Module, size: int, path: str | Path) -> None:
    """Trace a (N, 3, size, size) uint8 -> logits module to an ONNX file at `path`, with a
    dynamic batch dimension; no metadata (see `export_onnx`)."""
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
            output_names=["logits"],
            dynamic_axes={"patches": {0: "cells"}, "logits": {0: "cells"}},
            opset_version=OPSET,
        )


def export_onnx(model_path: str | Path, out: str | Path) -> Path:
    """Write `out` (atomically) and check that ONNX Runtime loads it; returns its path."""
    import onnx

    predictor = Predictor.load(model_path)
    size = predictor.config.geometry.input_size
    wrapper = Deployable(
        predictor.model.eval().to(memory_format=torch.contiguous_format), predictor.normalisation
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        export_graph(wrapper, size, raw)
        proto = onnx.load(str(raw))
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(onnx_metadata(predictor))
        proto.doc_string = (
            f"marrowdiff cell classifier ({predictor.config.model.name}, "
            f"{len(predictor.classes)} classes): input uint8 RGB (N, 3, {size}, {size})"
        )
        onnx.checker.check_model(proto)
        write_bytes(out, proto.SerializeToString())
    OnnxModel(out)  # loads and reads back its metadata, or raises
    return Path(out)
