"""Training: plain functions (train_one_epoch, fit) that write a run folder (`run.py`), with a
checkpoint written atomically every epoch so that `--resume` continues a run killed at any
moment, with the same result as an uninterrupted run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from marrowdiff import __version__, run
from marrowdiff.calibration import MODES, calibrate_modes
from marrowdiff.cellsize import spread
from marrowdiff.config import RunConfig
from marrowdiff.data.datasets import Dataset
from marrowdiff.data.splits import Splits
from marrowdiff.distributed.runtime import (
    Runtime,
    barrier,
)
from marrowdiff.domain import bank_sample
from marrowdiff.fileio import remove_stale_parts, write_json
from marrowdiff.inference.predict import TorchModel
from marrowdiff.inference.reference import fit_references
from marrowdiff.normalisation import Normalisation, fit_normalisation
from marrowdiff.training import banks
from marrowdiff.training.cells import Source, SplitData, load_fold, training_classes
from marrowdiff.training.epoch import train_one_epoch, val_metrics
from marrowdiff.training.history import epoch_summary, plan_summary, write_history
from marrowdiff.training.learner import Learner, make_learner
from marrowdiff.training.pretrained import initialise
from marrowdiff.training.recipes import Recipe, get_recipe
from marrowdiff.training.transforms import PatchBank


@dataclass(frozen=True)
class FitOptions:
    """How a run trains beyond its `RunConfig`; recorded in its checkpoints (`options`)."""

    # Other data sets trained on at the same time, their labels read in the run's vocabulary
    # (the target); their validation and test cells never train.
    also: tuple[Source, ...] = ()
    # Start from another run's weights (pre-training), its output rows matched by class code.
    init: Path | None = None
    stream: str = "auto"  # images in "memory", decoded from "disk", or "auto" (banks.make_bank)
    workers: int | None = None  # processes decoding from disk (None: banks.default_workers)
    resume: bool = False  # continue the run from OUT/last.pt
    progress: bool = False  # progress bars (a terminal)
    mpp: float | None = None  # microns per pixel of the training images, if known (`--mpp`)

    def to_dict(self) -> dict:
        also = [{"source": str(s.dataset.source), "weight": s.weight} for s in self.also]
        init = None if self.init is None else str(self.init)
        return {
            "also": also,
            "init": init,
            "stream": self.stream,
            "workers": self.workers,
            "mpp": self.mpp,
        }


@dataclass
class Prepared:
    """A run ready for its first epoch: its cells, normalisation, recipe, learner and the
    metadata every checkpoint of it carries."""

    config: RunConfig
    classes: list[str]
    train: SplitData
    val: SplitData
    norm: Normalisation
    recipe: Recipe
    learner: Learner
    meta: dict
    workers: int


def fit(
    config: RunConfig,
    dataset: Dataset,
    splits: Splits,
    out: str | Path,
    options: FitOptions = FitOptions(),
    *,
    log=print,
    runtime: Runtime | None = None,
    stop_after: int | None = None,
) -> dict | None:
    """Train a model on a split; write checkpoints, history and curves into the run folder
    `out`, and return the final checkpoint's state.

    `stop_after` ends the run after that many epochs as a kill would (last.pt only, no
    model.pt, returns None); `options.resume` then continues it. Under torchrun (`runtime`
    from `distributed.runtime.setup`) every rank trains its share of each global batch with
    DistributedDataParallel and rank 0 alone writes files."""
    runtime = runtime or Runtime()
    log = log if runtime.main else _silent
    out = Path(out)
    p = prepare(config, dataset, splits, options, runtime, log)
    history, start_epoch = _resume(p.learner, out, options.resume, p.meta, log)
    if runtime.main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(out)  # what a killed run left half-written
        write_json(out / run.CONFIG, p.config.to_dict())
        splits.write(out)

    def validated(module: nn.Module) -> TorchModel:
        return TorchModel(module, p.norm, p.config.geometry, p.classes, dataset.vocabulary)

    val_logits = _val_logits(p.val.bank, options.progress and runtime.main)
    epochs = p.config.train.epochs
    for epoch in range(start_epoch, epochs):
        began = time.time()
        row = {"epoch": epoch + 1, "lr": p.learner.optimizer.param_groups[0]["lr"]}
        row |= _train_epoch(p, epoch, runtime, options.progress)
        if runtime.main:
            row |= val_metrics(val_logits(validated(p.learner.kept)), p.val.labels, p.val.space)
        row["seconds"] = round(time.time() - began, 1)
        history.append(row)
        if runtime.main:
            last = p.meta | p.learner.state() | {"epoch": epoch + 1, "history": history}
            run.save_checkpoint(out / run.LAST, last)
            write_history(out, history)
        barrier(runtime)  # last.pt is whole before any rank goes on
        log(epoch_summary(row, epochs))
        if stop_after is not None and epoch + 1 >= stop_after < epochs:
            return None
    if not runtime.main:
        return None
    final = p.meta | _finished(validated(p.learner.kept), p, val_logits, history, log)
    run.save_checkpoint(out / run.MODEL, final)
    return final


def prepare(
    config: RunConfig,
    dataset: Dataset,
    splits: Splits,
    options: FitOptions,
    runtime: Runtime,
    log=print,
) -> Prepared:
    """Load the fold's cells, fit the normalisation, build the learner (from `options.init`'s
    weights when given) and the run's metadata; log the plan."""
    tc = config.train
    classes = training_classes(tc, dataset.vocabulary, splits, options.also)
    torch.manual_seed(tc.seed)
    train, val = load_fold(
        dataset, splits, tc.fold, classes, config.geometry, options.also, log, options.stream
    )
    on_disk = not isinstance(train.bank, PatchBank)
    workers = banks.default_workers(on_disk) if options.workers is None else options.workers
    norm = fit_normalisation(banks.normalisation_images(train.bank, tc.seed), tc.colour)
    config = _with_classes(config, len(classes))
    recipe = get_recipe(tc.recipe)
    first_epoch = train.items(recipe, config.geometry, tc.seed, 0)
    steps_per_epoch = math.ceil(len(first_epoch) / tc.batch_size)
    learner = make_learner(config, steps_per_epoch, runtime)
    meta = _metadata(config, classes, dataset, norm, train, val, runtime, options)
    meta["runtime"] |= {"images": "disk" if on_disk else "memory", "workers": workers}
    if options.init is not None:
        meta["init"] = initialise(learner.model_without_ddp, options.init, classes, log)
        if learner.ema is not None:
            learner.ema.module.load_state_dict(learner.model_without_ddp.state_dict())
    log(plan_summary(config, train, val, recipe, steps_per_epoch, runtime))
    return Prepared(config, classes, train, val, norm, recipe, learner, meta, workers)


