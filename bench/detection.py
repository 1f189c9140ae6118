"""Detection precision and recall on synthetic fields made from real labelled patches.

Fields are 1080 x 1330 px with 14 cells each (some touching, one across the border), pasted from
the patches of one split; a detection is right within 12 px of a true centre. Tune on `--split
train` (or `val`, to compare models trained on fold 0's train part); report on `--split test`
(the held-out patches).

    python bench/detection.py data/data_WBC_torch.zip --splits runs/demo/splits.json \
        --split test [--fields 50] [--seed 0] [--model runs/demo/model]

With --model, each field is also counted (`count`'s pipeline) and the per-class counts are
compared with the truth: the count error per class. The fields are then taken as cases of
--case-fields fields each, and estimates of each case's differential are compared with its true
cells: the sure cells by their class (what `count` reported before), every cell by its top class
(the report's headline, `report.estimate`), the expected count from calibrated probabilities,
and sure cells by class with unsure ones by probabilities; with how often the report's 95%
intervals hold the true share.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from marrowdiff.counting.count import CountConfig, count_field
from marrowdiff.counting.detect import DetectConfig, detect
from marrowdiff.counting.report import estimate
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.estimate import expected_counts
from marrowdiff.evaluation.detection import match, score_detection
from marrowdiff.inference.predict import load_classifier
from marrowdiff.synthetic.fields import FieldConfig, make_field


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--splits", required=True)
    parser.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="train",
        help="whose patches: fold 0's train or val part, or the held-out test split",
    )
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=0, help="print the worst N fields")
    parser.add_argument(
        "--model", help="also classify what is found and give the count error per class"
    )
    parser.add_argument("--tta", action="store_true", help="count with the 8 rotations/flips")
    parser.add_argument(
        "--red-cells", type=int, default=FieldConfig.red_cells, help="drawn red cells a field"
    )
    parser.add_argument(
        "--case-fields",
        type=int,
        default=8,
        help="fields per case for the estimates (with --model)",
    )
    args = parser.parse_args()
    dataset, records = split_records(args.data, args.splits, args.split)
    patches = [dataset.load(r) for r in records]
    labels = [r.label for r in records]
    config, totals, seconds, per_field = DetectConfig(), {"tp": 0, "fp": 0, "fn": 0}, 0.0, []
    classifier = load_classifier([args.model]) if args.model else None
    true_counts, found_counts, aside, recalled = Counter(), Counter(), Counter(), [0, 0]
    cases: list[list[tuple]] = [[]]  # per case: (truth, cells) of each field
    for k in range(args.fields):
        shape = FieldConfig(red_cells=args.red_cells)
        field, truth = make_field(patches, labels, shape, seed=args.seed * 100_000 + k)
        began = time.perf_counter()
        found = detect(field, config)
        seconds += time.perf_counter() - began
        score = score_detection(
            np.array([[d.y, d.x] for d in found]), np.array([d.border for d in found]), truth
        )
        per_field.append((score["fp"] + score["fn"], k, score))
        if classifier is not None:
            cells, whole, counted, set_aside, hits = count_on_field(
                classifier, field, truth, CountConfig(detect=config, tta=args.tta)
            )
            true_counts.update(c.label for c in whole)
            found_counts.update(c.label for c in counted)
            aside.update(c.label for c in set_aside)
            recalled[0] += hits
            recalled[1] += len(whole)
            if len(cases[-1]) == args.case_fields:
                cases.append([])
            cases[-1].append((truth, cells))
        for key in totals:
            totals[key] += score[key]
    precision = totals["tp"] / max(1, totals["tp"] + totals["fp"])
    recall = totals["tp"] / max(1, totals["tp"] + totals["fn"])
    print(
        f"{args.split} patches ({len(records)}), {args.fields} fields: "
        f"precision {precision:.3f}  recall {recall:.3f}  "
        f"(tp {totals['tp']}, fp {totals['fp']}, fn {totals['fn']}); "
        f"detection {1000 * seconds / args.fields:.0f} ms/field"
    )
    for _, k, score in sorted(per_field, reverse=True)[: args.show]:
        print(f"  field seed {args.seed * 100_000 + k}: {score}")
    if classifier is not None:
        print(
            f"count: {recalled[0]} of {recalled[1]} whole true cells counted (recall "
            f"{recalled[0] / max(1, recalled[1]):.3f}); set aside as not nucleated cells: "
            f"{sum(aside.values())} ({dict(aside) or 'none'})"
        )
        print_count_error(true_counts, found_counts, classifier.classes)
        population = Counter(labels)
        whole = [c for c in cases if len(c) == args.case_fields]
        print_estimates(whole, classifier, population, args.tta)


def count_on_field(classifier, field: np.ndarray, truth: list, count: CountConfig):
    """`count`'s pipeline on one synthetic field: (its cells, the whole true cells, the cells
    counted in the differential, those set aside as not nucleated cells, and how many of the
    whole true cells were counted)."""
    cells, _ = count_field(classifier, "field", field, count)
    whole = [c for c in truth if not c.border]
    kept = [c for c in cells if c.flag != "border"]
    counted = [c for c in kept if classifier.vocabulary.counted(c.label)]
    aside = [c for c in kept if not classifier.vocabulary.counted(c.label)]
    pairs, _ = match(
        np.array([[c.y, c.x] for c in counted]).reshape(-1, 2),
        np.array([[c.y, c.x] for c in whole]).reshape(-1, 2),
    )
    return cells, whole, counted, aside, len(pairs)


def count_error(truth: Counter, found: Counter, classes: list[str]) -> float:
    """The sum over classes of |found % - true %|: the differential's error, in points."""
    n_true, n_found = sum(truth.values()), sum(found.values())
    return sum(
        abs(100 * truth[c] / max(1, n_true) - 100 * found[c] / max(1, n_found)) for c in classes
    )


