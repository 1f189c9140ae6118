"""Stage orchestration over files: splits for a run, evaluation of a run, the paper's Table 1.

Each function reads what earlier stages wrote and writes its own outputs atomically; the maths
lives in the stage modules (splits, train, evaluate, dualstage)."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from marrowdiff.audit import run_audit
from marrowdiff.calibration import TARGET_ACCURACY
from marrowdiff.classes import Vocabulary
from marrowdiff.config import RunConfig
from marrowdiff.datasets import Dataset, open_dataset
from marrowdiff.evaluate import (
    HEADLINE,
    bootstrap_ci,
    classification_metrics,
    confusion_figure,
    invariance_figure,
    invariance_summary,
    misclassified_html,
)
from marrowdiff.fileio import save_image, write_json, write_text
from marrowdiff.predict import DualStage, Predictor
from marrowdiff.splits import SplitConfig, SplitError, splits_for_dataset
from marrowdiff.train import (
    calibrate_split,
    fit,
    fold_paths,
    load_checkpoint,
    load_split_images,
    save_checkpoint,
    select,
)
from marrowdiff.transforms import TABLE1_RECIPES

# Choi et al. 2017, Table 1 (accuracy, precision, recall, F1 in %), and the dual-stage result.
PAPER_TABLE1 = {
    "original": (57.80, 83.36, 48.69, 61.47),
    "augmented": (71.90, 65.17, 65.00, 65.08),
    "oversampled-300": (65.62, 68.59, 65.61, 67.07),
    "oversampled-600": (90.57, 91.04, 90.57, 90.80),
    "augmented+oversampled-300": (85.05, 85.02, 85.05, 85.04),
    "augmented+oversampled-600": (95.68, 95.49, 95.68, 95.58),
    "dual-stage": (97.06, 97.13, 97.06, 97.10),
}
LOCAL_PAIR = ("band_neutrophil", "segmented_neutrophil")  # the paper's local model
TABLE1_KEYS = ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "f1_macro")


def prepare_splits(
    dataset: Dataset,
    out: Path,
    splits_file: Path | None = None,
    config: SplitConfig | None = None,
    log=print,
) -> dict:
    """Read a splits.json made for this data set, or audit and split it now into `out`."""
    config = config or SplitConfig()
    if splits_file is not None:
        splits = json.loads(Path(splits_file).read_text())
        if splits.get("dataset", {}).get("fingerprint") != dataset.fingerprint:
            raise SplitError(
                f"{splits_file} was made for another listing than {dataset.source};"
                " run `marrowdiff split` on this data set"
            )
        return splits
    path = out / "splits.json"
    if path.is_file():
        splits = json.loads(path.read_text())
        if splits.get("dataset", {}).get("fingerprint") == dataset.fingerprint and splits.get(
            "config"
        ) == asdict(config):
            return splits
    log(
        f"auditing and splitting {dataset.source} (seed {config.seed}, "
        f"test fold {config.test_fold})"
    )
    audit = run_audit(dataset, out / "audit", log=log)
    if audit["n_conflicting_groups"]:
        log(
            f"{audit['n_conflicting_groups']} cell(s) filed under two classes; kept together "
            f"in the splits. See {out / 'audit' / 'audit.md'}"
        )
    splits = splits_for_dataset(dataset, audit, config)
    write_json(path, splits)
    return splits


def load_predictor(runs: list[Path]) -> Predictor | DualStage:
    """One run folder: its model; several: the first is global, the others local models."""
    first = Predictor.load(runs[0])
    return DualStage(first, [Predictor.load(r) for r in runs[1:]]) if len(runs) > 1 else first


def evaluate_run(
    runs: list[Path],
    data: Path | None = None,
    split: str = "test",
    tta: bool = False,
    out: Path | None = None,
    invariance: bool = False,
    log=print,
) -> dict:
    """Metrics of a run (or a dual-stage global + local runs) on its test (or val) split."""
    run = Path(runs[0])
    out = Path(out or run)
    predictor = load_predictor([Path(r) for r in runs])
    global_ = predictor.global_ if isinstance(predictor, DualStage) else predictor
    splits = json.loads((run / "splits.json").read_text())
    dataset = open_dataset(data or global_.metadata["data"]["source"], global_.vocabulary)
    fold = global_.metadata["data"]["fold"]
    if split == "test":
        paths = splits["test"]
    elif split == "val" and fold >= 0:
        paths = splits["folds"][fold]["val"]
    else:
        raise ValueError(f"split {split!r}: use test, or val for a run trained on one fold")
    classes = predictor.classes
    paths = [p for p in paths if splits["labels"][p] in classes]
    by_path = {r.path: r for r in dataset.records}
    images = [dataset.load(by_path[p]) for p in paths]
    y_true = np.array([classes.index(splits["labels"][p]) for p in paths])
    dual = isinstance(predictor, DualStage)
    base = global_.proba(images, tta=tta)
    proba = predictor.refine(base, images, tta) if dual else base
    y_pred = proba.argmax(1)
    vocab = predictor.vocabulary
    metrics = classification_metrics(y_true, y_pred, classes, vocab)
    metrics["ci95"] = bootstrap_ci(y_true, y_pred, classes, vocab)
    metrics |= {
        "split": split,
        "tta": tta,
        "models": [str(r) for r in runs],
        "dual_stage": dual,
    }
    if dual:
        alone = classification_metrics(y_true, base.argmax(1), classes, vocab)
        metrics["global_only"] = {k: v for k, v in alone.items() if k in HEADLINE}
    names = [vocab[c].name for c in classes]
    suffix = "" if split == "test" and not dual else f"-{split}" + ("-dual" if dual else "")
    write_json(out / f"metrics{suffix}.json", metrics)
    title = f"{run.name}: {split} accuracy {metrics['accuracy']:.3f}"
    cm = np.array(metrics["confusion_matrix"]["matrix"])
    save_image(out / f"confusion{suffix}.png", confusion_figure(cm, names, title))
    write_text(
        out / f"misclassified{suffix}.html",
        misclassified_html(paths, images, y_true, proba, names, title),
    )
    if invariance:
        transforms, preds = global_.invariance(images)
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


def table1(
    data: Path,
    out: Path,
    config: RunConfig,
    cv: bool = False,
    seed: int = 0,
    recipes: list[str] | None = None,
    log=print,
) -> dict:
    """Train every Table 1 recipe (and the dual-stage pair) on the leak-free split; test once."""
    dataset = open_dataset(data)
    recipes = recipes or TABLE1_RECIPES
    folds = range(SplitConfig().test_folds) if cv else [0]
    rows: dict[str, list[dict]] = {r: [] for r in [*recipes, "dual-stage"]}
    for test_fold in folds:
        fold_dir = out / f"test-fold-{test_fold}"
        splits = prepare_splits(
            dataset, fold_dir, config=SplitConfig(seed=seed, test_fold=test_fold)
        )
        for recipe in recipes:
            run = fold_dir / recipe
            cfg = replace(config, train=replace(config.train, recipe=recipe))
            if not (run / "model.pt").is_file():
                fit(cfg, dataset, splits, run, resume=True, log=log)
            rows[recipe].append(evaluate_run([run], log=log))
        if not set(LOCAL_PAIR) <= set(splits["labels"].values()):
            log(f"no dual-stage row: the data has no {' or '.join(LOCAL_PAIR)} images")
            continue
        best = fold_dir / recipes[-1]
        local = fold_dir / "local-band-segmented"
        if not (local / "model.pt").is_file():
            cfg = replace(
                config, train=replace(config.train, recipe=recipes[-1], classes=LOCAL_PAIR)
            )
            fit(cfg, dataset, splits, local, resume=True, log=log)
        rows["dual-stage"].append(evaluate_run([best, local], log=log))
    summary = {name: _mean_sd(results) for name, results in rows.items() if results}
    write_json(
        out / "table1.json",
        {
            "config": config.to_dict(),
            "cv": cv,
            "seed": seed,
            "rows": summary,
            "per_fold": {k: [_headline(r) for r in v] for k, v in rows.items()},
        },
    )
    write_text(out / "table1.md", table1_markdown(summary, config, cv, len(folds)))
    return summary


def _headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in TABLE1_KEYS}


def _mean_sd(results: list[dict]) -> dict:
    out = {}
    for key in TABLE1_KEYS:
        values = [r[key] for r in results]
        out[key] = [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0]
    return out


def table1_markdown(summary: dict, config: RunConfig, cv: bool, n_folds: int) -> str:
    how = f"mean ± sd over {n_folds} test folds" if cv else "one test fold (fold 0)"
    lines = [
        "# Table 1 on the public archive, leak-free split",
        "",
        f"Model `{config.model.name}` (width {config.model.width}, input "
        f"{config.geometry.input_size} px, {config.train.colour.upper()}), "
        f"{config.train.epochs} epochs, optimiser {config.train.optimizer}. Figures in %, {how}; "
        "precision, recall and F1 weighted by class support as in the paper. The paper's "
        "figures were measured on 2,174 patches (3.5x this archive) with no control for "
        "duplicate cells across the split, so they are not directly comparable.",
        "",
        "| data set | accuracy | precision | recall | F1 | macro-F1 | paper acc | paper F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        paper = PAPER_TABLE1.get(name, ("", "", "", ""))
        cells = [
            f"{100 * row[k][0]:.1f}" + (f" ± {100 * row[k][1]:.1f}" if cv else "")
            for k in TABLE1_KEYS
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {paper[0]} | {paper[3]} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RunCells:
    """A run's checkpoint, its data set and the paths of its training and validation cells."""

    checkpoint: Path
    state: dict
    dataset: Dataset
    splits: dict
    train: list[str]
    val: list[str]

    def images(self, paths: list[str]) -> dict[str, np.ndarray]:
        return load_split_images(self.dataset, paths)


