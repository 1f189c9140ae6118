"""The evaluate stage: a run (or a dual-stage global + local set) scored on its held-out cells.

The cells go through `predict.Classifier`, the path that classify, count and the review station
use, so what is measured is what a laboratory gets; the maths lives in `metrics.py`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marrowdiff.datasets import open_dataset
from marrowdiff.fileio import save_image, write_json, write_text
from marrowdiff.labels import LabelSpace
from marrowdiff.metrics import (
    HEADLINE,
    bootstrap_ci,
    classification_metrics,
    confusion_figure,
    invariance_figure,
    invariance_summary,
    misclassified_html,
    shown_mistakes,
)
from marrowdiff.predict import Classifier, Model, TorchModel, in_chunks, load_model
from marrowdiff.preprocess import centre_views, d4_numpy, shifted_views
from marrowdiff.run import load_checkpoint
from marrowdiff.splits import SplitError, Splits

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
    splits_file: Path | None = None,
    vocab: str | None = None,
    progress: bool = False,
) -> dict:
    """Metrics of a run (or a dual-stage global + local runs) on its test (or val) split,
    written into `out` (default: the first run folder). With `splits_file`, on the test cells
    of another data set (`data`, read with `vocab`): a cross-data-set evaluation.

    Cells of a fine label score as usual; cells of a coarse label (a set of classes) score
    right when the prediction is in the set, reported apart as `coarse`; cells of classes the
    model does not have are left out and counted."""
    checkpoint = load_checkpoint(runs[0])
    out = Path(out or checkpoint.folder)
    if splits_file is not None:
        if data is None:
            raise ValueError("--splits of another data set needs --data, the data set itself")
        dataset = open_dataset(data, vocab or checkpoint.vocabulary)
        splits = Splits.read(splits_file)
        if splits.fingerprint != dataset.fingerprint:
            raise SplitError(f"{splits_file} was made for another listing than {data}")
    else:
        dataset = checkpoint.dataset(data)
        splits = checkpoint.splits(dataset)
    global_ = TorchModel.from_checkpoint(checkpoint)
    classifier = Classifier(global_, [load_model(r) for r in runs[1:]])
    if split == "test":
        paths = splits.test
    elif split == "val" and checkpoint.fold >= 0:
        paths = splits.fold(checkpoint.fold)[1]
    else:
        raise ValueError(f"split {split!r}: use test, or val for a run trained on one fold")
    classes, vocab = classifier.classes, classifier.vocabulary
    codes = vocab.map_labels((splits.labels[p] for p in paths), where=str(dataset.source))
    space = LabelSpace.of(vocab, classes, codes)
    scored = [(p, c) for p, c in zip(paths, codes, strict=True) if c in space]
    left_out = len(paths) - len(scored)
    labels = space.encode(c for _, c in scored)
    all_paths = [p for p, _ in scored]

    def both(images: list[np.ndarray]) -> np.ndarray:  # the global model's, and refined
        base = global_.proba(images, tta)
        return np.concatenate([base, classifier.refine(base, images, tta)], axis=1)

    out_both = in_chunks(dataset.load_paths, all_paths, both, progress=progress, desc=split)
    base_all, proba_all = np.split(out_both, 2, axis=1)
    fine = space.fine(labels)
    paths = [p for p, f in zip(all_paths, fine, strict=True) if f]
    y_true, base, proba = labels[fine], base_all[fine], proba_all[fine]
    dual = classifier.dual_stage
    metrics = classification_metrics(y_true, proba.argmax(1), classes, vocab)
    metrics["ci95"] = bootstrap_ci(y_true, proba.argmax(1), classes, vocab)
    metrics |= {"split": split, "tta": tta, "models": [str(r) for r in runs], "dual_stage": dual}
    metrics |= {"data": str(dataset.source), "left_out": left_out}
    if not fine.all():
        metrics["coarse"] = coarse_metrics(space, labels[~fine], proba_all[~fine].argmax(1))
    if dual:
        alone = classification_metrics(y_true, base.argmax(1), classes, vocab)
        metrics["global_only"] = {k: v for k, v in alone.items() if k in HEADLINE}
    names = [vocab[c].name for c in classes]
    suffix = "" if split == "test" and not dual else f"-{split}" + ("-dual" if dual else "")
    write_json(out / f"metrics{suffix}.json", metrics)
    title = f"{checkpoint.folder.name}: {split} accuracy {metrics['accuracy']:.3f}"
    cm = np.array(metrics["confusion_matrix"]["matrix"])
    save_image(out / f"confusion{suffix}.png", confusion_figure(cm, names, title))
    wrong = [paths[i] for i in shown_mistakes(y_true, proba)]
    shown = dict(zip(wrong, dataset.load_paths(wrong), strict=True))  # only they are decoded
    write_text(
        out / f"misclassified{suffix}.html",
        misclassified_html(paths, shown, y_true, proba, names, title),
    )
    if invariance:  # every image, in memory: an analysis for a split of the archive's size
        transforms, preds = invariance_predictions(global_, dataset.load_paths(paths))
        summary = invariance_summary(transforms, preds, y_true, classes)
        write_json(out / f"invariance{suffix}.json", summary)
        save_image(
            out / f"invariance{suffix}.png",
            invariance_figure(summary, {c: vocab[c].name for c in classes}),
        )
        metrics["invariance_min"] = min(summary["overall"])
    if "coarse" in metrics:
        c = metrics["coarse"]
        log(
            f"coarse labels: {c['n']} cells, prediction in the label's set for "
            f"{c['accuracy']:.3f} ("
            + ", ".join(f"{k} {v['accuracy']:.3f} of {v['n']}" for k, v in c["per_label"].items())
            + ")"
        )
    if left_out:
        log(f"{left_out} cells of classes the model does not have were left out")
    log(
        f"{split}: accuracy {metrics['accuracy']:.3f} "
        f"[{metrics['ci95']['accuracy'][0]:.3f}, {metrics['ci95']['accuracy'][1]:.3f}], "
        f"macro-F1 {metrics['f1_macro']:.3f}, weighted F1 {metrics['f1_weighted']:.3f} "
        f"({len(paths)} cells) -> {out / f'metrics{suffix}.json'}"
    )
    return metrics


def coarse_metrics(space: LabelSpace, labels: np.ndarray, pred: np.ndarray) -> dict:
    """How often the prediction of a coarse-labelled cell is in its label's set."""
    hit = space.hit(labels, pred)
    per_label = {
        space.labels[k]: {"n": int((labels == k).sum()), "accuracy": float(hit[labels == k].mean())}
        for k in np.unique(labels)
    }
    return {"n": int(len(labels)), "accuracy": float(hit.mean()), "per_label": per_label}


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
