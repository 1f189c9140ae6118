"""Detection precision and recall on synthetic fields made from real labelled patches.

Fields are 1080 x 1330 px with 14 cells each (some touching, one across the border), pasted from
the patches of one split; a detection is right within 12 px of a true centre. Tune on `--split
train` (or `val`, to compare models trained on fold 0's train part); report on `--split test`
(the held-out patches).

    python bench/detection.py data/data_WBC_torch.zip --splits runs/demo/splits.json \
        --split test [--fields 50] [--seed 0] [--model runs/demo/model]

With --model, each field is also counted (`count`'s pipeline) and the per-class counts are
compared with the truth: the count error per class.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from marrowdiff.boxes import score_detection
from marrowdiff.count import CountConfig, count_field
from marrowdiff.datasets import open_dataset
from marrowdiff.detect import DetectConfig, detect
from marrowdiff.predict import load_classifier
from marrowdiff.smear import FieldConfig, make_field
from marrowdiff.splits import Splits


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
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    splits = Splits.read(args.splits)
    train, val = splits.fold(0)
    paths = set({"test": splits.test, "train": train, "val": val}[args.split])
    records = [r for r in dataset.records if r.path in paths]
    patches = [dataset.load(r) for r in records]
    labels = [r.label for r in records]
    config, totals, seconds, per_field = DetectConfig(), {"tp": 0, "fp": 0, "fn": 0}, 0.0, []
    classifier = load_classifier([args.model]) if args.model else None
    true_counts, found_counts = Counter(), Counter()
    for k in range(args.fields):
        field, truth = make_field(patches, labels, FieldConfig(), seed=args.seed * 100_000 + k)
        began = time.perf_counter()
        found = detect(field, config)
        seconds += time.perf_counter() - began
        score = score_detection(
            np.array([[d.y, d.x] for d in found]), np.array([d.border for d in found]), truth
        )
        per_field.append((score["fp"] + score["fn"], k, score))
        if classifier is not None:
            cells, _ = count_field(classifier, "field", field, CountConfig(detect=config))
            true_counts.update(c.label for c in truth if not c.border)
            found_counts.update(c.label for c in cells if c.flag != "border")
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
        print_count_error(true_counts, found_counts, classifier.classes)


def print_count_error(truth: Counter, found: Counter, classes: list[str]) -> None:
    """Per class: true cells, cells the pipeline counted as that class (every non-border
    detection by its top class, unsure ones included), and the error as a share of all."""
    n_true, n_found = sum(truth.values()), sum(found.values())
    print(f"count per class over all fields (true {n_true} cells, found {n_found}):")
    print(f"  {'class':28s} {'true':>5s} {'found':>6s} {'true %':>7s} {'found %':>8s}")
    error = 0.0
    for c in classes:
        t, f = truth[c], found[c]
        tp, fp = 100 * t / max(1, n_true), 100 * f / max(1, n_found)
        error += abs(tp - fp)
        print(f"  {c:28s} {t:5d} {f:6d} {tp:7.1f} {fp:8.1f}")
    print(f"  sum of |found % - true %| over classes: {error:.1f} points (half of it moved)")


if __name__ == "__main__":
    main()