def _finished(kept: TorchModel, p: Prepared, val_logits, history: list[dict], log) -> dict:
    """What model.pt adds to the metadata: the calibration (on the fine-labelled validation
    cells), the domain reference, the kept weights, the history and the last validation
    figures."""
    fine = p.val.space.fine(p.val.labels)
    logits = {mode: val_logits(kept, tta)[fine] for mode, tta in MODES.items()}
    return {
        "calibration": calibrate_modes(logits, p.val.labels[fine], log=log),
        **_references(kept, p),
        "state_dict": p.learner.kept.state_dict(),
        "epoch": p.config.train.epochs,
        "history": history,
        "metrics": {k: v for k, v in history[-1].items() if k.startswith("val_")}
        if history
        else {},
    }


def _references(kept: TorchModel, p: Prepared) -> dict:
    """The references of the training cells (`inference.reference`): a sample of them (every
    data set trained on) and the validation cells, by their centre windows; their sizes from
    the canvases."""
    pick = bank_sample(len(p.train.bank), p.config.train.seed)
    chunks = (p.train.bank.centre(pick[i : i + 512]).numpy() for i in range(0, len(pick), 512))
    held_out = banks.centre_chunks(p.val.bank) if len(p.val.bank) else None
    g = p.config.geometry
    squares = [  # the canvases without their pad: each patch as the model resized it
        p.train.bank.canvas(int(i))[:, g.pad : g.pad + g.canvas, g.pad : g.pad + g.canvas]
        .permute(1, 2, 0)
        .numpy()
        for i in spread(list(pick))
    ]
    mpp = p.meta["options"].get("mpp")
    return fit_references(kept, chunks, held_out, squares, mpp).to_state()


def _val_logits(bank, progress: bool = False) -> Callable[[TorchModel, bool], np.ndarray]:
    """(model, tta) -> (N, C) logits of the bank's centre views: from windows cut once for a
    bank in memory, chunk by chunk from disk (with `progress`, under a bar)."""
    if isinstance(bank, PatchBank):
        windows = bank.centre().numpy()
        return lambda model, tta=False: model.window_logits(windows, tta)

    def logits(model: TorchModel, tta: bool = False) -> np.ndarray:
        chunks = []
        bar = tqdm(
            total=len(bank), disable=not progress, desc="validating", unit="cell", leave=False
        )
        with bar:
            for windows in banks.centre_chunks(bank):
                chunks.append(model.window_logits(windows, tta))
                bar.update(len(windows))
        return np.concatenate(chunks) if chunks else np.empty((0, len(model.classes)))

    return logits