def run_cells(run: Path, data: str | Path | None = None) -> RunCells:
    """The cells a run was trained and validated on, read from its splits.json and the data
    set its checkpoint names (or `data`, which must be the same data set)."""
    state = load_checkpoint(run)
    path = Path(run) / "model.pt" if Path(run).is_dir() else Path(run)
    splits_file = path.parent / "splits.json"
    if not splits_file.is_file():
        raise FileNotFoundError(
            f"{splits_file}: the run's splits are missing; cannot find its training and "
            "validation cells (keep the run folder from `marrowdiff train` whole)"
        )
    splits = json.loads(splits_file.read_text())
    dataset = open_dataset(
        data or state["data"]["source"], Vocabulary.from_dict(state["vocabulary"])
    )
    if dataset.fingerprint != state["data"]["fingerprint"]:
        raise ValueError(
            f"{dataset.source} is not the data set {path} was trained on; give it with --data"
        )
    train_paths, val_paths = fold_paths(splits, state["data"]["fold"])
    return RunCells(path, state, dataset, splits, train_paths, val_paths)


def calibrate_run(
    run: Path, data: str | None = None, target: float = TARGET_ACCURACY, log=print
) -> dict:
    """Fit (or refit) a run's calibration on its validation split and store it in model.pt."""
    cells = run_cells(run, data)
    if not cells.val:
        raise ValueError(
            f"{cells.checkpoint} was trained on all of train-validation (fold -1): no "
            "validation cells are left to calibrate on"
        )
    predictor = Predictor.load(cells.checkpoint)
    images = cells.images(cells.val)
    val = select(cells.splits, cells.val, predictor.classes, images, predictor.config)
    state = cells.state
    state["calibration"] = calibrate_split(
        predictor.model, val, predictor.normalisation, log=log, target=target
    )
    save_checkpoint(cells.checkpoint, state)
    return state["calibration"]
