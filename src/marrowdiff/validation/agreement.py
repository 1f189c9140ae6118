"""Agreement on cells' classes between reviewers, and between a model and their consensus.

A verdict is a class code, or an outcome that is not a class ("not_a_cell", "unidentified").
Every statistic comes from a maintained implementation: Cohen's kappa and the confusion matrix
from scikit-learn, Fleiss' kappa from statsmodels; what is computed here is only which pairs
of verdicts to give them. Per class, agreement is the kappa of "this class or not" (one class
against the rest), so that a class's agreement between reviewers and between the model and
the consensus are the same measure.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from marrowdiff.classes import Vocabulary

OUTCOMES = ("not_a_cell", "unidentified")


def kappa(a: Sequence[str], b: Sequence[str], labels: Sequence[str] | None = None) -> float | None:
    """Cohen's kappa of two raters' verdicts on the same cells (scikit-learn); None when it is
    undefined (no cells, or both gave one and the same verdict to every cell)."""
    if not len(a) or (len(set(a)) == 1 and set(a) == set(b)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0: undefined, returned as None
        value = cohen_kappa_score(list(a), list(b), labels=labels)
    return None if not np.isfinite(value) else round(float(value), 4)


def one_class_kappa(a: Sequence[str], b: Sequence[str], code: str) -> float | None:
    """Cohen's kappa of "this class or not": one class's agreement."""
    return kappa([x == code for x in a], [y == code for y in b], labels=[False, True])


def fleiss(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa (statsmodels) of cells each rated by the same number of raters (not
    necessarily the same people); None when undefined."""
    if len(ratings) < 2 or len({len(r) for r in ratings}) != 1 or len(ratings[0]) < 2:
        return None
    categories = sorted({v for r in ratings for v in r})
    index = {c: i for i, c in enumerate(categories)}
    table, _ = aggregate_raters(np.array([[index[v] for v in r] for r in ratings]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = fleiss_kappa(table, method="fleiss")
    return None if not np.isfinite(value) else round(float(value), 4)


def adjacent(a: str, b: str, vocabulary: Vocabulary) -> bool:
    """The same verdict, or neighbouring stages of one lineage (an outcome matches itself)."""
    if a == b:
        return True
    if a in OUTCOMES or b in OUTCOMES or a not in vocabulary.codes or b not in vocabulary.codes:
        return False
    return vocabulary.adjacent(a, b)


def pair(a: Sequence[str], b: Sequence[str], vocabulary: Vocabulary, names=("a", "b")) -> dict:
    """How two raters' verdicts on the same cells agree: percent agreement, adjacent-stage
    agreement, Cohen's kappa, each class's kappa (class or not), and the confusion matrix
    (rows: the first rater, columns: the second)."""
    a, b = list(a), list(b)
    labels = categories(a + b, vocabulary)
    n = len(a)
    return {
        "raters": list(names),
        "cells": n,
        "percent": round(100 * sum(x == y for x, y in zip(a, b, strict=True)) / n, 2)
        if n
        else None,
        "adjacent_percent": round(
            100 * sum(adjacent(x, y, vocabulary) for x, y in zip(a, b, strict=True)) / n, 2
        )
        if n
        else None,
        "kappa": kappa(a, b, labels),
        "per_class": {c: one_class_kappa(a, b, c) for c in labels},
        "labels": labels,
        "confusion": _confusion(a, b, labels),
    }


def _confusion(a: list[str], b: list[str], labels: list[str]) -> list[list[int]]:
    """scikit-learn's confusion matrix (one verdict throughout: one cell, without its
    warning)."""
    if len(labels) < 2:
        return [[len(a)]] if labels else []
    return confusion_matrix(a, b, labels=labels).tolist()


def categories(verdicts: Sequence[str], vocabulary: Vocabulary) -> list[str]:
    """The verdicts present, in the vocabulary's order, the outcomes last."""
    present = set(verdicts)
    known = [c for c in vocabulary.codes if c in present]
    return known + sorted(present - set(known))


def reviewers(verdicts: Mapping[object, Mapping[str, str]], vocabulary: Vocabulary) -> dict:
    """Agreement between reviewers over cells ({cell: {reviewer: verdict}}, cells of one case or
    of many): each pair of reviewers on the cells both saw; every pair of verdicts on a cell
    pooled (`pooled`: the reviewers may differ from case to case); the share of cells on which
    all agreed; and Fleiss' kappa over the cells with the most common number of verdicts."""
    multi = {cell: said for cell, said in verdicts.items() if len(said) >= 2}
    names = sorted({name for said in multi.values() for name in said})
    pairs = []
    for x, y in combinations(names, 2):
        shared = [said for said in multi.values() if x in said and y in said]
        if shared:
            pairs.append(pair([s[x] for s in shared], [s[y] for s in shared], vocabulary, (x, y)))
    first, second = [], []
    for said in multi.values():
        for x, y in combinations(sorted(said), 2):
            first.append(said[x])
            second.append(said[y])
    counts = [len(said) for said in multi.values()]
    m = max(set(counts), key=counts.count) if counts else 0
    return {
        "cells": len(multi),
        "reviewers": names,
        "all_agree_percent": round(
            100 * sum(len(set(s.values())) == 1 for s in multi.values()) / len(multi), 2
        )
        if multi
        else None,
        "fleiss_kappa": fleiss([sorted(s.values()) for s in multi.values() if len(s) == m]),
        "pooled": pair(first, second, vocabulary, ("one reviewer", "another")),
        "pairs": pairs,
    }
