"""Every statistic of the validation against a published worked example or a known answer."""

import numpy as np
import pytest

from marrowdiff.classes import load_vocabulary
from marrowdiff.validation.agreement import fleiss, kappa, pair, reviewers
from marrowdiff.validation.comparison import bland_altman, deming
from marrowdiff.validation.intervals import rumke

CHOI = load_vocabulary("choi2017")


def test_cohens_kappa_of_the_textbook_example():
    # 50 applications read by two people: 20 both yes, 15 both no, 5 and 10 split
    # (p_o = 0.70, p_e = 0.50, kappa = 0.40; Wikipedia, "Cohen's kappa").
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert kappa(a, b) == 0.4
    result = pair(a, b, CHOI)
    assert result["percent"] == 70.0
    assert result["confusion"] == [[15, 10], [5, 20]]  # rows: a (no, yes); columns: b
    # with two categories, each class's kappa (class or not) is the kappa itself
    assert result["per_class"] == {"no": 0.4, "yes": 0.4}
    assert kappa(["x"] * 3, ["x"] * 3) is None  # undefined, not a number pretending


def test_fleiss_kappa_of_fleiss_worked_example():
    # 10 subjects, 14 raters, 5 categories: kappa = 0.210 (Fleiss 1971; Wikipedia's example).
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
              [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
              [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]  # fmt: skip
    ratings = [[c for c, n in zip("abcde", row, strict=True) for _ in range(n)] for row in counts]
    assert fleiss(ratings) == pytest.approx(0.2099, abs=1e-4)
    assert fleiss([["a", "a"]]) is None  # one cell: undefined


def test_adjacent_stage_agreement_and_pairs_of_reviewers():
    said = {
        1: {"ana": "myelocyte", "ben": "myelocyte"},
        2: {"ana": "myelocyte", "ben": "metamyelocyte"},  # neighbours
        3: {"ana": "myeloblast", "ben": "metamyelocyte"},  # not neighbours
        4: {"ana": "not_a_cell", "ben": "not_a_cell"},
        5: {"ana": "myelocyte"},  # one verdict: not an agreement
    }
    result = reviewers(said, CHOI)
    assert result["cells"] == 4 and result["reviewers"] == ["ana", "ben"]
    assert result["all_agree_percent"] == 50.0
    assert result["pooled"]["percent"] == 50.0 and result["pooled"]["adjacent_percent"] == 75.0
    (only,) = result["pairs"]
    assert only["raters"] == ["ana", "ben"] and only["cells"] == 4
    assert only["labels"] == ["myeloblast", "myelocyte", "metamyelocyte", "not_a_cell"]


def test_rumkes_table():
    # Rümke (1985): 5% of 100 cells is 1.6-11.3%; of 500 cells, 3.3-7.3%.
    assert rumke(5, 100) == pytest.approx((1.64, 11.28), abs=0.01)
    assert rumke(25, 500) == pytest.approx((3.26, 7.29), abs=0.01)
    assert rumke(0, 0) == (0.0, 100.0)


def test_bland_altman_by_hand():
    result = bland_altman(np.array([11.0, 12.0, 13.0, 14.0]), np.array([10.0, 10, 10, 10]))
    sd = float(np.std([1, 2, 3, 4], ddof=1))  # 1.291
    assert result["bias"] == 2.5 and result["sd"] == pytest.approx(sd, abs=1e-3)
    assert result["low"] == pytest.approx(2.5 - 1.96 * sd, abs=1e-3)
    assert bland_altman(np.array([1.0]), np.array([0.0]))["sd"] is None


def test_deming_recovers_a_line_and_is_orthogonal_regression_at_ratio_one():
    x = np.array([1.0, 2, 3, 4, 5, 6])
    exact = deming(x, 2 * x + 1)
    assert exact["slope"] == pytest.approx(2) and exact["intercept"] == pytest.approx(1)
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 40, 30)
    ref, model = truth + rng.normal(0, 2, 30), 1.1 * truth - 1 + rng.normal(0, 2, 30)
    fit = deming(ref, model)
    # orthogonal regression: the direction of the first principal component
    values, vectors = np.linalg.eigh(np.cov(ref, model))
    direction = vectors[:, values.argmax()]
    assert fit["slope"] == pytest.approx(direction[1] / direction[0], rel=1e-3)
    assert fit["slope_ci"][0] < fit["slope"] < fit["slope_ci"][1]
    assert fit["slope_ci"][0] < 1.1 < fit["slope_ci"][1]  # the true slope is inside
    # symmetric: swapping the methods gives the reciprocal slope (ordinary least squares does not)
    assert deming(model, ref)["slope"] == pytest.approx(1 / fit["slope"], rel=1e-3)
    assert deming(np.ones(4), np.arange(4.0))["slope"] is None  # no spread: undefined
