"""Export to ONNX: the file alone classifies cells as the PyTorch model does."""

import numpy as np

from marrowdiff.predict import load_model
from marrowdiff.synthetic import synthetic_cell


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
