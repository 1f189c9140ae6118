"""One interface from a model to calibrated probabilities: PyTorch, ONNX, dual-stage."""

import numpy as np
import pytest

from marrowdiff.calibration import calibrate
from marrowdiff.inference.dualstage import combine
from marrowdiff.inference.predict import Classifier, ModelError, load_classifier, load_model
from marrowdiff.run import load_checkpoint
from marrowdiff.synthetic.cells import synthetic_cell

from ..conftest import TINY_CLASSES


def test_the_run_is_calibrated_on_its_validation_cells(tiny_run):
    # The stored calibration is what a fit on the validation cells' logits gives.
    model = load_model(tiny_run)
    checkpoint = load_checkpoint(tiny_run)
    _, val = checkpoint.cells()
    images = checkpoint.dataset().load_paths(val)
    labels = checkpoint.splits().label_indices(val, model.classes)
    for tta in (False, True):
        stored, refit = model.calibration(tta), calibrate(model.logits(images, tta), labels)
        assert stored.n == len(val) >= 10
        assert stored.temperature == pytest.approx(refit.temperature, rel=1e-4)
        assert stored.threshold == pytest.approx(refit.threshold, abs=1e-4)


def test_calibrated_probabilities_are_the_tempered_softmax_of_the_logits(tiny_run):
    model = load_model(tiny_run)
    images = [synthetic_cell(np.random.default_rng(2), 48, radius=r) for r in (8, 12, 16)]
    logits, t = model.logits(images), model.calibration(False).temperature
    expected = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
    np.testing.assert_allclose(model.proba(images), expected, rtol=1e-9)


def test_an_onnx_file_without_our_metadata_is_refused(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        load_model(tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model(tmp_path / "missing.onnx")


def test_a_dual_stage_set_lets_the_local_model_share_its_pair(tiny_run, tiny_local_run):
    classifier = load_classifier([tiny_run, tiny_local_run])
    global_, local = classifier.global_, classifier.locals_[0]
    rng = np.random.default_rng(0)
    images = [synthetic_cell(rng, 48, radius=r) for r in (8, 12, 16, 13, 15, 9, 11, 14)]
    g, l_ = global_.proba(images), local.proba(images)
    expected = combine(g, classifier.classes, [(l_, local.classes)])
    proba, unsure, _ = classifier.classify(images)
    np.testing.assert_allclose(proba, expected)
    pair = [classifier.classes.index(c) for c in local.classes]
    routed = np.isin(g.argmax(1), pair)
    assert routed.any() and not np.allclose(proba[routed], g[routed])  # the local model decided
    np.testing.assert_allclose(proba[~routed], g[~routed])  # elsewhere the global one did
    np.testing.assert_allclose(proba[routed][:, pair].sum(1), g[routed][:, pair].sum(1))
    assert proba.shape == (len(images), len(TINY_CLASSES)) and unsure.shape == (len(images),)


def test_a_local_model_with_classes_the_global_one_lacks_is_refused(tiny_run, tiny_local_run):
    local, global_ = load_model(tiny_run), load_model(tiny_local_run)
    with pytest.raises(ValueError, match="does not"):
        Classifier(global_, [local])  # swapped: the 3-class model as the local one


def test_predictions_over_a_split_decode_a_chunk_at_a_time(tiny_run):
    from marrowdiff.inference.predict import in_chunks, load_model
    from marrowdiff.run import load_checkpoint

    checkpoint = load_checkpoint(tiny_run)
    dataset, paths = checkpoint.dataset(), checkpoint.splits().test
    model = load_model(tiny_run)
    sizes = []

    def load(some):
        sizes.append(len(some))
        return dataset.load_paths(some)

    chunked = in_chunks(load, paths, model.proba, chunk=4)
    assert max(sizes) == 4 and sum(sizes) == len(paths)  # never more than a chunk decoded
    whole = model.proba(dataset.load_paths(paths))  # equal but for batch-size rounding
    assert np.allclose(chunked, whole, atol=1e-6)
    assert in_chunks(load, [], model.proba).shape == (0, len(model.classes))


def test_a_long_prediction_shows_cells_done_their_rate_and_time_left(tiny_run, capsys):
    from marrowdiff.inference.predict import in_chunks, load_model
    from marrowdiff.run import load_checkpoint

    checkpoint = load_checkpoint(tiny_run)
    dataset, paths = checkpoint.dataset(), checkpoint.splits().test
    model = load_model(tiny_run)
    quiet = in_chunks(dataset.load_paths, paths, model.proba, chunk=4)
    assert capsys.readouterr().err == ""  # no bar unless asked (the CLI asks on a terminal)
    shown = in_chunks(dataset.load_paths, paths, model.proba, chunk=4, progress=True, desc="test")
    assert np.array_equal(shown, quiet)
    bar = capsys.readouterr().err
    assert "test: 100%" in bar and f"{len(paths)}/{len(paths)}" in bar and "cell/s" in bar


def test_int8_ranges_come_from_an_even_sample_of_the_training_cells():
    from marrowdiff.inference.export import calibration_sample

    paths = [f"{c}/{k:03d}.png" for c in "ab" for k in range(600)]
    sample = calibration_sample(paths, 100)
    assert len(sample) == 100 and sample[0] == "a/000.png" and sample[-1] == "b/599.png"
    assert sum(p.startswith("a/") for p in sample) == 50  # each class in proportion
    assert calibration_sample(paths[:10], 100) == sorted(paths[:10])
