"""The expected differential and its intervals (estimate.py), against known answers."""

import numpy as np
import pytest

from marrowdiff.estimate import Z95, expected_counts


def test_verified_cells_are_counted_and_their_interval_is_wilsons():
    proba = np.eye(3)[[0, 0, 0, 1]]  # three of class 0, one of class 1, all verified
    e = expected_counts(proba)
    assert e["n"] == 4 and list(e["expected"]) == [3, 1, 0]
    assert e["percent"] == pytest.approx([75, 25, 0])
    assert e["low"][0] == pytest.approx(30.06, abs=0.01)  # Wilson, 3 of 4: 30.1 - 95.4 %
    assert e["high"][0] == pytest.approx(95.44, abs=0.01)
    none = expected_counts(np.eye(2)[[0] * 100])  # 0 of 100 cells: not "0 - 0 %"
    assert none["low"][1] == 0.0 and none["high"][1] == pytest.approx(100 * Z95**2 / (100 + Z95**2))


def test_a_doubtful_cell_adds_its_probabilities_to_the_count_and_the_doubt():
    doubt = expected_counts(np.array([[1.0, 0.0]] * 9 + [[0.6, 0.4]]))
    assert doubt["expected"] == pytest.approx([9.6, 0.4])
    # the share of class 1 is the mean of [0]*9 + [0.4]: variance 0.0144 / 10 cells
    n_eff = 0.04 * 0.96 / (0.0144 / 10)
    centre = (0.04 + Z95**2 / (2 * n_eff)) / (1 + Z95**2 / n_eff)
    half = Z95 / (1 + Z95**2 / n_eff) * np.sqrt(0.04 * 0.96 / n_eff + Z95**2 / (4 * n_eff**2))
    assert doubt["low"][1] == pytest.approx(100 * max(0, centre - half))
    assert doubt["high"][1] == pytest.approx(100 * (centre + half))


def test_mass_on_a_class_not_counted_counts_as_part_of_a_cell():
    e = expected_counts(np.array([[0.5, 0.0], [0.0, 1.0]]))  # the first: half a platelet
    assert e["n"] == 1.5 and e["percent"] == pytest.approx([100 / 3, 200 / 3])


def test_bad_probabilities_are_an_error_not_a_number():
    for bad in ([[np.nan, 0.5]], [[-0.1, 0.5]], [[0.8, 0.8]], [0.5, 0.5]):
        with pytest.raises(ValueError):
            expected_counts(np.array(bad))
    empty = expected_counts(np.zeros((0, 3)))
    assert empty["n"] == 0 and np.isnan(empty["percent"]).all()


def test_with_calibrated_probabilities_the_estimate_is_unbiased_and_the_interval_covers():
    """Cells drawn from a marrow, and a model whose probabilities are the true posteriors
    (calibrated by construction), sure of one class far more often than of the others: the
    count of sure cells is biased, the expected count is not, and its 95% intervals hold the
    marrow's share about 95% of the time."""
    from scipy.stats import dirichlet

    rng = np.random.default_rng(0)
    marrow = np.array([0.5, 0.3, 0.2])
    looks = [np.array([9.0, 1, 1]), np.array([1.5, 2.5, 1]), np.array([1.5, 1, 2.5])]
    held, errors, sure_errors, n_cells = [], [], [], 120
    for _ in range(300):
        truth = rng.choice(3, n_cells, p=marrow)
        x = np.array([rng.dirichlet(looks[t]) for t in truth])  # what each cell looks like
        likelihood = np.array([[dirichlet.pdf(v, a) for a in looks] for v in x])
        proba = likelihood * marrow
        proba /= proba.sum(1, keepdims=True)  # the posterior: calibrated
        e = expected_counts(proba)
        true_share = 100 * np.bincount(truth, minlength=3) / n_cells
        errors.append(e["percent"] - true_share)
        sure = proba.max(1) > 0.9
        sure_share = 100 * np.bincount(proba[sure].argmax(1), minlength=3) / max(1, sure.sum())
        sure_errors.append(sure_share - true_share)
        held.append((e["low"] <= 100 * marrow) & (100 * marrow <= e["high"]))
    assert np.abs(np.mean(errors, 0)).max() < 1.0  # percentage points: unbiased
    assert np.abs(np.mean(sure_errors, 0)).max() > 10  # the sure cells are mostly class 0
    assert 0.92 <= np.mean(held) <= 0.98
