"""Training: plain functions (train_one_epoch, fit) that write a run folder (`run.py`), with a
checkpoint written atomically every epoch so that `--resume` continues a run killed at any
moment, with the same result as an uninterrupted run."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.metrics import f1_score
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from marrowdiff import __version__, banks, run
from marrowdiff.calibration import MODES, calibrate_modes
from marrowdiff.classes import Vocabulary
from marrowdiff.config import RunConfig, TrainConfig, TrainingError
from marrowdiff.datasets import Dataset
from marrowdiff.distributed import (
    Runtime,
    all_sum,
    barrier,
    globalise_batch_norm,
    plan_batches,
    shard,
)
from marrowdiff.fileio import save_image, write_json, write_text
from marrowdiff.labels import LabelSpace, fine_classes, set_loss
from marrowdiff.models import build_model
from marrowdiff.predict import TorchModel
from marrowdiff.preprocess import Geometry
from marrowdiff.recipes import Recipe, get_recipe
from marrowdiff.splits import Splits
from marrowdiff.transforms import Normalisation, PatchBank, fit_normalisation, normalise


@dataclass
class SplitData:
    """The images of one side of a split, on canvases, with label indices into `space` (a
    fine label's index is its class index)."""

    paths: list[str]
    labels: np.ndarray  # (N,) int64
    bank: PatchBank | banks.DiskBank | banks.ConcatBank
    space: LabelSpace | None = None
    # (first, end, weight) of each data set's images in the bank: the run's own first
    parts: tuple[tuple[int, int, float], ...] = ()

    def items(self, recipe: Recipe, geometry: Geometry, seed: int, epoch: int) -> np.ndarray:
        """One epoch's (M, 4) items: the recipe on each data set's labels, drawn `weight`
        times as often (the recipe's per-label draws scaled), then shuffled together. With one
        data set, exactly `recipe.items`."""
        if len(self.parts) <= 1:
            return recipe.items(self.labels, geometry, seed, epoch)
        chunks = []
        for i, (first, end, weight) in enumerate(self.parts):
            draw = recipe if i == 0 else _weighted(recipe, weight)
            part = draw.items(self.labels[first:end], geometry, seed + 7919 * i, epoch)
            part[:, 0] += first
            chunks.append(part)
        items = np.concatenate(chunks)
        return items[np.random.default_rng([seed, epoch, 2]).permutation(len(items))]


def _weighted(recipe: Recipe, weight: float) -> Recipe:
    if weight == 1.0:
        return recipe
    if not recipe.oversample:
        raise TrainingError(
            f"a data set weight other than 1 needs a recipe that draws a number of views per "
            f"label (balanced-random, oversampled-*); {recipe.name!r} takes every image once"
        )
    return replace(recipe, oversample=max(1, round(recipe.oversample * weight)))


@dataclass(frozen=True)
class Source:
    """A data set trained on beside the run's own (`fit(..., also=...)`): its splits' training
    part of the run's fold trains, with `weight` times the recipe's draws per label; its
    validation and test cells never train, and the run validates on its own data set only."""

    dataset: Dataset
    splits: Splits
    weight: float = 1.0

    def __post_init__(self):
        if not self.weight > 0:
            raise TrainingError(
                f"{self.dataset.source}: weight {self.weight}; a data set trained on needs a "
                "weight above 0 (leave it out to not train on it)"
            )


def _codes(dataset: Dataset, splits: Splits, paths: list[str], target: Vocabulary) -> list[str]:
    """The labels of `paths` in the target vocabulary (by code, name or alias)."""
    return target.map_labels(
        (splits.labels[p] for p in paths), where=f"{dataset.source} (into {target.name!r})"
    )


def select(
    dataset: Dataset,
    paths: list[str],
    codes: list[str],
    space: LabelSpace,
    geometry: Geometry,
    stream: str = "auto",
) -> SplitData:
    """The images of `paths` (labelled `codes`) whose label is in `space`, in memory or on
    disk (`banks`)."""
    keep = [(p, c) for p, c in zip(paths, codes, strict=True) if c in space]
    kept = [p for p, _ in keep]
    bank = banks.make_bank(dataset, kept, geometry, stream)
    return SplitData(kept, space.encode(c for _, c in keep), bank, space)


def training_classes(
    config: TrainConfig, vocabulary: Vocabulary, splits: Splits, also: tuple = ()
) -> list[str]:
    """The classes a run learns, in vocabulary order: --classes, or every fine class of the
    labels in the splits (a coarse label brings its members)."""
    present = set(splits.classes_present())
    for source in also:
        present |= set(vocabulary.map_labels(source.splits.classes_present()))
    classes = list(config.classes) or fine_classes(vocabulary, present)
    unknown = set(classes) - set(vocabulary.fine_codes)
    if unknown:
        raise TrainingError(
            f"--classes {sorted(unknown)} are not fine classes of vocabulary {vocabulary.name!r}"
        )
    return classes


def lr_factor(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at an optimiser step."""
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "inverse":
        return 1.0 / (1.0 + config.lr_decay * step)
    if config.schedule == "cosine":
        total = max(1, config.epochs * steps_per_epoch - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / total)))
    raise TrainingError(f"unknown schedule {config.schedule!r}; use cosine or inverse")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    trained = [p for p in model.parameters() if p.requires_grad]  # not frozen layers
    decay = [p for p in trained if p.ndim > 1]
    no_decay = [p for p in trained if p.ndim <= 1]  # BN and biases
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise TrainingError(f"unknown optimizer {config.optimizer!r}; use sgd or adamw")


def jitter_gains(n: int, amount: float, generator: torch.Generator) -> torch.Tensor | None:
    """(n, 3, 1, 1) random per-image, per-channel gains: stain and white-balance variation."""
    if amount <= 0:
        return None
    return 1 + amount * (2 * torch.rand((n, 3, 1, 1), generator=generator) - 1)


def apply_gains(x: torch.Tensor, gains: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) uint8 times per-image gains, back to uint8."""
    if gains is None:
        return x
    return (x.float() * gains).clamp(0, 255).round().to(torch.uint8)


def train_one_epoch(
    model: nn.Module,
    data: SplitData,
    items: np.ndarray,
    norm: Normalisation,
    optimizer: torch.optim.Optimizer,
    scheduler,
    config: TrainConfig,
    generator: torch.Generator,
    runtime: Runtime | None = None,
    progress: bool = False,
    after_step: Callable[[], None] | None = None,
    workers: int = 0,
    scaler: torch.amp.GradScaler | None = None,
) -> dict:
    """One pass over `items` in global batches of `config.batch_size`, each rank taking its
    share of every batch; returns mean loss and accuracy on the training views (all ranks).
    `after_step()`, if given, runs after every optimiser step. A bank on disk is decoded by
    `workers` processes ahead of the step (`banks.batches`)."""
    runtime = runtime or Runtime()
    model.train()
    sets = torch.from_numpy(data.space.sets).to(runtime.device)
    total, correct, loss_sum = 0, 0, 0.0
    plan = []
    for where in plan_batches(len(items), config.batch_size, smallest=2 * runtime.world):
        batch = items[where]
        # Jitter is drawn for the whole global batch on every rank, so each item gets the same
        # gain whichever rank takes it: the run does not depend on the number of processes.
        gains = jitter_gains(len(batch), config.colour_jitter, generator)
        mine = shard(batch, runtime)
        plan.append((batch, mine, None if gains is None else gains[mine]))
    cuda = runtime.device.type == "cuda"
    views = banks.batches(data.bank, [batch[mine] for batch, mine, _ in plan], workers, cuda)
    steps = tqdm(
        zip(plan, views, strict=True),
        total=len(plan),
        disable=not progress,
        leave=False,
        unit="batch",
    )
    for (batch, mine, gains), x in steps:
        x = normalise(apply_gains(x, gains), norm)
        x = x.to(runtime.device, memory_format=torch.channels_last, non_blocking=cuda)
        y = torch.from_numpy(data.labels[batch[mine, 0]]).to(runtime.device)
        with runtime.autocast():
            logits = model(x)
        # Summed over this rank's share, scaled so that DDP's average over ranks is the mean
        # over the global batch.
        loss = set_loss(logits.float(), sets[y], config.label_smoothing)
        loss = loss * (runtime.world / len(batch))
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():  # fp16: scaled against underflow
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        total += len(y)
        correct += int(sets[y, logits.argmax(1)].sum())
        loss_sum += loss.item() * len(batch) / runtime.world
    loss_sum, correct, total = all_sum([loss_sum, correct, total], runtime)
    return {"train_loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)}


def val_metrics(logits: np.ndarray, labels: np.ndarray, space: LabelSpace | None = None) -> dict:
    """Validation loss (cross-entropy), accuracy and macro-F1 of (N, C) logits, on the
    fine-labelled cells; with coarse labels too, `val_coarse_acc`: the share of those whose
    prediction is in their set."""
    out = {}
    if space is not None and not space.fine(labels).all():
        coarse = ~space.fine(labels)
        out["val_coarse_acc"] = float(space.hit(labels[coarse], logits[coarse].argmax(1)).mean())
        logits, labels = logits[~coarse], labels[~coarse]
    if len(labels) == 0:
        return out
    pred = logits.argmax(1)
    return {
        "val_loss": float(-log_softmax(logits, axis=1)[np.arange(len(labels)), labels].mean()),
        "val_acc": float((pred == labels).mean()),
        "val_f1_macro": float(f1_score(labels, pred, average="macro", zero_division=0)),
    } | out


@dataclass
class Learner:
    """What an optimiser step changes: the model (wrapped for DDP under torchrun) and the same
    module without the wrapper (the one saved), the optimiser, its schedule, and the moving
    average of the weights when `ema` is on."""

    model: nn.Module
    model_without_ddp: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: AveragedModel | None
    scaler: torch.amp.GradScaler | None = None  # fp16 only

    @property
    def kept(self) -> nn.Module:
        """The module validated, calibrated and saved: the moving average with `ema`."""
        return self.ema.module if self.ema is not None else self.model_without_ddp

    def state(self) -> dict:
        """The resumable state (last.pt)."""
        ema = {} if self.ema is None else {"averaged": self.ema.state_dict()}
        if self.scaler is not None and self.scaler.is_enabled():
            ema["scaler"] = self.scaler.state_dict()
        return {
            "state_dict": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        } | ema

    def load(self, state: dict) -> None:
        self.model_without_ddp.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["averaged"])
        if "scaler" in state and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])

    def after_step(self) -> Callable[[], None] | None:
        if self.ema is None:
            return None
        return lambda: self.ema.update_parameters(self.model_without_ddp)