def print_count_error(truth: Counter, found: Counter, classes: list[str]) -> None:
    """Per class: true cells, cells the pipeline counted as that class (every non-border
    detection by its top class, unsure ones included; objects set aside as not nucleated cells
    left out), and the error as a share of all."""
    n_true, n_found = sum(truth.values()), sum(found.values())
    print(f"count per class over all fields (true {n_true} cells, found {n_found}):")
    print(f"  {'class':28s} {'true':>5s} {'found':>6s} {'true %':>7s} {'found %':>8s}")
    for c in classes:
        t, f = truth[c], found[c]
        tp, fp = 100 * t / max(1, n_true), 100 * f / max(1, n_found)
        print(f"  {c:28s} {t:5d} {f:6d} {tp:7.1f} {fp:8.1f}")
    error = count_error(truth, found, classes)
    print(f"  sum of |found % - true %| over classes: {error:.1f} points (half of it moved)")


REPORT = "every cell by top class (report)"


def split_records(data: str, splits_file: str, split: str):
    """The data set and its records of one split: fold 0's train or val part, or the test."""
    dataset, splits = open_dataset(data), Splits.read(splits_file)
    train, val = splits.fold(0)
    paths = set({"train": train, "val": val, "test": splits.test}[split])
    return dataset, [r for r in dataset.records if r.path in paths]


def model_on_split_args(fields: int) -> argparse.Namespace:
    """The options of a probe of a model on fields made from one split's patches."""
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--splits", required=True)
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--model", required=True)
    parser.add_argument("--fields", type=int, default=fields)
    return parser.parse_args()


def case_estimates(case: list[tuple], classifier, tta: bool = False) -> tuple[np.ndarray, dict]:
    """One case's true shares (%) and each estimate's shares (%) over the counted classes; the
    report's (`report.estimate`, exactly as `count` computes it) also with its 95% interval."""
    vocabulary, classes = classifier.vocabulary, classifier.classes
    truth = Counter(c.label for fields, _ in case for c in fields if not c.border)
    found = [c for _, cells in case for c in cells]
    headline = estimate(found, vocabulary, classifier.calibration(tta).interval_scale)
    codes = headline["codes"]
    cells = [c for c in found if c.flag != "border"]
    sure = Counter(c.label for c in cells if not c.flag)
    by_code = [classes.index(c) for c in codes]

    def shares(tally: Counter) -> np.ndarray:
        n = sum(tally[c] for c in codes)
        return np.array([100 * tally[c] / max(1, n) for c in codes])

    proba = np.array([c.proba[by_code] for c in cells]).reshape(len(cells), len(codes))
    hardened = proba.copy()  # sure cells by their class, unsure ones by their probabilities
    for row, c in zip(hardened, cells, strict=True):
        if not c.flag and c.label in codes:
            row[:] = 0
            row[codes.index(c.label)] = 1
    return shares(truth), {
        "sure cells, by class": shares(sure),
        REPORT: headline["percent"],
        "expected count (probabilities)": expected_counts(proba)["percent"],
        "sure by class, unsure expected": expected_counts(hardened)["percent"],
        "interval": (headline["low"], headline["high"]),
        "codes": codes,
    }


def print_estimates(
    cases: list[list[tuple]], classifier, population: Counter, tta: bool = False
) -> None:
    """Mean over cases of the sum over classes of |estimate % - true %|, per estimate, with
    the paired difference from the report's; and how often the report's 95% intervals hold
    the case's true share, and the share in the patches the fields were drawn from."""
    errors: dict[str, list[float]] = {}
    held_case = held_population = total = 0
    for case in cases:
        truth, estimates = case_estimates(case, classifier, tta)
        low, high = estimates.pop("interval")
        codes = estimates.pop("codes")
        n_pop = sum(population[c] for c in codes)
        pop = np.array([100 * population[c] / max(1, n_pop) for c in codes])
        present = pop > 0  # classes the fields can hold
        for name, shares in estimates.items():
            errors.setdefault(name, []).append(float(np.abs(shares - truth).sum()))
        held_case += int(((low <= truth + 1e-9) & (truth <= high + 1e-9))[present].sum())
        held_population += int(((low <= pop) & (pop <= high))[present].sum())
        total += int(present.sum())
    n_cells = np.mean([sum(len(f) for _, f in case) for case in cases])
    print(f"estimates over {len(cases)} cases of about {n_cells:.0f} cells found each:")
    print("  sum over classes of |estimate % - true %| per case: mean [min, max]")
    reference = np.array(errors[REPORT])
    for name, values in errors.items():
        diff = np.array(values) - reference
        paired = f"{diff.mean():+5.1f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.1f}"
        print(
            f"    {name:34s} {np.mean(values):5.1f}  [{min(values):.1f}, {max(values):.1f}]"
            f"  vs the report's: {paired}"
        )
    scale = classifier.calibration(tta).interval_scale
    print(
        f"  the report's 95% intervals (scale {scale:.2f}) hold the case's true share "
        f"{held_case}/{total} ({100 * held_case / max(1, total):.0f}%), the patches' share "
        f"{held_population}/{total} ({100 * held_population / max(1, total):.0f}%)"
    )


if __name__ == "__main__":
    main()
