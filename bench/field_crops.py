"""Where a count's error comes from: the model on the patches themselves, on the same cells
pasted into synthetic fields and cropped at their true centres, and at the detected centres.

    python bench/field_crops.py data/data_WBC_torch.zip --splits runs/demo/splits.json \
        --split val --model runs/demo/model [--fields 40]

Prints each accuracy, and the differential error (sum over classes of |estimate % - true %|)
of the patches by top class and by expected count.
"""

from __future__ import annotations

import numpy as np
from detection import model_on_split_args, split_records

from marrowdiff.counting.detect import DetectConfig, crop, detect
from marrowdiff.inference.predict import load_classifier
from marrowdiff.synthetic.fields import FieldConfig, make_field


def main() -> None:
    args = model_on_split_args(fields=40)
    dataset, records = split_records(args.data, args.splits, args.split)
    patches, labels = [dataset.load(r) for r in records], [r.label for r in records]
    classifier = load_classifier([args.model])
    codes, size = classifier.classes, DetectConfig().patch_size

    def right(images, truth) -> list[bool]:
        proba = classifier.classify(images, False).proba
        return [codes[k] == t for k, t in zip(proba.argmax(1), truth, strict=True)]

    proba = classifier.classify(patches, False).proba
    index = np.array([codes.index(t) for t in labels])
    true = 100 * np.bincount(index, minlength=len(codes)) / len(index)
    top = 100 * np.bincount(proba.argmax(1), minlength=len(codes)) / len(index)
    print(
        f"{args.split} patches ({len(records)}): accuracy {np.mean(proba.argmax(1) == index):.3f}; "
        f"differential error {np.abs(top - true).sum():.1f} (top class), "
        f"{np.abs(100 * proba.mean(0) - true).sum():.1f} (expected count)"
    )
    at_truth, at_found, offsets = [], [], []
    for k in range(args.fields):
        field, truth = make_field(patches, labels, FieldConfig(), seed=k)
        cells = [c for c in truth if not c.border]
        at_truth += right([crop(field, c.y, c.x, size) for c in cells], [c.label for c in cells])
        found = np.array([[d.y, d.x] for d in detect(field, DetectConfig())])
        matched = []
        for c in cells:
            gap = np.hypot(found[:, 0] - c.y, found[:, 1] - c.x) if len(found) else np.array([])
            if len(gap) and gap.min() < 30:
                offsets.append(gap.min())
                matched.append((found[gap.argmin()], c.label))
        crops = [crop(field, y, x, size) for (y, x), _ in matched]
        at_found += right(crops, [t for _, t in matched])
    print(f"field crops at the true centres: accuracy {np.mean(at_truth):.3f} ({len(at_truth)})")
    print(
        f"field crops at the detected centres: accuracy {np.mean(at_found):.3f} "
        f"({len(at_found)} cells; offset median {np.median(offsets):.1f} px)"
    )


if __name__ == "__main__":
    main()
