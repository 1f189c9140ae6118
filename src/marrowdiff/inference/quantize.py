"""Static int8 quantisation of an exported ONNX model, for fast CPU inference.

ONNX Runtime's static quantisation: 8-bit unsigned activations, 8-bit signed weights with one
scale per output channel, in QDQ form, the activation ranges measured (min-max) on cells the model
was trained on. The first convolution and the classifier layer stay in float: the network's input
is the normalised image, whose three channels would share one 8-bit scale, and quantising that
layer changed the class of 8 of 105 validation cells against 3 without it (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

CALIBRATION_BATCH = 32


class _Batches:
    """An onnxruntime CalibrationDataReader over (N, 3, S, S) uint8 windows."""

    def __init__(self, name: str, windows: np.ndarray, batch: int):
        self._batches = iter(
            [{name: windows[i : i + batch]} for i in range(0, len(windows), batch)]
        )

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def float_layers(proto) -> list[str]:
    """Names of the nodes kept in float: the first convolution and the last Gemm or MatMul."""
    first = next(n.name for n in proto.graph.node if n.op_type == "Conv")
    last = [n.name for n in proto.graph.node if n.op_type in ("Gemm", "MatMul")][-1:]
    return [first, *last]


def quantize_int8(fp32: str | Path, windows: np.ndarray):
    """The int8 ModelProto of the float graph at `fp32`, whose activation ranges are measured
    on `windows`, (N, 3, S, S) uint8 inputs of the graph (`preprocess.centre_views`)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(windows):
        raise ValueError("no calibration cells: int8 quantisation needs some training cells")
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantised = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared))  # folds constants, infers shapes
        proto = onnx.load(str(prepared))
        quantize_static(
            str(prepared),
            str(quantised),
            _Batches(proto.graph.input[0].name, windows, CALIBRATION_BATCH),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=float_layers(proto),
        )
        return onnx.load(str(quantised))


def agreement(
    p: np.ndarray, q: np.ndarray, classes: list[str], labels: list[str] | None = None
) -> dict:
    """How far a quantised model's calibrated probabilities `q` are from the reference's `p`
    on the same cells (N, C): class changes, the largest probability change, and each one's
    accuracy when the true labels are given."""
    report = {
        "cells": len(p),
        "class_changes": int((p.argmax(1) != q.argmax(1)).sum()),
        "max_probability_change": round(float(np.abs(p - q).max()), 4) if len(p) else 0.0,
    }
    if labels is not None and len(p):
        truth = np.array([classes.index(label) for label in labels])
        report["accuracy_float"] = round(float((p.argmax(1) == truth).mean()), 4)
        report["accuracy_int8"] = round(float((q.argmax(1) == truth).mean()), 4)
    return report