def make_learner(config: RunConfig, steps_per_epoch: int, runtime: Runtime) -> Learner:
    """The model of `config` on the runtime's device, with its optimiser and schedule."""
    tc = config.train
    model_without_ddp = build_model(config.model)
    if runtime.distributed:
        globalise_batch_norm(model_without_ddp)
    model_without_ddp = model_without_ddp.to(runtime.device, memory_format=torch.channels_last)
    model = model_without_ddp
    if runtime.distributed:
        model = DistributedDataParallel(
            model_without_ddp,
            device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
            broadcast_buffers=False,  # global batch norm keeps the buffers equal on all ranks
        )
    if runtime.compile:
        # Only the training steps run compiled; validation, the moving average and the saved
        # weights use `model_without_ddp`, which shares the parameters.
        model = torch.compile(model)
    optimizer = make_optimizer(model_without_ddp, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, tc)
    )
    # With `ema`, the model validated, calibrated and kept is the moving average of the
    # weights (and batch-norm statistics), updated after every step.
    ema = (
        AveragedModel(
            model_without_ddp, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True
        )
        if tc.ema
        else None
    )
    return Learner(model, model_without_ddp, optimizer, scheduler, ema, runtime.grad_scaler())


def fit(
    config: RunConfig,
    dataset: Dataset,
    splits: Splits,
    out: str | Path,
    resume: bool = False,
    progress: bool = False,
    log=print,
    stop_after: int | None = None,
    runtime: Runtime | None = None,
    also: tuple[Source, ...] = (),
    init: str | Path | None = None,
    stream: str = "auto",
    workers: int | None = None,
) -> dict | None:
    """Train a model on a split; write checkpoints, history and curves into the run folder
    `out`, and return the final checkpoint's state.

    `also`: other data sets trained on at the same time (their labels read in this data set's
    vocabulary, the target). `init`: start from the weights of another run (pre-training),
    its output layer's rows matched to this run's classes by code. `stream`: keep the images
    in memory or decode them from disk when needed (`banks.make_bank`), with `workers`
    decoding processes (default: `banks.default_workers`).

    `stop_after` ends the run after that many epochs as a kill would (last.pt only, no
    model.pt, returns None); `resume` then continues it. Under torchrun (`runtime` from
    `distributed.setup`) every rank trains its share of each global batch with
    DistributedDataParallel and rank 0 alone writes files."""
    runtime = runtime or Runtime()
    log = log if runtime.main else _silent
    out, tc = Path(out), config.train
    also = tuple(also)
    classes = training_classes(tc, dataset.vocabulary, splits, also)
    torch.manual_seed(tc.seed)
    train, val = _load_fold(dataset, splits, tc.fold, classes, config.geometry, also, log, stream)
    on_disk = not isinstance(train.bank, PatchBank)
    workers = banks.default_workers(on_disk) if workers is None else workers
    norm = fit_normalisation(banks.normalisation_images(train.bank, tc.seed), tc.colour)
    config = _with_classes(config, len(classes))
    recipe = get_recipe(tc.recipe)
    steps_per_epoch = math.ceil(
        len(train.items(recipe, config.geometry, tc.seed, 0)) / tc.batch_size
    )
    learner = make_learner(config, steps_per_epoch, runtime)
    meta = _metadata(config, classes, dataset, norm, train, val, runtime, also)
    meta["runtime"] |= {"images": "disk" if on_disk else "memory", "workers": workers}
    if init is not None:
        meta["init"] = initialise(learner.model_without_ddp, init, classes, log)
        if learner.ema is not None:
            learner.ema.module.load_state_dict(learner.model_without_ddp.state_dict())
    history, start_epoch = _resume(learner, out, resume, meta, log)
    if runtime.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / run.CONFIG, config.to_dict())
        splits.write(out)

    def validated(module: nn.Module) -> TorchModel:
        return TorchModel(module, norm, config.geometry, classes, dataset.vocabulary)

    val_logits = _val_logits(val.bank, progress and runtime.main)

    log(_plan(config, train, val, recipe, steps_per_epoch, runtime))
    for epoch in range(start_epoch, tc.epochs):
        began = time.time()
        row = {"epoch": epoch + 1, "lr": learner.optimizer.param_groups[0]["lr"]}
        row |= _train_epoch(learner, train, recipe, norm, config, epoch, runtime, progress, workers)
        if runtime.main:
            row |= val_metrics(val_logits(validated(learner.kept)), val.labels, val.space)
        row["seconds"] = round(time.time() - began, 1)
        history.append(row)
        if runtime.main:
            last = meta | learner.state() | {"epoch": epoch + 1, "history": history}
            run.save_checkpoint(out / run.LAST, last)
            write_history(out, history)
        barrier(runtime)  # last.pt is whole before any rank goes on
        log(_epoch_summary(row, tc.epochs))
        if stop_after is not None and epoch + 1 >= stop_after < tc.epochs:
            return None
    if not runtime.main:
        return None
    kept = validated(learner.kept)
    fine = val.space.fine(val.labels)  # calibrated on the fine-labelled cells
    logits = {mode: val_logits(kept, tta)[fine] for mode, tta in MODES.items()}
    final = meta | {
        "calibration": calibrate_modes(logits, val.labels[fine], log=log),
        "state_dict": learner.kept.state_dict(),
        "epoch": tc.epochs,
        "history": history,
        "metrics": {k: v for k, v in history[-1].items() if k.startswith("val_")}
        if history
        else {},
    }
    run.save_checkpoint(out / run.MODEL, final)
    return final


