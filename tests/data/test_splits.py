import json
from collections import Counter

import pytest

from marrowdiff.data.splits import (
    SplitConfig,
    SplitError,
    Splits,
    check_splits,
    make_splits,
    merge_groups,
)

CLASSES = ["a", "b", "c"]


def _data(n_per_class=(60, 30, 30)):
    paths, labels = [], []
    for label, n in zip(CLASSES, n_per_class, strict=True):
        paths += [f"{label}/{k}.png" for k in range(n)]
        labels += [label] * n
    return paths, labels


def test_five_to_one_stratified_and_a_partition():
    paths, labels = _data()
    splits = make_splits(paths, labels, list(paths), CLASSES)
    check_splits(splits)
    assert len(splits["test"]) == 20  # 120 / 6
    assert splits["counts"]["test"] == {"a": 10, "b": 5, "c": 5}
    assert len(splits["folds"]) == 5
    for fold, counts in zip(splits["folds"], splits["counts"]["folds"], strict=True):
        assert len(fold["val"]) == 20 and len(fold["train"]) == 80
        assert counts["val"] == {"a": 10, "b": 5, "c": 5}
    vals = [p for fold in splits["folds"] for p in fold["val"]]
    assert sorted(vals) == sorted(set(paths) - set(splits["test"]))  # CV val sets partition
    assert splits["warnings"] == []


def test_groups_never_cross_a_split():
    paths, labels = _data()
    groups = [f"patient{k % 17}" for k in range(len(paths))]
    splits = make_splits(paths, labels, groups, CLASSES)
    check_splits(splits)
    group_of = dict(zip(paths, groups, strict=True))
    test_groups = {group_of[p] for p in splits["test"]}
    for fold in splits["folds"]:
        train = {group_of[p] for p in fold["train"]}
        assert not train & test_groups
        assert not train & {group_of[p] for p in fold["val"]}


def test_reproducible_bit_for_bit_and_independent_of_order():
    paths, labels = _data()
    one = json.dumps(make_splits(paths, labels, list(paths), CLASSES, SplitConfig(seed=3)))
    two = json.dumps(
        make_splits(paths[::-1], labels[::-1], list(paths[::-1]), CLASSES, SplitConfig(seed=3))
    )
    assert one == two
    other_seed = make_splits(paths, labels, list(paths), CLASSES, SplitConfig(seed=4))
    assert other_seed["test"] != json.loads(one)["test"]


def test_the_six_test_folds_cover_the_data_once():
    paths, labels = _data()
    tests = [
        make_splits(paths, labels, list(paths), CLASSES, SplitConfig(test_fold=k))["test"]
        for k in range(6)
    ]
    assert sorted(p for t in tests for p in t) == sorted(paths)


def test_tiny_class_warns_and_stays_in_training():
    paths, labels = _data((60, 30, 1))  # class "c" has one image
    splits = make_splits(paths, labels, list(paths), CLASSES)
    check_splits(splits)
    assert "c/0.png" not in splits["test"]
    assert all("c/0.png" in fold["train"] for fold in splits["folds"])
    assert any("'c' has only 1" in w for w in splits["warnings"])
    assert any("no training example" in w for w in splits["warnings"])


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(SplitError, match="cannot make 6 folds"):
        make_splits(["a/1", "a/2", "b/1"], ["a", "a", "b"], ["g", "g", "h"], CLASSES)


def test_merge_groups_joins_user_groups_through_duplicates():
    paths = ["p1", "p2", "p3", "p4", "p5"]
    user = ["slide1", "slide2", "slide2", None, None]
    merged = merge_groups(paths, user, duplicate_groups=[["p1", "p3"], ["p4", "p5"], ["x", "p4"]])
    assert len(set(merged[:3])) == 1  # p1~p3 by duplicate, p2~p3 by slide
    assert merged[3] == merged[4] != merged[0]


def test_check_splits_catches_a_leak():
    paths, labels = _data()
    splits = make_splits(paths, labels, list(paths), CLASSES)
    splits["groups"] = [[splits["test"][0], splits["folds"][0]["train"][0]]]
    with pytest.raises(SplitError, match="cross the split"):
        check_splits(splits)


def test_counts_match_lists():
    paths, labels = _data()
    splits = make_splits(paths, labels, list(paths), CLASSES)
    label_of = splits["labels"]
    assert Counter(label_of[p] for p in splits["test"]) == Counter(
        {k: v for k, v in splits["counts"]["test"].items() if v}
    )


def test_splits_file_round_trips_and_names_its_folds(tmp_path):
    paths, labels = _data()
    data = make_splits(paths, labels, list(paths), CLASSES)
    written = Splits(data).write(tmp_path)
    splits = Splits.read(tmp_path)
    assert written == tmp_path / "splits.json" and splits.to_dict() == data
    train, val = splits.fold(2)
    assert (train, val) == (data["folds"][2]["train"], data["folds"][2]["val"])
    everything, none = splits.fold(-1)
    assert sorted(everything) == sorted(set(paths) - set(data["test"])) and none == []
    with pytest.raises(SplitError, match="fold 5 does not exist"):
        splits.fold(5)
    assert splits.of_classes(paths[:6], ["b"]) == [p for p in paths[:6] if p.startswith("b/")]


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"splits_version": 99}', "\xff"])
def test_a_damaged_splits_file_is_refused_by_name(tmp_path, text):
    path = tmp_path / "splits.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SplitError, match="splits") as error:
        Splits.read(path)
    assert str(path) in str(error.value)
