"""Export to ONNX: the file alone classifies cells as the PyTorch model does."""

from pathlib import Path

import numpy as np
import pytest

from marrowdiff.inference.predict import load_model
from marrowdiff.synthetic.cells import synthetic_cell


def test_onnx_and_pytorch_agree_within_1e4(tiny_run, onnx_file):
    rng = np.random.default_rng(3)
    images = [synthetic_cell(rng, 48, radius=r) for r in (8, 12, 16, 10, 14)]
    images.append(synthetic_cell(rng, 61)[:, :55])  # not square, other size
    torch_model, onnx_model = load_model(tiny_run), load_model(onnx_file)
    assert onnx_model.classes == torch_model.classes
    assert onnx_model.calibrations == torch_model.calibrations
    for tta in (False, True):
        difference = np.abs(torch_model.proba(images, tta) - onnx_model.proba(images, tta))
        assert difference.max() < 1e-4


def test_a_damaged_onnx_file_is_refused(onnx_file, tmp_path):
    import onnx
    from onnx import numpy_helper

    from marrowdiff.inference.predict import ModelError

    proto = onnx.load(str(onnx_file))
    weight = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    array = numpy_helper.to_array(weight).copy()
    array.flat[: array.size // 2] = 0  # half a layer lost, the metadata intact
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelError, match="damaged"):
        load_model(damaged)
    (tmp_path / "cut.onnx").write_bytes(onnx_file.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        load_model(tmp_path / "cut.onnx")


def test_an_exported_file_names_no_path_of_the_machine_that_trained_it(tiny_run, onnx_file):
    from marrowdiff.run import load_checkpoint

    raw = onnx_file.read_bytes()
    checkpoint = load_checkpoint(tiny_run)
    for path in (str(tiny_run), str(tiny_run.parent), checkpoint.state["data"]["source"]):
        assert path.encode() not in raw, path
    meta = load_model(onnx_file).metadata
    assert meta["data"]["source"] == Path(checkpoint.state["data"]["source"]).name
    assert meta["data"]["fingerprint"] == checkpoint.state["data"]["fingerprint"]
    assert meta["exported_from"] == {"weights_sha256": checkpoint.state["weights_sha256"]}
