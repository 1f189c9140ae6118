"""Group-aware stratified splits: the paper's 5:1 train-validation : test split and 5-fold CV.

Every group (a duplicate group found by the audit, or a user-given patient/slide/smear id, and
the union of the two where they overlap) stays on one side of every split, so no cell, and no
patient when groups are given, is both trained on and tested on. The outer split is one fold of a
6-fold stratified group k-fold, so `test_fold` 0..5 gives the six disjoint test sets of a 6-fold
cross-validation. The result depends only on the listing and the seed: same input, same bytes.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import sklearn
from sklearn.model_selection import StratifiedGroupKFold

from marrowdiff import __version__
from marrowdiff.data.duplicates import components
from marrowdiff.errors import UserError
from marrowdiff.fileio import write_json

SPLITS_VERSION = 1
AUDIT_DIR = "audit"  # where `splits_for_run` audits a data set it splits, beside splits.json


class SplitError(UserError, ValueError):
    """The data cannot be split as asked."""


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 0
    test_folds: int = 6  # the test set is 1 of 6 folds: train-validation : test = 5:1
    test_fold: int = 0  # which outer fold is the test set (0..test_folds-1)
    folds: int = 5  # cross-validation folds of the train-validation part (4:1)


class Splits:
    """A data set's splits (`splits.json`): the one reader and writer of that file.

    `labels` maps every split path to its class code; `test` lists the test paths; `fold(k)`
    gives the (train, val) paths of CV fold k, and fold -1 all of train-validation with no
    validation part. The JSON itself stays as `make_splits` wrote it (`to_dict`)."""

    FILE = "splits.json"

    def __init__(self, data: dict, source: str = "<splits>"):
        if data.get("splits_version") != SPLITS_VERSION or not all(
            k in data for k in ("labels", "test", "folds")
        ):
            raise SplitError(
                f"{source}: not a marrowdiff splits file (version "
                f"{data.get('splits_version')!r}); make one with `marrowdiff split`"
            )
        self._data, self.source = data, source

    @classmethod
    def read(cls, path: str | Path, dataset=None) -> Splits:
        """A splits.json file, or the one in a folder; with the `dataset` it splits, its paths
        are the records' own string objects (memory: one string per image, not two)."""
        path = Path(path)
        path = path / cls.FILE if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no splits file; make one with `marrowdiff split DATA --out DIR`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SplitError(
                f"{path}: not a readable splits file ({error}); make one with `marrowdiff split`"
            ) from None
        if not isinstance(data, dict):
            raise SplitError(
                f"{path}: not a marrowdiff splits file; make one with `marrowdiff split`"
            )
        return cls(_shared_paths(data, dataset), str(path))

    def write(self, folder: str | Path) -> Path:
        """FOLDER/splits.json, atomically; returns its path."""
        path = Path(folder) / self.FILE
        write_json(path, self._data)
        return path

    def to_dict(self) -> dict:
        return self._data

    @property
    def labels(self) -> dict[str, str]:
        return self._data["labels"]

    @property
    def test(self) -> list[str]:
        return self._data["test"]

    @property
    def n_folds(self) -> int:
        return len(self._data["folds"])

    @property
    def fingerprint(self) -> str | None:
        return self._data.get("dataset", {}).get("fingerprint")

    @property
    def config(self) -> dict:
        return self._data.get("config", {})

    @property
    def warnings(self) -> list[str]:
        return self._data.get("warnings", [])

    def classes_present(self) -> set[str]:
        return set(self.labels.values())

    def fold(self, k: int) -> tuple[list[str], list[str]]:
        """(train, val) paths of CV fold k; fold -1 trains on all of train-validation, no val."""
        if k == -1:
            return sorted(set(self.labels) - set(self.test)), []
        if not 0 <= k < self.n_folds:
            raise SplitError(f"fold {k} does not exist: the splits have {self.n_folds}")
        fold = self._data["folds"][k]
        return fold["train"], fold["val"]

    def of_classes(self, paths: list[str], classes: list[str]) -> list[str]:
        """The paths whose class is one of `classes`, in order."""
        keep = set(classes)
        return [p for p in paths if self.labels[p] in keep]

    def label_indices(self, paths: list[str], classes: list[str]) -> np.ndarray:
        """(N,) int64 index into `classes` of each path's class."""
        return np.array([classes.index(self.labels[p]) for p in paths], dtype=np.int64)

    def summary(self) -> str:
        sizes = ", ".join(f"{len(f['train'])}/{len(f['val'])}" for f in self._data["folds"])
        return (
            f"{self._data['n_images']} images in {self._data['n_groups']} groups: "
            f"test {len(self.test)}, folds train/val {sizes}"
        )


