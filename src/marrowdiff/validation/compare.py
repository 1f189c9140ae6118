"""The method comparison: a model's classes against a reviewed reference, cell by cell and
differential by differential, over a set of signed cases.

A case's reference is its exported consensus (`web.station`: manifest.csv and case.json). The
reference differential counts each cell whose consensus is a counted class; a cell between two
stages ("A|B") counts half to each. The model's differential counts every exported cell the
model puts in a counted class, as it would count them alone. Cell by cell, the model agrees
with a "between" cell when it names either stage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from marrowdiff.classes import BETWEEN, Vocabulary
from marrowdiff.validation.agreement import OUTCOMES, one_class_kappa, pair
from marrowdiff.validation.comparison import bland_altman, deming
from marrowdiff.validation.intervals import rumke


@dataclass(frozen=True)
class ReferenceCell:
    path: str  # the crop, in the case's export
    consensus: str  # a class, "A|B", or an outcome that is not counted
    reviewers: dict[str, str] = field(default_factory=dict)  # each reviewer's verdict


@dataclass(frozen=True)
class ReferenceCase:
    name: str
    about: dict  # the export's case.json
    cells: tuple[ReferenceCell, ...]


def _members(label: str) -> list[str]:
    return label.split(BETWEEN) if BETWEEN in label else [label]


def reference_counts(case: ReferenceCase, vocabulary: Vocabulary) -> Counter:
    """Cells per counted class in the reference (a "between" cell: half to each stage)."""
    counts: Counter = Counter()
    for cell in case.cells:
        if cell.consensus in OUTCOMES or not vocabulary.counted(cell.consensus):
            continue
        members = _members(cell.consensus)
        for m in members:
            counts[m] += 1 / len(members)
    return counts


def model_counts(predicted: list[str], vocabulary: Vocabulary) -> Counter:
    return Counter(p for p in predicted if vocabulary.counted(p))


def matched(consensus: str, predicted: str) -> str:
    """The consensus as one class for the cell-by-cell table: a "between" cell is the model's
    class when the model named either stage, else its first stage."""
    members = _members(consensus)
    return predicted if predicted in members else members[0]


def compare(
    cases: list[ReferenceCase],
    predicted: dict[str, list[str]],
    vocabulary: Vocabulary,
    classes: list[str],
) -> dict:
    """Everything the validation report says, as numbers. `predicted`: per case, the model's
    class of each of its cells, in order."""
    counted = [c for c in classes if vocabulary.counted(c)]
    per_case = []
    for case in cases:
        ref, mod = (
            reference_counts(case, vocabulary),
            model_counts(predicted[case.name], vocabulary),
        )
        n_ref, n_mod = sum(ref.values()), sum(mod.values())
        rows = []
        for c in counted:
            ref_pct = 100 * ref[c] / n_ref if n_ref else 0.0
            mod_pct = 100 * mod[c] / n_mod if n_mod else 0.0
            low, high = rumke(ref[c], round(n_ref))
            rows.append(
                {
                    "class": c,
                    "reference_cells": round(ref[c], 1),
                    "reference_percent": round(ref_pct, 2),
                    "low": low,
                    "high": high,
                    "model_cells": mod[c],
                    "model_percent": round(mod_pct, 2),
                    "inside": bool(low <= round(mod_pct, 2) <= high),
                }
            )
        per_case.append({"case": case.name, "reference_cells": round(n_ref),
                         "model_cells": n_mod, "classes": rows})  # fmt: skip

    over_cases = []
    for k, c in enumerate(counted):
        ref_pct = np.array([case["classes"][k]["reference_percent"] for case in per_case])
        mod_pct = np.array([case["classes"][k]["model_percent"] for case in per_case])
        inside = [case["classes"][k]["inside"] for case in per_case]
        over_cases.append({
            "class": c, "name": vocabulary[c].name,
            "reference_mean": round(float(ref_pct.mean()), 2),
            "model_mean": round(float(mod_pct.mean()), 2),
            "cases_inside": sum(inside), "cases": len(inside),
            "bland_altman": bland_altman(mod_pct, ref_pct),
            "deming": deming(ref_pct, mod_pct),
        })  # fmt: skip

    consensus, model = [], []
    for case in cases:
        for cell, p in zip(case.cells, predicted[case.name], strict=True):
            consensus.append(matched(cell.consensus, p))
            model.append(p)
    cells = pair(consensus, model, vocabulary, ("consensus", "model"))
    among = reviewer_pairs(cases)
    within = {}
    for c in counted:
        m = cells["per_class"].get(c)
        r = one_class_kappa([a for a, _ in among], [b for _, b in among], c) if among else None
        within[c] = {
            "model_kappa": m,
            "reviewers_kappa": r,
            "within": None if m is None or r is None else bool(m >= r),
        }
    reviewers_overall = pair([a for a, _ in among], [b for _, b in among], vocabulary,
                             ("one reviewer", "another")) if among else None  # fmt: skip
    return {
        "per_case": per_case,
        "per_class": over_cases,
        "cells": cells,
        "reviewers": reviewers_overall,
        "within_variation": within,
    }


def reviewer_pairs(cases: list[ReferenceCase]) -> list[tuple[str, str]]:
    """Every pair of two reviewers' verdicts on one cell, over the cases (a cell seen by
    three gives three pairs)."""
    out = []
    for case in cases:
        for cell in case.cells:
            for x, y in combinations(sorted(cell.reviewers), 2):
                out.append((cell.reviewers[x], cell.reviewers[y]))
    return out
