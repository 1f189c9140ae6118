"""split -> fit -> evaluate, written once: the demo, the paper's Table 1 and the
cross-validation benchmark all call `split_fit_evaluate`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from marrowdiff.calibration import MODES  # how a split is scored: name -> 8-view TTA
from marrowdiff.config import RunConfig
from marrowdiff.data.datasets import Dataset
from marrowdiff.data.splits import SplitConfig, Splits, splits_for_run
from marrowdiff.evaluation.evaluate import EvalConfig, evaluate_run
from marrowdiff.run import MODEL
from marrowdiff.training.train import FitOptions, fit


@dataclass
class Holdout:
    """What one test fold gave: its splits, the trained run, its metrics by mode and, with a
    local pair, the dual-stage set's metrics (in the last mode)."""

    splits: Splits
    run: Path
    metrics: dict[str, dict]
    dual: dict | None = None


def train_once(
    config: RunConfig,
    dataset: Dataset,
    splits: Splits,
    run: Path,
    options: FitOptions = FitOptions(),
    log=print,
) -> Path:
    """`run`, trained unless it has finished: an interrupted run resumes, a finished one is
    kept as it is."""
    if not (run / MODEL).is_file():
        fit(config, dataset, splits, run, replace(options, resume=True), log=log)
    return run


def split_fit_evaluate(
    dataset: Dataset,
    out: Path,
    config: RunConfig,
    split: SplitConfig = SplitConfig(),
    options: FitOptions = FitOptions(),
    *,
    name: str = "model",
    modes: tuple[str, ...] = ("plain",),
    local_pair: tuple[str, str] | None = None,
    log=print,
) -> Holdout:
    """Split `dataset` into OUT/splits.json (reused when it is this split of this listing),
    train OUT/NAME on it and score it on the held-out test cells in each of `modes` (the first
    writes into the run folder, the others into OUT/NAME-MODE). With `local_pair`, a local
    model of those two classes (OUT/local-A-B, trained on this data set alone, from the
    config's own start) refines the run: the dual-stage set is scored in the last mode, into
    OUT/NAME-dual."""
    splits = splits_for_run(dataset, out, config=split, log=log)
    run = train_once(config, dataset, splits, out / name, options, log)
    metrics = {}
    for i, mode in enumerate(modes):
        where = None if i == 0 else out / f"{name}-{mode}"
        metrics[mode] = evaluate_run([run], EvalConfig(tta=MODES[mode], out=where), log=log)
    held = Holdout(splits, run, metrics)
    if local_pair is None:
        return held
    if not set(local_pair) <= splits.classes_present():
        log(f"no dual-stage model: the data has no {' or '.join(local_pair)} images")
        return held
    local_config = replace(config, train=replace(config.train, classes=local_pair))
    local_run = out / f"local-{'-'.join(local_pair)}"
    local = train_once(
        local_config, dataset, splits, local_run, replace(options, also=(), init=None), log
    )
    last = EvalConfig(tta=MODES[modes[-1]] if modes else False, out=out / f"{name}-dual")
    held.dual = evaluate_run([run, local], last, log=log)
    return held