def _load_fold(
    dataset: Dataset,
    splits: Splits,
    fold: int,
    classes: list[str],
    geometry: Geometry,
    also: tuple[Source, ...] = (),
    log=print,
    stream: str = "auto",
) -> tuple[SplitData, SplitData]:
    """The (train, val) images of a CV fold, of `classes`, with the training part of the same
    fold of every `also` data set in the training side; every class must have training
    labels."""
    target = dataset.vocabulary
    sources = (Source(dataset, splits), *also)
    train_paths = [s.splits.fold(fold)[0] for s in sources]
    train_codes = [
        _codes(s.dataset, s.splits, p, target) for s, p in zip(sources, train_paths, strict=True)
    ]
    space = LabelSpace.of(target, classes, [c for codes in train_codes for c in codes])
    parts, paths, labels, images, first = [], [], [], [], 0
    for source, source_paths, codes in zip(sources, train_paths, train_codes, strict=True):
        part = select(source.dataset, source_paths, codes, space, geometry, stream)
        parts.append((first, first + len(part.paths), source.weight))
        first += len(part.paths)
        paths += part.paths
        labels.append(part.labels)
        images.append(part.bank)
    labels = np.concatenate(labels)
    bank = banks.concatenate(images)
    train = SplitData(paths, labels, bank, space, tuple(parts))
    admitted = space.sets[labels].any(axis=0)
    empty = [c for i, c in enumerate(classes) if not admitted[i]]
    if empty:
        raise TrainingError(
            f"no training images of class(es) {', '.join(empty)} in this split; "
            "leave them out of --classes or add data"
        )
    only_coarse = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if only_coarse:
        log(
            f"note: {', '.join(only_coarse)} learned from coarse labels only (no cell of the "
            "training data names its stage)"
        )
    val_paths = splits.fold(fold)[1]
    val_codes = _codes(dataset, splits, val_paths, target)
    val = select(dataset, val_paths, val_codes, space, geometry, stream)
    return train, val


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


