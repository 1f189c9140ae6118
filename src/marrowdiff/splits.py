"""Group-aware stratified splits: the paper's 5:1 train-validation : test split and 5-fold CV.

Every group (a duplicate group found by the audit, or a user-given patient/slide/smear id, and
the union of the two where they overlap) stays on one side of every split, so no cell, and no
patient when groups are given, is both trained on and tested on. The outer split is one fold of a
6-fold stratified group k-fold, so `test_fold` 0..5 gives the six disjoint test sets of a 6-fold
cross-validation. The result depends only on the listing and the seed: same input, same bytes.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import sklearn
from sklearn.model_selection import StratifiedGroupKFold

from marrowdiff import __version__

SPLITS_VERSION = 1


class SplitError(ValueError):
    """The data cannot be split as asked."""


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 0
    test_folds: int = 6  # the test set is 1 of 6 folds: train-validation : test = 5:1
    test_fold: int = 0  # which outer fold is the test set (0..test_folds-1)
    folds: int = 5  # cross-validation folds of the train-validation part (4:1)


def merge_groups(
    paths: list[str], user_groups: list[str | None], duplicate_groups: list[list[str]]
) -> list[str]:
    """One group id per item: user groups joined with duplicate groups (union of overlaps)."""
    index = {p: i for i, p in enumerate(paths)}
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[str, int] = {}
    for i, group in enumerate(user_groups):
        if group is not None:
            parent[root(i)] = root(first_of.setdefault(group, i))
    for members in duplicate_groups:
        present = [index[p] for p in members if p in index]
        for i in present[1:]:
            parent[root(i)] = root(present[0])
    return [paths[root(i)] for i in range(len(paths))]


def make_splits(
    paths: list[str],
    labels: list[str],
    groups: list[str],
    classes: list[str],
    config: SplitConfig = SplitConfig(),
) -> dict:
    """Test split and CV folds as lists of paths, with per-split counts and warnings."""
    if not 0 <= config.test_fold < config.test_folds:
        raise SplitError(f"test_fold must be in 0..{config.test_folds - 1}, got {config.test_fold}")
    order = np.argsort(paths, kind="stable")  # independent of scan order
    paths = [paths[i] for i in order]
    labels = np.array([labels[i] for i in order])
    groups = np.array([groups[i] for i in order])
    warn: list[str] = []
    everything = np.arange(len(paths))

    outer = _group_folds(everything, labels, groups, config.test_folds, config.seed, "test", warn)
    test = everything[outer == config.test_fold]
    test = _keep_in_training(test, everything, labels, groups, "the test set", warn)
    pool = np.setdiff1d(everything, test)

    inner = _group_folds(pool, labels, groups, config.folds, config.seed, "cross-validation", warn)
    folds = []
    for k in range(config.folds):
        val = _keep_in_training(
            pool[inner == k], pool, labels, groups, f"validation fold {k}", warn
        )
        folds.append(
            {"train": [paths[i] for i in np.setdiff1d(pool, val)], "val": [paths[i] for i in val]}
        )

    def count(idx) -> dict[str, int]:
        found = Counter(labels[list(idx)].tolist())
        return {c: found.get(c, 0) for c in classes}

    index = {p: i for i, p in enumerate(paths)}
    multi = defaultdict(list)
    for p, g in zip(paths, groups, strict=True):
        multi[g].append(p)
    return {
        "splits_version": SPLITS_VERSION,
        "marrowdiff_version": __version__,
        "sklearn_version": sklearn.__version__,  # its StratifiedGroupKFold decides the folds
        "config": asdict(config),
        "classes": list(classes),
        "n_images": len(paths),
        "n_groups": len(multi),
        "labels": dict(zip(paths, labels.tolist(), strict=True)),
        "groups": [members for members in multi.values() if len(members) > 1],
        "test": [paths[i] for i in test],
        "folds": folds,
        "counts": {
            "test": count(test),
            "folds": [
                {
                    "train": count(index[p] for p in f["train"]),
                    "val": count(index[p] for p in f["val"]),
                }
                for f in folds
            ],
        },
        "warnings": warn,
    }


def _group_folds(
    items: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    k: int,
    seed: int,
    what: str,
    warn: list[str],
) -> np.ndarray:
    """Fold number (0..k-1) for each of `items`, stratified by label, groups kept whole."""
    n_groups = len(set(groups[items].tolist()))
    if n_groups < k:
        raise SplitError(
            f"{what}: {len(items)} images in {n_groups} groups cannot make {k} folds; "
            "add data or ask for fewer folds"
        )
    per_class = defaultdict(set)
    for i in items:
        per_class[str(labels[i])].add(groups[i])
    for label, found in sorted(per_class.items()):
        if len(found) < k:
            warn.append(
                f"{what}: class {label!r} has only {len(found)} independent group(s), "
                f"fewer than the {k} folds: it is missing from some folds, and never "
                "leaves training where it would be its only example"
            )
    folds = np.empty(len(items), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # restated above, per class
        for fold, (_, held) in enumerate(splitter.split(items, labels[items], groups[items])):
            folds[held] = fold
    return folds


def _keep_in_training(
    held: np.ndarray,
    pool: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    what: str,
    warn: list[str],
) -> np.ndarray:
    """Return `held` less any group whose class would otherwise be absent from training."""
    rest = np.setdiff1d(pool, held)
    trained = set(labels[rest].tolist())
    missing = sorted(set(labels[held].tolist()) - trained)
    if not missing:
        return held
    back = {groups[i] for i in held if labels[i] in missing}
    warn.append(
        f"{what}: class(es) {', '.join(map(repr, missing))} would have no training "
        "example; their images stay in training instead"
    )
    return np.array([i for i in held if groups[i] not in back], dtype=int)


def splits_for_dataset(dataset, audit: dict, config: SplitConfig = SplitConfig()) -> dict:
    """Splits of a scanned data set's readable images, duplicate groups from its audit."""
    if audit.get("fingerprint") != dataset.fingerprint:
        raise SplitError(
            f"the audit was made for another listing of {dataset.source} "
            "(fingerprint differs); run `marrowdiff audit` again"
        )
    unreadable = {s["path"] for s in audit["skipped"]}
    records = [r for r in dataset.records if r.path not in unreadable]
    paths = [r.path for r in records]
    duplicates = [[m["path"] for m in g["members"]] for g in audit["duplicate_groups"]]
    groups = merge_groups(paths, [r.group for r in records], duplicates)
    splits = make_splits(
        paths, [r.label for r in records], groups, list(dataset.vocabulary.codes), config
    )
    splits["dataset"] = {
        "source": str(dataset.source),
        "fingerprint": dataset.fingerprint,
        "vocabulary": dataset.vocabulary.name,
    }
    check_splits(splits)
    return splits


def check_splits(splits: dict) -> None:
    """Raise SplitError if any group crosses a split or any path is lost or repeated."""
    group_of = {p: i for i, members in enumerate(splits["groups"]) for p in members}
    test = set(splits["test"])
    everything = set(splits["labels"])
    for k, fold in enumerate(splits["folds"]):
        train, val = set(fold["train"]), set(fold["val"])
        if train & val or (train | val) & test or (train | val | test) != everything:
            raise SplitError(f"fold {k}: the split does not partition the data")
        for side, other in ((train, val | test), (val, train | test), (test, train | val)):
            crossing = {group_of[p] for p in side if p in group_of} & {
                group_of[p] for p in other if p in group_of
            }
            if crossing:
                raise SplitError(
                    f"fold {k}: duplicate/patient groups cross the split: "
                    f"{[splits['groups'][g] for g in sorted(crossing)]}"
                )
