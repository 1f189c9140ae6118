"""Temperature scaling and the "unsure" threshold."""

import numpy as np
import pytest

from marrowdiff.calibration import (
    Calibration,
    calibrate,
    choose_threshold,
    correctness,
    expected_calibration_error,
    fit_temperature,
)


def overconfident(n=2000, temperature=2.5, seed=0):
    """Logits whose labels are drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 4))
    p = np.exp(logits / temperature)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in p])
    return logits, labels


def test_fit_temperature_recovers_the_true_one():
    logits, labels = overconfident()
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.15)


def test_calibrate_lowers_the_calibration_error_and_keeps_predictions():
    logits, labels = overconfident()
    c = calibrate(logits, labels, target_accuracy=0.9)
    assert c.ece_after < c.ece_before
    assert (c.proba(logits).argmax(1) == logits.argmax(1)).all()
    sure = c.proba(logits).max(1) >= c.threshold
    assert (c.proba(logits)[sure].argmax(1) == labels[sure]).mean() >= 0.9
    assert sure.mean() == pytest.approx(c.coverage)
    assert Calibration.from_dict(c.to_dict()) == c


def test_threshold_when_the_target_cannot_be_met_flags_everything():
    proba = np.array([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2]])
    assert choose_threshold(proba, np.array([1, 1, 1]), 0.9)[:2] == (1.0, 0.0)
    threshold, coverage, accuracy = choose_threshold(proba, np.array([1, 0, 0]), 0.9)
    assert (threshold, coverage, accuracy) == (0.7, 2 / 3, 1.0)


def test_uncalibrated_default_flags_nothing_and_too_few_cells_is_an_error():
    assert Calibration().threshold == 0.0 and Calibration().n == 0
    with pytest.raises(ValueError, match="at least 10"):
        calibrate(np.zeros((3, 2)), np.array([0, 1, 0]))
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_correctness_is_a_smooth_monotone_chance_of_being_right():
    confidence = np.linspace(0.3, 0.99, 60)
    right = np.random.default_rng(1).random(60) < confidence  # right as often as claimed
    chance = correctness(confidence, right)
    assert (np.diff(chance) >= 0).all() and 0 < chance[0] < chance[-1] < 1
    assert (correctness(confidence, np.ones(60, bool)) == 1).all()
    assert (correctness(confidence, np.zeros(60, bool)) == 0).all()


def test_calibrate_command_refits_and_stores(tiny_run, tmp_path, capsys):
    import shutil

    from marrowdiff import run as runs
    from marrowdiff.cli import main
    from marrowdiff.data.splits import Splits
    from marrowdiff.inference.predict import load_model

    run = tmp_path / "run"  # a copy: the shared run keeps its calibration
    run.mkdir()
    for name in (runs.MODEL, Splits.FILE):
        shutil.copy(tiny_run / name, run / name)
    before = load_model(run).calibration(False)
    assert main(["calibrate", str(run), "--target-accuracy", "0.8"]) == 0
    assert "calibrated on" in capsys.readouterr().out
    after = load_model(run).calibration(False)
    assert after.target_accuracy == 0.8 and before.target_accuracy == 0.9
    assert after.temperature == pytest.approx(before.temperature, rel=1e-6)  # same cells
    assert after.threshold <= before.threshold  # a lower target flags fewer cells


def test_the_interval_scale_is_what_makes_validation_intervals_hold():
    from marrowdiff.calibration import fit_interval_scale

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    right = np.eye(10)[labels]
    assert fit_interval_scale(right, labels) == 1.0  # no confusion: the sampling interval
    confused = right.copy()
    swap = (labels == 0) & (rng.random(200) < 0.7)  # class 0 mostly taken for class 1
    confused[swap] = np.eye(10)[1]
    assert fit_interval_scale(confused, labels) > 1.5