def _train_epoch(
    learner: Learner,
    train: SplitData,
    recipe: Recipe,
    norm: Normalisation,
    config: RunConfig,
    epoch: int,
    runtime: Runtime,
    progress: bool,
    workers: int = 0,
) -> dict:
    """One epoch, its randomness seeded from (seed, epoch) alone: the same on resume."""
    tc = config.train
    generator = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
    torch.manual_seed(tc.seed * 100_003 + epoch)  # dropout
    items = train.items(recipe, config.geometry, tc.seed, epoch)
    return train_one_epoch(
        learner.model,
        train,
        items,
        norm,
        learner.optimizer,
        learner.scheduler,
        tc,
        generator,
        runtime,
        progress and runtime.main,
        after_step=learner.after_step(),
        workers=workers,
        scaler=learner.scaler,
    )


def _plan(
    config: RunConfig,
    train: SplitData,
    val: SplitData,
    recipe: Recipe,
    steps_per_epoch: int,
    runtime: Runtime,
) -> str:
    tc = config.train
    line = (
        f"training {config.model.name} on {len(train.paths)} images "
        f"({len(val.paths)} val), recipe {recipe.name}, {tc.epochs} epochs, "
        f"{steps_per_epoch} steps/epoch"
    )
    if runtime.distributed:
        line += (
            f"\n{runtime.world} processes ({runtime.device.type}): effective batch size "
            f"{tc.batch_size} ({tc.batch_size / runtime.world:.0f} per process), learning rate "
            f"{tc.lr} (unchanged: each step is one step of the configured global batch)"
        )
    return line


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
    return {
        "config": meta.get("config"),
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
    also: tuple[Source, ...] = (),
) -> dict:
    """What every checkpoint of the run says about itself (`run.py`)."""
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
        "runtime": {
            "processes": runtime.world,
            "device": runtime.device.type,
            "precision": runtime.precision,
            "compile": runtime.compile,
        },
    }