def _train_epoch(p: Prepared, epoch: int, runtime: Runtime, progress: bool) -> dict:
    """One epoch, its randomness seeded from (seed, epoch) alone: the same on resume."""
    tc = p.config.train
    generator = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
    torch.manual_seed(tc.seed * 100_003 + epoch)  # dropout
    items = p.train.items(p.recipe, p.config.geometry, tc.seed, epoch)
    return train_one_epoch(
        p.learner.model,
        p.train,
        items,
        p.norm,
        p.learner.optimizer,
        p.learner.scheduler,
        tc,
        generator,
        runtime,
        progress and runtime.main,
        after_step=p.learner.after_step(),
        workers=p.workers,
        scaler=p.learner.scaler,
    )


def _resume(learner: Learner, out: Path, resume: bool, meta: dict, log) -> tuple[list[dict], int]:
    """(history, epochs done) from the run's last.pt with `resume`; ([], 0) otherwise. A run
    resumes only as it started: the same config, classes and data set."""
    last = out / run.LAST
    if not resume or not last.is_file():
        if resume:
            log(f"nothing to resume in {out}; starting afresh")
        return [], 0
    state = run.load_state(last)

    changed = _differences(_started(state), _started(meta))
    if changed:
        raise run.CheckpointError(
            f"{last}: --resume with other settings than the run started with "
            f"({'; '.join(changed)}): its weights come from those; resume with the same "
            "options, or train into a new --out folder"
        )
    learner.load(state)
    log(f"resuming {out} after epoch {state['epoch']}")
    return state["history"], state["epoch"]


def _started(meta: dict) -> dict:
    """What a run's weights depend on: its config, classes, data listing and fold (not where
    the data lies)."""
    data = meta.get("data") or {}
    config = meta.get("config")
    if isinstance(config, dict):  # with the defaults of options added since it was written
        config = RunConfig.from_dict(config).to_dict()
    return {
        "config": config,
        "classes": meta.get("classes"),
        "data": {"fingerprint": data.get("fingerprint"), "fold": data.get("fold")},
        "also": [(s["fingerprint"], s["weight"]) for s in meta.get("also") or []],
        "init": (meta.get("init") or {}).get("weights_sha256"),
    }


def _differences(before, now, where: str = "") -> list[str]:
    """'key: before -> now' for every leaf that differs between two nested dicts."""
    if isinstance(before, dict) and isinstance(now, dict):
        keys = sorted(set(before) | set(now))
        return [d for k in keys for d in _differences(before.get(k), now.get(k), f"{where}{k}.")]
    if before != now and not (isinstance(before, list | tuple) and list(before) == list(now or [])):
        return [f"{where.rstrip('.')}: {before!r} -> {now!r}"]
    return []


def _metadata(
    config: RunConfig,
    classes: list[str],
    dataset: Dataset,
    norm: Normalisation,
    train: SplitData,
    val: SplitData,
    runtime: Runtime,
    options: FitOptions,
) -> dict:
    """What every checkpoint of the run says about itself (`run.py`)."""
    also = options.also
    own = train.parts[0][1] if train.parts else len(train.paths)
    sources = [
        {
            "source": str(s.dataset.source),
            "fingerprint": s.dataset.fingerprint,
            "vocabulary": s.dataset.vocabulary.name,
            "weight": s.weight,
            "n_train": end - first,
        }
        for s, (first, end, _) in zip(also, train.parts[1:], strict=True)
    ]
    return {
        "format": run.FORMAT,
        "marrowdiff_version": __version__,
        "config": config.to_dict(),
        "classes": classes,
        "vocabulary": dataset.vocabulary.to_dict(),
        "normalisation": norm.to_dict(),
        "data": {
            "source": str(dataset.source),
            "fingerprint": dataset.fingerprint,
            "fold": config.train.fold,
            "n_train": own,
            "n_val": len(val.paths),
        },
        "also": sources,
        "options": options.to_dict(),
        "runtime": {
            "processes": runtime.world,
            "device": runtime.device.type,
            "precision": runtime.precision,
            "compile": runtime.compile,
        },
    }


def _silent(message: str) -> None:
    pass


def _with_classes(config: RunConfig, n: int) -> RunConfig:
    return replace(config, model=replace(config.model, num_classes=n))
