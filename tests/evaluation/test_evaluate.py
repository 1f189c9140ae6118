"""The evaluate stage: held-out cells selected, scored and written, against known answers."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from marrowdiff.classes import load_vocabulary
from marrowdiff.evaluation.evaluate import EvalConfig, HeldOut, evaluate_run, held_out, score
from marrowdiff.labels import LabelSpace

MARROW14 = load_vocabulary("marrow14")
CLASSES = ["promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil"]  # IG: the first 3


@dataclass
class FakeClassifier:
    classes: list
    vocabulary: object = MARROW14
    dual_stage: bool = False


class FakeSplits:
    def __init__(self, labels: dict[str, str]):
        self.labels = labels


def one_hot(indices: list[int], n: int = 4) -> np.ndarray:
    return np.eye(n)[indices]


def test_held_out_keeps_fine_and_coarse_cells_and_counts_the_rest():
    labels = {"a": "myelocyte", "b": "IG", "c": "lymphocyte", "d": "band_neutrophil"}
    cells = held_out(_dataset(), FakeSplits(labels), ["a", "b", "c", "d"], FakeClassifier(CLASSES))
    assert cells.paths == ["a", "b", "d"]  # a lymphocyte is no class of this model
    assert cells.left_out == 1
    assert cells.space.fine(cells.labels).tolist() == [True, False, True]


def test_score_by_hand():
    space = LabelSpace.of(MARROW14, CLASSES, ["immature_granulocyte"])
    ig = space.labels.index("immature_granulocyte")
    # fine: myelocyte right, metamyelocyte taken for a myelocyte, two bands right: 3 of 4;
    # coarse: an IG called metamyelocyte is in its set, one called band is not: 1 of 2
    labels = np.array([1, 2, 3, 3, ig, ig])
    proba = one_hot([1, 1, 3, 3, 2, 3])
    cells = HeldOut(None, list("abcdef"), labels, space, left_out=0)
    metrics = score(cells, proba, proba, FakeClassifier(CLASSES))
    assert metrics["n"] == 4 and metrics["accuracy"] == 0.75
    assert metrics["confusion_matrix"]["matrix"] == [
        [0, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 2],
    ]
    assert metrics["per_class"]["myelocyte"]["precision"] == 0.5
    assert metrics["coarse"] == {
        "n": 2,
        "accuracy": 0.5,
        "per_label": {"immature_granulocyte": {"n": 2, "accuracy": 0.5}},
    }
    assert "global_only" not in metrics


def test_score_of_a_dual_stage_set_keeps_the_global_model_alone_beside_it():
    space = LabelSpace.of(MARROW14, CLASSES)
    cells = HeldOut(None, list("abcd"), np.array([1, 2, 3, 3]), space, left_out=0)
    base, refined = one_hot([1, 2, 2, 2]), one_hot([1, 2, 3, 3])
    metrics = score(cells, base, refined, FakeClassifier(CLASSES, dual_stage=True))
    assert metrics["accuracy"] == 1.0 and metrics["global_only"]["accuracy"] == 0.5


def test_evaluate_run_scores_what_the_classifier_predicts(tiny_run, tmp_path):
    from marrowdiff.data.splits import Splits
    from marrowdiff.inference.predict import load_classifier
    from marrowdiff.run import load_checkpoint

    metrics = evaluate_run([tiny_run], EvalConfig(out=tmp_path), log=lambda m: None)
    # the known answer: the model's own predictions on its test cells, computed apart
    checkpoint = load_checkpoint(tiny_run)
    dataset = checkpoint.dataset()
    test = Splits.read(tiny_run).test
    classifier = load_classifier([tiny_run])
    predicted = classifier.proba(dataset.load_paths(test)).argmax(1)
    truth = [classifier.classes.index(Splits.read(tiny_run).labels[p]) for p in test]
    assert metrics["n"] == len(test) and metrics["left_out"] == 0
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == np.array(truth)))
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert np.array(metrics["confusion_matrix"]["matrix"]).sum() == len(test)
    page = (tmp_path / "misclassified.html").read_text()
    assert page.count('class="card"') == int((predicted != np.array(truth)).sum())


def test_evaluate_refuses_a_split_it_cannot_score(tiny_run, tmp_path):
    from marrowdiff.data.splits import SplitError

    with pytest.raises(SplitError, match="needs --data"):
        evaluate_run([tiny_run], EvalConfig(splits_file=tmp_path / "s.json"), log=print)
    with pytest.raises(SplitError, match="use test, or val"):
        evaluate_run([tiny_run], EvalConfig(split="train", out=tmp_path), log=print)


def _dataset():
    class Named:
        source = "here"

    return Named()


def test_invariance_and_a_dual_stage_set(tiny_run, tiny_local_run, tmp_path):
    quiet = lambda m: None  # noqa: E731
    single = evaluate_run([tiny_run], EvalConfig(out=tmp_path, invariance=True), log=quiet)
    invariance = json.loads((tmp_path / "invariance.json").read_text())
    assert invariance["transforms"][0] == "identity" and invariance["overall"][0] == 1.0
    assert len(invariance["transforms"]) == 8 + 16 and (tmp_path / "invariance.png").is_file()
    assert single["invariance_min"] == min(invariance["overall"])
    lo, hi = single["ci95"]["accuracy"]
    assert lo <= single["accuracy"] <= hi
    dual = evaluate_run([tiny_run, tiny_local_run], EvalConfig(out=tmp_path), log=quiet)
    assert dual["dual_stage"] and dual["global_only"]["accuracy"] == single["accuracy"]
    assert json.loads((tmp_path / "metrics-test-dual.json").read_text())["n"] == dual["n"]
