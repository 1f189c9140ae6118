"""The domain check's numbers (domain.py): a reference of training features, a per-cell
threshold set by held-out cells, and a binomial test over a set of cells."""

import numpy as np
import pytest
from scipy.stats import binom

from marrowdiff.domain import (
    MIN_SHARE,
    DomainReference,
    check_cells,
    domain_from_dict,
    fit_reference,
)


def mixture(rng, n: int, means: np.ndarray, spread: float = 0.3) -> np.ndarray:
    """n features around the rows of `means` (one class each), in equal shares."""
    pick = rng.integers(0, len(means), n)
    return means[pick] + spread * rng.standard_normal((n, means.shape[1]))


@pytest.fixture
def source():
    rng = np.random.default_rng(0)
    means = np.abs(rng.standard_normal((3, 16))) * 2  # three classes, non-negative like ReLU
    return rng, means


def test_about_one_in_a_hundred_cells_like_the_training_ones_lie_beyond_and_most_others(source):
    rng, means = source
    reference = fit_reference(mixture(rng, 1500, means), mixture(rng, 1000, means))
    assert reference.threshold_cells == 1000 and reference.held_out == "validation"
    assert reference.expected == pytest.approx(0.01, abs=0.002)
    alike = reference.distances(mixture(rng, 3000, means))
    assert (alike > reference.threshold).mean() < 0.03  # 1% +- the quantile of 1,000 cells
    assert not check_cells(alike, reference).unlike
    other = reference.distances(mixture(rng, 300, means + rng.uniform(0.5, 1.5, means.shape)))
    check = check_cells(other, reference)
    assert check.share > 0.5 and check.unlike
    assert "differ from the model's training images" in check.sentence()
    assert f"{check.outside} of 300 cells" in check.sentence() and "(p < 1e-12)" in check.sentence()


def test_a_set_is_unlike_the_training_cells_by_a_binomial_test_with_a_floor_on_the_share():
    reference = DomainReference(np.eye(2, dtype=np.float16), 0.5, 0.01, 100)
    ten = check_cells(np.r_[np.full(10, 0.6), np.full(90, 0.1)], reference)
    assert ten.outside == 10 and ten.p_value == pytest.approx(binom.sf(9, 100, 0.01))
    assert ten.unlike
    # 40 of 1,000 is far more than chance (p ~ 1e-10) but below the 5% floor: not called unlike
    many = check_cells(np.r_[np.full(40, 0.6), np.full(960, 0.1)], reference)
    assert many.p_value < 1e-6 and many.share < MIN_SHARE and not many.unlike
    # one cell of one is 5% likely among cells like the training ones: not a finding
    assert not check_cells(np.array([0.9]), reference).unlike
    # NaN (a cell no model could place) is left out
    assert check_cells(np.array([np.nan, 0.1]), reference).cells == 1


def test_distances_are_one_minus_the_kth_nearest_cosine_similarity():
    bank = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float16)
    reference = DomainReference(bank, 0.1, 0.01, 10, k=2)
    # (1, 0) is 1.0 from the first, 0.6 from the third, 0 from the second: 2nd nearest 0.6
    assert reference.distances(np.array([[3.0, 0.0]]))[0] == pytest.approx(0.4, abs=1e-3)
    with pytest.raises(ValueError, match="do not fit"):
        reference.distances(np.zeros((1, 3)))


def test_a_reference_survives_its_dict_and_a_damaged_one_is_refused(source):
    rng, means = source
    reference = fit_reference(mixture(rng, 200, means), mixture(rng, 50, means))
    again = domain_from_dict(reference.to_dict())
    np.testing.assert_array_equal(again.bank, reference.bank)
    assert (again.threshold, again.expected, again.k) == (
        reference.threshold,
        reference.expected,
        reference.k,
    )
    assert domain_from_dict(None) is None
    d = reference.to_dict()
    with pytest.raises(ValueError, match="stated shape"):
        domain_from_dict(d | {"shape": [d["shape"][0] + 1, d["shape"][1]]})
    with pytest.raises(ValueError, match="unknown domain method"):
        domain_from_dict(d | {"method": "colour"})


def test_without_held_out_cells_every_fifth_training_cell_sets_the_threshold(source):
    rng, means = source
    reference = fit_reference(mixture(rng, 500, means), None)
    assert reference.held_out == "training" and reference.threshold_cells == 100
    assert len(reference.bank) == 400


def test_a_model_without_a_reference_says_nothing_was_checked():
    check = check_cells(np.array([0.1, 0.2]), None)
    assert not check.checked and not check.unlike
    assert "was not checked" in check.sentence() and "marrowdiff calibrate" in check.sentence()
    assert check.to_dict() == {"cells": 2, "checked": False}
    assert check_cells(np.array([0.1]), DomainReference(np.eye(2), 0.5, 0.01, 9)).to_dict()[
        "checked"
    ]
