"""The evaluate stage: a run (or a dual-stage global + local set) scored on its held-out cells.

The cells go through `predict.Classifier`, the path that classify, count and the review station
use, so what is measured is what a laboratory gets; the maths lives in `metrics.py`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marrowdiff.data.datasets import Dataset, open_dataset
from marrowdiff.data.splits import SplitError, Splits
from marrowdiff.evaluation.metrics import (
    HEADLINE,
    bootstrap_ci,
    classification_metrics,
    confusion_figure,
    invariance_figure,
    invariance_summary,
    misclassified_html,
    shown_mistakes,
)
from marrowdiff.fileio import save_image, write_json, write_text
from marrowdiff.inference.predict import Classifier, Model, TorchModel, in_chunks, load_model
from marrowdiff.labels import LabelSpace
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


@dataclass(frozen=True)
class EvalConfig:
    """Which cells a run is scored on, how, and where the figures go."""

    data: Path | None = None  # the data set (None: where the run was trained)
    split: str = "test"  # "test", or "val": the validation cells of the run's fold
    tta: bool = False  # average the 8 rotations/flips
    out: Path | None = None  # output folder (None: the first run folder)
    invariance: bool = False  # also predictions under rotations, flips and crop shifts (Fig 5)
    # Another data set's splits.json (with `data`, read with `vocab`): score the model on that
    # data set's test cells, a cross-data-set evaluation.
    splits_file: Path | None = None
    vocab: str | None = None


@dataclass
class HeldOut:
    """The cells a classifier is scored on: their paths and label indices into `space`."""

    dataset: Dataset
    paths: list[str]
    labels: np.ndarray  # (N,) int64
    space: LabelSpace
    left_out: int  # cells of classes the model does not have


def evaluate_run(
    runs: list[Path], config: EvalConfig = EvalConfig(), *, log=print, progress: bool = False
) -> dict:
    """Metrics of a run (or a dual-stage global + local runs) on its test (or val) split,
    written into `config.out` (default: the first run folder).

    Cells of a fine label score as usual; cells of a coarse label (a set of classes) score
    right when the prediction is in the set, reported apart as `coarse`; cells of classes the
    model does not have are left out and counted."""
    checkpoint = load_checkpoint(runs[0])
    dataset, splits = _data_and_splits(checkpoint, config)
    global_ = TorchModel.from_checkpoint(checkpoint)
    classifier = Classifier(global_, [load_model(r) for r in runs[1:]])
    cells = held_out(
        dataset, splits, _split_paths(splits, checkpoint.fold, config.split), classifier
    )

    def both(images: list[np.ndarray]) -> np.ndarray:  # the global model's, and refined
        base = global_.proba(images, config.tta)
        return np.concatenate([base, classifier.refine(base, images, config.tta)], axis=1)

    predicted = in_chunks(
        dataset.load_paths, cells.paths, both, progress=progress, desc=config.split
    )
    base, proba = np.split(predicted, 2, axis=1)
    metrics = score(cells, base, proba, classifier)
    metrics |= {"split": config.split, "tta": config.tta, "models": [str(r) for r in runs]}
    metrics |= {"data": str(dataset.source), "left_out": cells.left_out}
    out = Path(config.out or checkpoint.folder)
    suffix = (
        ""
        if config.split == "test" and not classifier.dual_stage
        else (f"-{config.split}" + ("-dual" if classifier.dual_stage else ""))
    )
    title = f"{checkpoint.folder.name}: {config.split} accuracy {metrics['accuracy']:.3f}"
    fine = cells.space.fine(cells.labels)
    paths, y_true = [p for p, f in zip(cells.paths, fine, strict=True) if f], cells.labels[fine]
    vocab, classes = classifier.vocabulary, classifier.classes
    names = [vocab[c].name for c in classes]
    write_pages(out, suffix, title, metrics, dataset, paths, y_true, proba[fine], names)
    if config.invariance:
        images = dataset.load_paths(paths)
        metrics["invariance_min"] = write_invariance(
            out, suffix, global_, images, y_true, vocab, classes
        )
    for line in summary_lines(metrics, out / f"metrics{suffix}.json"):
        log(line)
    return metrics


def _data_and_splits(checkpoint, config: EvalConfig) -> tuple[Dataset, Splits]:
    """The run's own data set and splits, or another data set's with `config.splits_file`."""
    if config.splits_file is None:
        dataset = checkpoint.dataset(config.data)
        return dataset, checkpoint.splits(dataset)
    if config.data is None:
        raise SplitError("--splits of another data set needs --data, the data set itself")
    dataset = open_dataset(config.data, config.vocab or checkpoint.vocabulary)
    splits = Splits.read(config.splits_file)
    if splits.fingerprint != dataset.fingerprint:
        raise SplitError(f"{config.splits_file} was made for another listing than {config.data}")
    return dataset, splits


def _split_paths(splits: Splits, fold: int, split: str) -> list[str]:
    if split == "test":
        return splits.test
    if split == "val" and fold >= 0:
        return splits.fold(fold)[1]
    raise SplitError(f"split {split!r}: use test, or val for a run trained on one fold")


def held_out(dataset: Dataset, splits: Splits, paths: list[str], classifier) -> HeldOut:
    """The cells of `paths` whose label (read in the model's vocabulary) is a class of the
    model or a set of its classes; the rest are counted as left out."""
    vocab = classifier.vocabulary
    codes = vocab.map_labels((splits.labels[p] for p in paths), where=str(dataset.source))
    space = LabelSpace.of(vocab, classifier.classes, codes)
    scored = [(p, c) for p, c in zip(paths, codes, strict=True) if c in space]
    labels = space.encode(c for _, c in scored)
    return HeldOut(dataset, [p for p, _ in scored], labels, space, len(paths) - len(scored))


def score(cells: HeldOut, base: np.ndarray, proba: np.ndarray, classifier) -> dict:
    """The metrics of (N, C) probabilities against the held-out labels: on the fine-labelled
    cells with bootstrap intervals, the coarse-labelled ones apart, and the global model
    alone beside a dual-stage set."""
    classes, vocab = classifier.classes, classifier.vocabulary
    fine = cells.space.fine(cells.labels)
    y_true, pred = cells.labels[fine], proba[fine].argmax(1)
    metrics = classification_metrics(y_true, pred, classes, vocab)
    metrics["ci95"] = bootstrap_ci(y_true, pred, classes, vocab)
    metrics["dual_stage"] = classifier.dual_stage
    if not fine.all():
        coarse = ~fine
        metrics["coarse"] = coarse_metrics(
            cells.space, cells.labels[coarse], proba[coarse].argmax(1)
        )
    if classifier.dual_stage:
        alone = classification_metrics(y_true, base[fine].argmax(1), classes, vocab)
        metrics["global_only"] = {k: v for k, v in alone.items() if k in HEADLINE}
    return metrics


def write_pages(
    out: Path,
    suffix: str,
    title: str,
    metrics: dict,
    dataset: Dataset,
    paths: list[str],
    y_true: np.ndarray,
    proba: np.ndarray,
    names: list[str],
) -> None:
    """metrics.json, confusion.png and misclassified.html (the most confident mistakes; only
    their images are decoded)."""
    write_json(out / f"metrics{suffix}.json", metrics)
    cm = np.array(metrics["confusion_matrix"]["matrix"])
    save_image(out / f"confusion{suffix}.png", confusion_figure(cm, names, title))
    wrong = [paths[i] for i in shown_mistakes(y_true, proba)]
    shown = dict(zip(wrong, dataset.load_paths(wrong), strict=True))
    write_text(
        out / f"misclassified{suffix}.html",
        misclassified_html(paths, shown, y_true, proba, names, title),
    )


def write_invariance(
    out: Path,
    suffix: str,
    model: Model,
    images: list[np.ndarray],
    y_true: np.ndarray,
    vocab,
    classes: list[str],
) -> float:
    """invariance.json and .png: predictions under rotations, flips and crop shifts (every
    image in memory: an analysis for a split of the archive's size). Returns the lowest
    share of predictions that held."""
    transforms, preds = invariance_predictions(model, images)
    summary = invariance_summary(transforms, preds, y_true, classes)
    write_json(out / f"invariance{suffix}.json", summary)
    names = {c: vocab[c].name for c in classes}
    save_image(out / f"invariance{suffix}.png", invariance_figure(summary, names))
    return min(summary["overall"])


def summary_lines(metrics: dict, path: Path) -> list[str]:
    """What evaluate says: coarse-label figures, left-out cells, the headline."""
    lines = []
    if "coarse" in metrics:
        c = metrics["coarse"]
        per_label = ", ".join(
            f"{k} {v['accuracy']:.3f} of {v['n']}" for k, v in c["per_label"].items()
        )
        lines.append(
            f"coarse labels: {c['n']} cells, prediction in the label's set for "
            f"{c['accuracy']:.3f} ({per_label})"
        )
    if metrics["left_out"]:
        lines.append(
            f"{metrics['left_out']} cells of classes the model does not have were left out"
        )
    low, high = metrics["ci95"]["accuracy"]
    lines.append(
        f"{metrics['split']}: accuracy {metrics['accuracy']:.3f} [{low:.3f}, {high:.3f}], "
        f"macro-F1 {metrics['f1_macro']:.3f}, weighted F1 {metrics['f1_weighted']:.3f} "
        f"({metrics['n']} cells) -> {path}"
    )
    return lines


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