def _shared_paths(data: dict, dataset=None) -> dict:
    """The same splits with each path one string object wherever it is listed, the data set
    record's when there is one, and each class code one object (JSON makes a new string per
    occurrence: 7 per image, about 70 MB at 200,000 images)."""
    labels = data.get("labels")
    if not isinstance(labels, dict):
        return data

    def canonical(path: str) -> str:
        if dataset is not None:
            with contextlib.suppress(KeyError, TypeError):
                return dataset.record(path).path
        return path

    one = {p: canonical(p) for p in labels}
    codes: dict = {}
    data["labels"] = {
        one[p]: codes.setdefault(c, c) if isinstance(c, str) else c for p, c in labels.items()
    }
    del labels

    def shared(paths):
        return [one.get(p, p) for p in paths] if isinstance(paths, list) else paths

    data["test"] = shared(data.get("test"))
    for fold in data.get("folds") or []:
        if isinstance(fold, dict):
            fold.update({k: shared(v) for k, v in fold.items() if k in ("train", "val")})
    return data


def derive_splits(parent: Splits, sources: dict[str, str], labels: dict[str, str]) -> dict:
    """The splits of a data set made from another's images (`sources`: each new path's parent
    image; `labels`: each new path's class): every new path goes where its parent went, in the
    test set and in each fold, so that nothing made from a test image ever trains (leak-free).
    Paths whose parent is not in `parent` are left out."""
    known = {p: s for p, s in sources.items() if s in parent.labels}
    test = set(parent.test)

    def side(members) -> list[str]:
        members = set(members)
        return sorted(p for p, s in known.items() if s in members)

    folds = [{"train": side(f["train"]), "val": side(f["val"])} for f in parent.to_dict()["folds"]]
    return {
        "splits_version": SPLITS_VERSION,
        "marrowdiff_version": __version__,
        "config": parent.config,
        "derived_from": parent.source,
        "classes": sorted({labels[p] for p in known}),
        "n_images": len(known),
        "labels": {p: labels[p] for p in sorted(known)},
        "groups": [],
        "test": sorted(p for p, s in known.items() if s in test),
        "folds": folds,
        "warnings": [],
    }


def merge_groups(
    paths: list[str], user_groups: list[str | None], duplicate_groups: list[list[str]]
) -> list[str]:
    """One group id per item: user groups joined with duplicate groups (union of overlaps);
    the id is the first path of the group."""
    index = {p: i for i, p in enumerate(paths)}
    edges: list[tuple[int, int]] = []
    first_of: dict[str, int] = {}
    for i, group in enumerate(user_groups):
        if group is not None:
            edges.append((i, first_of.setdefault(group, i)))
    for members in duplicate_groups:
        present = [index[p] for p in members if p in index]
        edges += [(present[0], i) for i in present[1:]]
    label = components(len(paths), edges)
    first = {}
    for i, k in enumerate(label):
        first.setdefault(k, i)
    return [paths[first[k]] for k in label]


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
        "counts": _counts(paths, labels, classes, test, folds),
        "warnings": warn,
    }


def _counts(paths, labels: np.ndarray, classes: list[str], test, folds: list[dict]) -> dict:
    """Images per class in the test set and in each fold's train and val sides."""
    index = {p: i for i, p in enumerate(paths)}

    def count(idx) -> dict[str, int]:
        found = Counter(labels[list(idx)].tolist())
        return {c: found.get(c, 0) for c in classes}

    return {
        "test": count(test),
        "folds": [
            {"train": count(index[p] for p in f["train"]), "val": count(index[p] for p in f["val"])}
            for f in folds
        ],
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


def splits_for_dataset(dataset, audit: dict, config: SplitConfig = SplitConfig()) -> Splits:
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
    return Splits(splits, f"splits of {dataset.source}")


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


def splits_for_run(
    dataset,
    out: Path,
    splits_file: Path | None = None,
    config: SplitConfig | None = None,
    log=print,
) -> Splits:
    """The splits a run in `out` trains on: `splits_file` (which must be of this data set), or
    OUT/splits.json if it was made with this config for this listing, or else the data set
    audited into OUT/audit/ and split now into OUT/splits.json."""
    from marrowdiff.data.audit import run_audit

    config = config or SplitConfig()
    if splits_file is not None:
        splits = Splits.read(splits_file, dataset)
        if splits.fingerprint != dataset.fingerprint:
            raise SplitError(
                f"{splits_file} was made for another listing than {dataset.source};"
                " run `marrowdiff split` on this data set"
            )
        return splits
    path = Path(out) / Splits.FILE
    if path.is_file():
        splits = Splits.read(path, dataset)
        if splits.fingerprint == dataset.fingerprint and splits.config == asdict(config):
            return splits
    log(
        f"auditing and splitting {dataset.source} (seed {config.seed}, "
        f"test fold {config.test_fold})"
    )
    audit = run_audit(dataset, Path(out) / AUDIT_DIR, log=log)
    if audit["n_conflicting_groups"]:
        log(
            f"{audit['n_conflicting_groups']} cell(s) filed under two classes; kept together "
            f"in the splits. See {Path(out) / AUDIT_DIR / 'audit.html'}"
        )
    splits = splits_for_dataset(dataset, audit, config)
    splits.write(out)
    return splits
