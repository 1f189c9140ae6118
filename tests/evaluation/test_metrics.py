import numpy as np
import pytest

from marrowdiff.classes import load_vocabulary
from marrowdiff.evaluation.metrics import (
    adjacent_stage_accuracy,
    bootstrap_ci,
    classification_metrics,
    invariance_summary,
    misclassified_html,
)
from marrowdiff.inference.dualstage import combine

VOCAB = load_vocabulary()
CLASSES = ["myeloblast", "promyelocyte", "myelocyte", "pronormoblast"]


def test_metrics_against_hand_computed_values():
    y_true = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    y_pred = np.array([0, 0, 1, 1, 2, 2, 3, 0])
    m = classification_metrics(y_true, y_pred, CLASSES, VOCAB)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # class 0: tp 2, fp 1 (a 3 predicted 0), fn 1 -> p = r = 2/3
    assert m["per_class"]["myeloblast"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    # class 2: tp 1, fp 1, fn 0 -> p 1/2, r 1, f1 2/3
    assert m["per_class"]["myelocyte"]["f1"] == pytest.approx(2 / 3)
    weighted_recall = (3 * 2 / 3 + 2 * 1 / 2 + 1 * 1 + 2 * 1 / 2) / 8
    assert m["recall_weighted"] == pytest.approx(weighted_recall)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1 + 1 / 2) / 4)
    # adjacent: 0->1 and 1->2 are neighbouring myeloid stages; 3->0 crosses lineages
    assert m["adjacent_stage_accuracy"] == pytest.approx(7 / 8)
    assert m["confusion_matrix"]["matrix"][3] == [1, 0, 0, 1]


def test_adjacent_stage_accuracy_is_lineage_aware():
    classes = ["orthochromatic_normoblast", "myeloblast"]
    # orthochromatic (erythroid 4) and myeloblast (myeloid 1): different lineages
    assert adjacent_stage_accuracy(np.array([0]), np.array([1]), classes, VOCAB) == 0.0


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 4, 200))
    ci = bootstrap_ci(y_true, y_pred, CLASSES, VOCAB, n=300)
    accuracy = np.mean(y_true == y_pred)
    assert ci["accuracy"][0] < accuracy < ci["accuracy"][1]
    assert 0.05 < ci["accuracy"][1] - ci["accuracy"][0] < 0.2


def test_dual_stage_local_model_decides_within_its_pair():
    classes = ["a", "band", "seg"]
    global_ = np.array(
        [
            [0.1, 0.5, 0.4],  # global picks band -> the local model decides
            [0.7, 0.2, 0.1],  # global picks a -> untouched
            [0.2, 0.3, 0.5],
        ]
    )  # global picks seg -> local decides
    local = np.array([[0.2, 0.8], [0.9, 0.1], [0.9, 0.1]])
    out = combine(global_, classes, [(local, ["band", "seg"])])
    np.testing.assert_allclose(out[0], [0.1, 0.18, 0.72])  # mass 0.9 split 0.2:0.8
    np.testing.assert_allclose(out[1], global_[1])
    np.testing.assert_allclose(out[2], [0.2, 0.72, 0.08])
    np.testing.assert_allclose(out.sum(1), 1)
    with pytest.raises(ValueError, match="not global classes"):
        combine(global_, classes, [(local, ["band", "eosinophil"])])


def test_invariance_summary():
    preds = np.array([[0, 1, 1], [0, 1, 0], [1, 1, 1]])  # identity, two transforms
    s = invariance_summary(["identity", "t1", "t2"], preds, np.array([0, 1, 1]), ["x", "y"])
    assert s["overall"] == pytest.approx([1, 2 / 3, 2 / 3])
    assert s["per_class"]["x"] == [1, 1, 0]


def test_misclassified_page_is_self_contained():
    images = {"b<.png": np.zeros((20, 20, 3), np.uint8)}  # the misclassified one's only
    page = misclassified_html(
        ["a.png", "b<.png"],
        images,
        np.array([0, 1]),
        np.array([[0.9, 0.1], [0.8, 0.2]]),
        ["X", "Y"],
        "t",
    )
    assert page.count('class="card"') == 1 and "b&lt;.png" in page
    assert "1 of 2 cells misclassified" in page
    assert "data:image/jpeg;base64," in page and "http" not in page


def test_the_misclassified_page_of_a_large_split_shows_the_most_confident_mistakes_only():
    from marrowdiff.evaluation.metrics import shown_mistakes

    y_true = np.zeros(6, np.int64)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.3, 0.7], [0.8, 0.2]])
    assert shown_mistakes(y_true, proba, limit=2).tolist() == [3, 1]  # 0.9, then 0.8 sure
    paths = [f"{k}.png" for k in range(6)]
    images = {p: np.zeros((8, 8, 3), np.uint8) for p in ("3.png", "1.png")}  # only those
    page = misclassified_html(paths, images, y_true, proba, ["X", "Y"], "t", limit=2)
    assert page.count('class="card"') == 2
    assert "4 of 6 cells misclassified; the 2 most confident are shown" in page


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_the_bootstraps_figures_are_scikit_learns():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from marrowdiff.evaluation.metrics import _headline_of

    rng = np.random.default_rng(4)
    for _ in range(20):  # classes missing from truth, from predictions, or from both
        t, p = rng.integers(0, 6, 40), rng.integers(0, 8, 40)
        t[t == 3] = 4
        present = np.unique(t)
        expected = (
            np.mean(t == p),
            f1_score(t, p, average="weighted", zero_division=0),
            f1_score(t, p, labels=present, average="macro", zero_division=0),
            np.mean([np.mean(p[t == c] == c) for c in present]),
        )
        np.testing.assert_allclose(_headline_of(t, p, 10), expected, rtol=1e-12)
    assert np.isclose(balanced_accuracy_score(t, p), _headline_of(t, p, 10)[3])
