"""int8 export: quantised on the run's training cells, checked against float on its own."""

import csv

import numpy as np
import pytest

from marrowdiff import run
from marrowdiff.cli import main
from marrowdiff.inference.export import export_onnx
from marrowdiff.inference.predict import load_model
from marrowdiff.run import load_checkpoint
from marrowdiff.synthetic.cells import synthetic_cell

from ..conftest import write_image


def test_int8_export_is_quantised_described_and_close_to_float(tiny_run, tmp_path):
    import onnx

    out = tmp_path / "tiny-int8.onnx"
    assert main(["export", str(tiny_run), "--onnx", str(out), "--int8"]) == 0
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8, reference = load_model(out), load_model(tiny_run)
    assert int8.classes == reference.classes and int8.calibrations == reference.calibrations
    q = int8.metadata["quantisation"]
    assert q["compared_on"] == "val" and q["cells"] > 0 and q["calibration_cells"] > q["cells"]
    # the stored comparison is what the float and int8 graphs do on the run's validation cells
    checkpoint = load_checkpoint(tiny_run)
    _, val = checkpoint.cells()
    images = checkpoint.dataset().load_paths(val)
    truth = checkpoint.splits().label_indices(val, reference.classes)
    float_onnx = load_model(export_onnx(tiny_run, tmp_path / "tiny.onnx"))
    p, q8 = float_onnx.proba(images).argmax(1), int8.proba(images).argmax(1)
    assert q["cells"] == len(val)
    assert q["class_changes"] == int((p != q8).sum())
    assert q["accuracy_int8"] == pytest.approx(float((q8 == truth).mean()), abs=1e-4)
    assert q["accuracy_float"] == pytest.approx(float((p == truth).mean()), abs=1e-4)
    rng = np.random.default_rng(6)
    images = [synthetic_cell(rng, 48, radius=r) for r in (8, 12, 16, 10)]  # new cells
    difference = np.abs(int8.proba(images) - reference.proba(images))
    assert difference.max() < 0.2  # 8-bit steps move probabilities, a little
    for k, image in enumerate(images):
        write_image(tmp_path / "cells" / f"{k}.png", image)
    cells = tmp_path / "cells.csv"
    assert main(["classify", str(out), str(tmp_path / "cells"), "--out", str(cells)]) == 0
    assert len(list(csv.DictReader(cells.open()))) == len(images)


def test_int8_export_needs_the_runs_cells(tiny_run, tmp_path):
    checkpoint = tmp_path / "alone" / run.MODEL
    checkpoint.parent.mkdir()
    checkpoint.write_bytes((tiny_run / run.MODEL).read_bytes())
    with pytest.raises(FileNotFoundError, match="splits are missing"):
        export_onnx(checkpoint, tmp_path / "x.onnx", int8=True)


def test_int8_export_of_a_local_model_uses_its_own_classes(tiny_local_run, tmp_path):
    model = load_model(export_onnx(tiny_local_run, tmp_path / "local.onnx", int8=True))
    checkpoint = load_checkpoint(tiny_local_run)
    train, val = checkpoint.cells()
    q = model.metadata["quantisation"]
    assert model.classes == ["myeloblast", "segmented_neutrophil"]
    assert 0 < q["cells"] == len(val) and q["calibration_cells"] == len(train)
    splits = checkpoint.splits()
    assert {splits.labels[p] for p in train + val} == set(model.classes)


def test_agreement_by_hand():
    from marrowdiff.inference.quantize import agreement

    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8]])
    q = np.array([[0.6, 0.3, 0.1], [0.55, 0.35, 0.1], [0.1, 0.2, 0.7]])
    report = agreement(p, q, ["a", "b", "c"], ["a", "b", "b"])
    # cell 2 changes class (b -> a); the largest move is 0.15; float right on a and b (2 of 3),
    # int8 on a only (1 of 3)
    assert report == {
        "cells": 3,
        "class_changes": 1,
        "max_probability_change": 0.15,
        "accuracy_float": round(2 / 3, 4),
        "accuracy_int8": round(1 / 3, 4),
    }
    assert agreement(p[:0], q[:0], ["a", "b", "c"]) == {
        "cells": 0,
        "class_changes": 0,
        "max_probability_change": 0.0,
    }
