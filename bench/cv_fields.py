"""Synthetic marrow fields over the folds of a cross-validation: each fold's model counts
fields pasted from its own test fold's patches (never trained on), as `detection.py --model`
does for one split. Gives, per recipe and fold, the differential's error (the sum over classes
of |found % - true %|) and the share of whole true cells counted; then the mean and sd over
folds, and each recipe's paired difference from the first. One test split of about 100 cells
moves by several points between two trainings of one recipe; six folds measure a recipe.

    python bench/cv_fields.py data/data_WBC_torch.zip runs/cv-without runs/cv-with \
        [--fields 50] [--seed 0] [--folds 0,1,2,3,4,5]

Each CV folder is `bench/cv_default.py`'s --out: test-fold-K/splits.json and
test-fold-K/global (the model).
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

from detection import count_error, count_on_field, split_records

from marrowdiff.counting.count import CountConfig
from marrowdiff.inference.predict import load_classifier
from marrowdiff.synthetic.fields import FieldConfig, make_field


def fold_figures(data: str, cv: Path, k: int, fields: int, seed: int) -> tuple[float, float]:
    """(the differential's error in points, the share of whole true cells counted)."""
    fold = cv / f"test-fold-{k}"
    dataset, records = split_records(data, str(fold / "splits.json"), "test")
    patches, labels = [dataset.load(r) for r in records], [r.label for r in records]
    classifier = load_classifier([str(fold / "global")])
    truth, found, hits, whole_cells = Counter(), Counter(), 0, 0
    for n in range(fields):
        field, true_cells = make_field(patches, labels, FieldConfig(), seed=seed * 100_000 + n)
        _, whole, counted, _, counted_true = count_on_field(
            classifier, field, true_cells, CountConfig()
        )
        truth.update(c.label for c in whole)
        found.update(c.label for c in counted)
        hits, whole_cells = hits + counted_true, whole_cells + len(whole)
    return count_error(truth, found, classifier.classes), hits / max(1, whole_cells)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("cv", type=Path, nargs="+", help="cv_default.py output folders")
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", default="0,1,2,3,4,5")
    args = parser.parse_args()
    folds = [int(k) for k in args.folds.split(",")]
    rows = {}
    for cv in args.cv:
        rows[cv] = [fold_figures(args.data, cv, k, args.fields, args.seed) for k in folds]
        errors, recalls = [e for e, _ in rows[cv]], [r for _, r in rows[cv]]
        print(
            f"{cv}: error per fold {' '.join(f'{e:.1f}' for e in errors)}; mean "
            f"{statistics.mean(errors):.1f} +- {_sd(errors):.1f} | cells counted per fold "
            f"{' '.join(f'{r:.3f}' for r in recalls)}; mean {statistics.mean(recalls):.3f}"
        )
    first = args.cv[0]
    for cv in args.cv[1:]:
        diff = [b[0] - a[0] for a, b in zip(rows[first], rows[cv], strict=True)]
        recall = [b[1] - a[1] for a, b in zip(rows[first], rows[cv], strict=True)]
        print(f"{cv} - {first}: error {statistics.mean(diff):+.1f} +- {_sd(diff):.1f} points "
              f"(per fold {' '.join(f'{d:+.1f}' for d in diff)}); cells counted "
              f"{statistics.mean(recall):+.3f}")  # fmt: skip


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
