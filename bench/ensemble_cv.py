"""An ensemble of CV runs, scored on each test fold: the mean of their calibrated probabilities.

    python bench/ensemble_cv.py ARCHIVE runs/cv-a runs/cv-b [--tta]

Each RUNS folder is a bench/cv_default.py output (test-fold-K/global). The models may have
different class lists (a choi2017 and a marrow14 model): each model's probabilities are taken
on the classes of the first and renormalised. Prints per-fold and mean +- sd accuracy and
macro-F1 of each model alone and of the ensemble, on the same cells.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from marrowdiff.evaluation.metrics import classification_metrics
from marrowdiff.inference.predict import load_model
from marrowdiff.run import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args()
    names = [r.name for r in args.runs] + ["ensemble"]
    rows = {n: [] for n in names}
    for k in range(6):
        first = load_checkpoint(args.runs[0] / f"test-fold-{k}" / "global")
        splits, dataset = first.splits(), first.dataset(args.data)
        classes = list(first.classes)
        paths = [p for p in splits.test if splits.labels[p] in classes]
        images = dataset.load_paths(paths)
        y = np.array([classes.index(splits.labels[p]) for p in paths])
        probas = []
        for run in args.runs:
            model = load_model(run / f"test-fold-{k}" / "global")
            p = model.proba(images, args.tta)
            p = p[:, [list(model.classes).index(c) for c in classes]]
            probas.append(p / p.sum(1, keepdims=True))
        probas.append(np.mean(probas, axis=0))
        line = []
        for name, p in zip(names, probas, strict=True):
            m = classification_metrics(y, p.argmax(1), classes, first.vocabulary)
            rows[name].append(m)
            line.append(f"{name} {m['accuracy']:.3f}/{m['f1_macro']:.3f}")
        print(f"fold {k}: " + " | ".join(line), flush=True)
    for name in names:
        acc = [m["accuracy"] for m in rows[name]]
        f1 = [m["f1_macro"] for m in rows[name]]
        print(
            f"{name}: accuracy {statistics.fmean(acc):.3f}±{statistics.stdev(acc):.3f}, "
            f"macro-F1 {statistics.fmean(f1):.3f}±{statistics.stdev(f1):.3f}"
        )


if __name__ == "__main__":
    main()
