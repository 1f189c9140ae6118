"""Adjusted counts (Forman 2008; Bella et al. 2010) against the plain ones on synthetic fields:
the confusion matrix from one half of a split's patches, fields from the other half, both
halves in turn (cross-fitted, so that no case is scored by a matrix fitted on its own cells).

    python bench/adjusted_counts.py data/data_WBC_torch.zip --splits runs/demo/splits.json \
        --split val --model runs/demo/model [--fields 320]

Prints, per estimate, the mean over cases of 8 fields of sum over classes of |estimate % - true
%|: top class (CC), expected count (PCC), and their adjusted forms, which solve
M^T pi = q for the marrow's shares pi on the simplex (M: the mean probabilities, or the top-class
frequencies, of each true class).
"""

from __future__ import annotations

import numpy as np
from detection import REPORT, case_estimates, model_on_split_args, split_records
from scipy.optimize import minimize

from marrowdiff.counting.count import CountConfig, count_field
from marrowdiff.counting.detect import DetectConfig
from marrowdiff.inference.predict import load_classifier
from marrowdiff.synthetic.fields import FieldConfig, make_field


def on_simplex(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """argmin ||m^T p - q||^2 over p >= 0, sum p = 1."""
    k = len(m)
    return minimize(
        lambda p: np.sum((m.T @ p - q) ** 2),
        np.full(k, 1 / k),
        method="SLSQP",
        bounds=[(0, 1)] * k,
        constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}],
    ).x


def main() -> None:
    args = model_on_split_args(fields=320)
    dataset, records = split_records(args.data, args.splits, args.split)
    classifier = load_classifier([args.model])
    counted = np.array([classifier.vocabulary.counted(c) for c in classifier.classes])
    codes = [c for c, keep in zip(classifier.classes, counted, strict=True) if keep]
    order = np.random.default_rng(0).permutation(len(records))
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    errors: dict[str, list[float]] = {"top class": [], "expected": [], "adjusted top class": [],
                                      "adjusted expected": []}  # fmt: skip
    for fit_half, field_half in ((0, 1), (1, 0)):
        fit = [records[i] for i in halves[fit_half]]
        proba = classifier.classify([dataset.load(r) for r in fit], False).proba
        proba = proba[:, counted]
        truth = np.array([codes.index(r.label) for r in fit])
        present = sorted(set(truth))
        soft = np.array([proba[truth == k].mean(0) for k in present])
        hard = np.array(
            [np.bincount(proba[truth == k].argmax(1), minlength=len(codes)) / (truth == k).sum()
             for k in present]
        )  # fmt: skip
        cells_of = [records[i] for i in halves[field_half]]
        patches, labels = [dataset.load(r) for r in cells_of], [r.label for r in cells_of]
        case = []
        for k in range(args.fields // 2):
            field, true_cells = make_field(patches, labels, FieldConfig(), seed=k + 1000 * fit_half)
            found, _ = count_field(classifier, "f", field, CountConfig(detect=DetectConfig()))
            case.append((true_cells, found))
            if len(case) < 8:
                continue
            true_share, estimates = case_estimates(case, classifier)
            cells = [c for _, f in case for c in f if c.flag != "border"]
            q = np.array([c.proba[counted] for c in cells]).mean(0)
            tops = [codes.index(c.label) for c in cells if c.label in codes]
            q_top = np.bincount(tops, minlength=len(codes)) / len(cells)
            adjusted, adjusted_top = np.zeros(len(codes)), np.zeros(len(codes))
            adjusted[present] = on_simplex(soft, q / q.sum())
            adjusted_top[present] = on_simplex(hard, q_top)
            for name, shares in (
                ("top class", estimates[REPORT]),
                ("expected", estimates["expected count (probabilities)"]),
                ("adjusted top class", 100 * adjusted_top),
                ("adjusted expected", 100 * adjusted),
            ):
                errors[name].append(float(np.abs(shares - true_share).sum()))
            case = []
    for name, values in errors.items():
        print(f"{name:20s} {np.mean(values):5.1f}  [{min(values):.1f}, {max(values):.1f}] "
              f"over {len(values)} cases")  # fmt: skip


if __name__ == "__main__":
    main()
