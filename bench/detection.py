"""Detection precision and recall on synthetic fields made from real labelled patches.

Fields are 1080 x 1330 px with 14 cells each (some touching, one across the border), pasted from
the patches of one split; a detection is right within 12 px of a true centre. Tune on `--split
train`; report on `--split test` (the held-out patches).

    python bench/detection.py data/data_WBC_torch.zip --splits runs/demo/splits.json \
        --split test [--fields 50] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from marrowdiff.datasets import open_dataset
from marrowdiff.detect import DetectConfig, detect
from marrowdiff.fields import FieldConfig, make_field, score_detection


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--splits", required=True)
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=0, help="print the worst N fields")
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    splits = json.loads(Path(args.splits).read_text())
    paths = set(splits["test"] if args.split == "test" else splits["folds"][0]["train"])
    records = [r for r in dataset.records if r.path in paths]
    patches = [dataset.load(r) for r in records]
    labels = [r.label for r in records]
    config, totals, seconds, per_field = DetectConfig(), {"tp": 0, "fp": 0, "fn": 0}, 0.0, []
    for k in range(args.fields):
        field, truth = make_field(patches, labels, FieldConfig(), seed=args.seed * 100_000 + k)
        began = time.perf_counter()
        found = detect(field, config)
        seconds += time.perf_counter() - began
        score = score_detection(
            np.array([[d.y, d.x] for d in found]), np.array([d.border for d in found]), truth
        )
        per_field.append((score["fp"] + score["fn"], k, score))
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


if __name__ == "__main__":
    main()