def initialise(module: nn.Module, init: str | Path, classes: list[str], log=print) -> dict:
    """Load another run's weights into `module` (pre-training): every tensor of the same name
    and shape, and the output layer's rows by class code (a class the other run did not learn
    keeps its fresh rows). Returns what the checkpoint records of it."""
    checkpoint = run.load_checkpoint(init)
    state = checkpoint.state["state_dict"]
    head = output_layer(module)
    own = module.state_dict()
    loaded, rows = 0, 0
    for key, value in state.items():
        if key.startswith(head + "."):
            continue
        if key in own and own[key].shape == value.shape:
            own[key] = value
            loaded += 1
    if loaded < len(own) // 2:
        raise run.CheckpointError(
            f"--init {init}: only {loaded} of {len(own)} weights fit this model "
            f"({checkpoint.config.model.name} there, {type(module).__name__} here); "
            "pre-train with the same --config"
        )
    shared = [c for c in classes if c in checkpoint.classes]
    for suffix in ("weight", "bias"):
        key = f"{head}.{suffix}"
        if key in state and key in own and state[key].shape[1:] == own[key].shape[1:]:
            for c in shared:
                own[key][classes.index(c)] = state[key][checkpoint.classes.index(c)]
            rows = len(shared)
    module.load_state_dict(own)
    log(
        f"initialised from {init}: {loaded} of {len(own)} tensors, output rows of {rows} of "
        f"{len(classes)} classes"
    )
    return {
        "run": str(init),
        "weights_sha256": checkpoint.state.get("weights_sha256"),
        "classes": list(checkpoint.classes),
        "data": checkpoint.state.get("data"),
    }


def output_layer(module: nn.Module) -> str:
    """The name of a classifier's last linear layer (its rows are the classes)."""
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(module).__name__} has no linear output layer")
    return names[-1]


def _silent(message: str) -> None:
    pass


def _epoch_summary(row: dict, epochs: int) -> str:
    line = f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}"
    if "val_acc" in row:
        line += (
            f" | val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
            f"f1 {row['val_f1_macro']:.3f}"
        )
    return line + f" ({row['seconds']:.0f} s)"


def _with_classes(config: RunConfig, n: int) -> RunConfig:
    return replace(config, model=replace(config.model, num_classes=n))


def write_history(out: Path, history: list[dict]) -> None:
    """history.csv and curves.png (training loss, validation accuracy, as the paper's Fig 4A)."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text(out / run.HISTORY, buf.getvalue())
    from matplotlib.figure import Figure  # no pyplot: no display needed

    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax = fig.add_subplot(1, 2, 1)
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    if "val_loss" in history[0]:
        ax.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(epochs, [r["train_acc"] for r in history], label="train")
    if "val_acc" in history[0]:
        ax.plot(epochs, [r["val_acc"] for r in history], label="validation")
    ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    save_image(out / run.CURVES, fig)
