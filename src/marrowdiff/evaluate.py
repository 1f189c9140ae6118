"""The evaluate stage: a run (or a dual-stage global + local set) scored on its held-out cells.

The cells go through `predict.Classifier`, the path that classify, count and the review station
use, so what is measured is what a laboratory gets; the maths lives in `metrics.py`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marrowdiff.fileio import save_image, write_json, write_text
from marrowdiff.metrics import (
    HEADLINE,
    bootstrap_ci,
    classification_metrics,
    confusion_figure,
    invariance_figure,
    invariance_summary,
    misclassified_html,
)
from marrowdiff.predict import Classifier, Model, TorchModel, load_model
from marrowdiff.preprocess import centre_views, d4_numpy, shifted_views
from marrowdiff.run import load_checkpoint

D4_NAMES = [
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip",
    "rot90+flip",
    "rot180+flip",
    "rot270+flip",
]


def evaluate_run(
    runs: list[Path],
    data: Path | None = None,
    split: str = "test",
    tta: bool = False,
    out: Path | None = None,
    invariance: bool = False,
    log=print,
) -> dict:
    """Metrics of a run (or a dual-stage global + local runs) on its test (or val) split,
    written into `out` (default: the first run folder)."""
    checkpoint = load_checkpoint(runs[0])
    out = Path(out or checkpoint.folder)
    splits = checkpoint.splits()
    dataset = checkpoint.dataset(data)
    global_ = TorchModel.from_checkpoint(checkpoint)
    classifier = Classifier(global_, [load_model(r) for r in runs[1:]])
    if split == "test":
        paths = splits.test
    elif split == "val" and checkpoint.fold >= 0:
        paths = splits.fold(checkpoint.fold)[1]
    else:
        raise ValueError(f"split {split!r}: use test, or val for a run trained on one fold")
    classes, vocab = classifier.classes, classifier.vocabulary
    paths = splits.of_classes(paths, classes)
    images = dataset.load_paths(paths)
    y_true = splits.label_indices(paths, classes)
    base = global_.proba(images, tta)
    proba = classifier.refine(base, images, tta)
    dual = classifier.dual_stage
    metrics = classification_metrics(y_true, proba.argmax(1), classes, vocab)
    metrics["ci95"] = bootstrap_ci(y_true, proba.argmax(1), classes, vocab)
    metrics |= {"split": split, "tta": tta, "models": [str(r) for r in runs], "dual_stage": dual}
    if dual:
        alone = classification_metrics(y_true, base.argmax(1), classes, vocab)
        metrics["global_only"] = {k: v for k, v in alone.items() if k in HEADLINE}
    names = [vocab[c].name for c in classes]
    suffix = "" if split == "test" and not dual else f"-{split}" + ("-dual" if dual else "")
    write_json(out / f"metrics{suffix}.json", metrics)
    title = f"{checkpoint.folder.name}: {split} accuracy {metrics['accuracy']:.3f}"
    cm = np.array(metrics["confusion_matrix"]["matrix"])
    save_image(out / f"confusion{suffix}.png", confusion_figure(cm, names, title))
    write_text(
        out / f"misclassified{suffix}.html",
        misclassified_html(paths, images, y_true, proba, names, title),
    )
    if invariance:
        transforms, preds = invariance_predictions(global_, images)
        summary = invariance_summary(transforms, preds, y_true, classes)
        write_json(out / f"invariance{suffix}.json", summary)
        save_image(
            out / f"invariance{suffix}.png",
            invariance_figure(summary, {c: vocab[c].name for c in classes}),
        )
        metrics["invariance_min"] = min(summary["overall"])
    log(
        f"{split}: accuracy {metrics['accuracy']:.3f} "
        f"[{metrics['ci95']['accuracy'][0]:.3f}, {metrics['ci95']['accuracy'][1]:.3f}], "
        f"macro-F1 {metrics['f1_macro']:.3f}, weighted F1 {metrics['f1_weighted']:.3f} "
        f"({len(paths)} cells) -> {out / f'metrics{suffix}.json'}"
    )
    return metrics


def invariance_predictions(model: Model, images: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Predictions under each rotation/flip and under shifts of the crop centre (Fig 5).

    Returns transform names and (T, N) predicted class indices; transform 0 is the identity,
    so `preds == preds[0]` says where the prediction held."""
    pad = model.geometry.pad
    shifts = sorted(
        {
            (sy * m, sx * m)
            for m in (max(1, pad // 2), pad)
            for sy in (-1, 0, 1)
            for sx in (-1, 0, 1)
            if sy or sx
        }
    )
    centred = centre_views(images, model.geometry)
    preds = [model.window_logits(d4_numpy(centred, k)).argmax(1) for k in range(8)]
    preds += [
        model.window_logits(shifted_views(images, model.geometry, dy, dx)).argmax(1)
        for dy, dx in shifts
    ]
    names = D4_NAMES + [f"shift({dy:+d},{dx:+d})" for dy, dx in shifts]
    return names, np.stack(preds)
