"""What int8 quantisation costs in accuracy: the 6 cross-validation models of
`bench/cv_default.py`, each exported as float and as int8 ONNX (`marrowdiff export --int8`,
calibrated on its own training cells), and scored on its own test fold, centre view and 8-way
TTA. Nothing is tuned here; the quantisation settings were fixed on validation fold 0.

    python bench/int8_cv.py data/data_WBC_torch.zip --cv runs/bench-cv
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.inference.export import export_onnx
from marrowdiff.inference.predict import load_model


def scores(model, images: list[np.ndarray], truth: np.ndarray, tta: bool) -> tuple:
    predicted = model.proba(images, tta).argmax(1)
    return predicted, accuracy_score(truth, predicted), f1_score(truth, predicted, average="macro")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--cv", type=Path, default=Path("runs/bench-cv"))
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="marrowdiff-int8-"))
    rows = []
    for fold_dir in sorted(args.cv.glob("test-fold-*")):
        run = fold_dir / "global"
        test = set(Splits.read(fold_dir).test)
        records = [r for r in dataset.records if r.path in test]
        images = [dataset.load(r) for r in records]
        name = fold_dir.name
        float_model = load_model(export_onnx(run, tmp / f"{name}.onnx"))
        int8_model = load_model(export_onnx(run, tmp / f"{name}-int8.onnx", int8=True))
        truth = np.array([float_model.classes.index(r.label) for r in records])
        for tta in (False, True):
            p, acc, f1 = scores(float_model, images, truth, tta)
            q, acc8, f18 = scores(int8_model, images, truth, tta)
            rows.append((name, tta, len(truth), int((p != q).sum()), acc, acc8, f1, f18))
            print(
                f"{name} {'TTA   ' if tta else 'centre'} {len(truth)} cells: "
                f"{rows[-1][3]} change class; accuracy {acc:.3f} -> {acc8:.3f}, "
                f"macro-F1 {f1:.3f} -> {f18:.3f}",
                flush=True,
            )
    for tta in (False, True):
        mine = [r for r in rows if r[1] == tta]
        changed = sum(r[3] for r in mine) / sum(r[2] for r in mine)
        columns = list(zip(*mine, strict=True))[4:]
        mean_sd = [f"{statistics.mean(c):.3f} ± {statistics.stdev(c):.3f}" for c in columns]
        print(
            f"{'TTA' if tta else 'centre view'}: {100 * changed:.1f}% of test cells change "
            f"class; accuracy float {mean_sd[0]}, int8 {mean_sd[1]}; "
            f"macro-F1 float {mean_sd[2]}, int8 {mean_sd[3]}"
        )


if __name__ == "__main__":
    main()
