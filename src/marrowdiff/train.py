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

from marrowdiff import __version__, run
from marrowdiff.calibration import MODES, calibrate_modes
from marrowdiff.classes import Vocabulary
from marrowdiff.config import RunConfig, TrainConfig
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
from marrowdiff.models import build_model
from marrowdiff.predict import TorchModel
from marrowdiff.preprocess import Geometry
from marrowdiff.recipes import Recipe, get_recipe
from marrowdiff.splits import Splits
from marrowdiff.transforms import Normalisation, PatchBank, fit_normalisation, normalise


@dataclass
class SplitData:
    """The images of one side of a split, on canvases, with label indices into `classes`."""

    paths: list[str]
    labels: np.ndarray  # (N,) int64
    bank: PatchBank


def select(
    dataset: Dataset, splits: Splits, paths: list[str], classes: list[str], geometry: Geometry
) -> SplitData:
    """The images of `paths` whose class is in `classes`, decoded onto canvases."""
    keep = splits.of_classes(paths, classes)
    bank = PatchBank(dataset.load_paths(keep), geometry)
    return SplitData(keep, splits.label_indices(keep, classes), bank)


def training_classes(config: TrainConfig, vocabulary: Vocabulary, splits: Splits) -> list[str]:
    """The classes a run learns, in vocabulary order: --classes, or every class in the splits."""
    present = splits.classes_present()
    classes = list(config.classes) or [c for c in vocabulary.codes if c in present]
    unknown = set(classes) - set(vocabulary.codes)
    if unknown:
        raise ValueError(f"--classes {sorted(unknown)} are not in vocabulary {vocabulary.name!r}")
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
    raise ValueError(f"unknown schedule {config.schedule!r}; use cosine or inverse")


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
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use sgd or adamw")


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
) -> dict:
    """One pass over `items` in global batches of `config.batch_size`, each rank taking its
    share of every batch; returns mean loss and accuracy on the training views (all ranks).
    `after_step()`, if given, runs after every optimiser step."""
    runtime = runtime or Runtime()
    model.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing, reduction="sum")
    total, correct, loss_sum = 0, 0, 0.0
    batches = plan_batches(len(items), config.batch_size, smallest=2 * runtime.world)
    for where in tqdm(batches, disable=not progress, leave=False, unit="batch"):
        batch = items[where]
        # Jitter is drawn for the whole global batch on every rank, so each item gets the same
        # gain whichever rank takes it: the run does not depend on the number of processes.
        gains = jitter_gains(len(batch), config.colour_jitter, generator)
        mine = shard(batch, runtime)
        x = apply_gains(data.bank.views(batch[mine]), None if gains is None else gains[mine])
        x = normalise(x, norm).to(runtime.device, memory_format=torch.channels_last)
        y = torch.from_numpy(data.labels[batch[mine, 0]]).to(runtime.device)
        with runtime.autocast():
            logits = model(x)
        # Summed over this rank's share, scaled so that DDP's average over ranks is the mean
        # over the global batch.
        loss = loss_fn(logits.float(), y) * (runtime.world / len(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        total += len(y)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += loss.item() * len(batch) / runtime.world
    loss_sum, correct, total = all_sum([loss_sum, correct, total], runtime)
    return {"train_loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)}


def val_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Validation loss (cross-entropy), accuracy and macro-F1 of (N, C) logits."""
    if len(labels) == 0:
        return {}
    pred = logits.argmax(1)
    return {
        "val_loss": float(-log_softmax(logits, axis=1)[np.arange(len(labels)), labels].mean()),
        "val_acc": float((pred == labels).mean()),
        "val_f1_macro": float(f1_score(labels, pred, average="macro", zero_division=0)),
    }


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

    @property
    def kept(self) -> nn.Module:
        """The module validated, calibrated and saved: the moving average with `ema`."""
        return self.ema.module if self.ema is not None else self.model_without_ddp

    def state(self) -> dict:
        """The resumable state (last.pt)."""
        ema = {} if self.ema is None else {"averaged": self.ema.state_dict()}
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
    return Learner(model, model_without_ddp, optimizer, scheduler, ema)


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
) -> dict | None:
    """Train a model on a split; write checkpoints, history and curves into the run folder
    `out`, and return the final checkpoint's state.

    `stop_after` ends the run after that many epochs as a kill would (last.pt only, no
    model.pt, returns None); `resume` then continues it. Under torchrun (`runtime` from
    `distributed.setup`) every rank trains its share of each global batch with
    DistributedDataParallel and rank 0 alone writes files."""
    runtime = runtime or Runtime()
    log = log if runtime.main else _silent
    out, tc = Path(out), config.train
    classes = training_classes(tc, dataset.vocabulary, splits)
    torch.manual_seed(tc.seed)
    train, val = _load_fold(dataset, splits, tc.fold, classes, config.geometry)
    norm = fit_normalisation(train.bank.centre(), tc.colour)
    config = _with_classes(config, len(classes))
    recipe = get_recipe(tc.recipe)
    steps_per_epoch = math.ceil(
        len(recipe.items(train.labels, config.geometry, tc.seed, 0)) / tc.batch_size
    )
    learner = make_learner(config, steps_per_epoch, runtime)
    meta = _metadata(config, classes, dataset, norm, train, val, runtime)
    history, start_epoch = _resume(learner, out, resume, meta, log)
    if runtime.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / run.CONFIG, config.to_dict())
        splits.write(out)
    val_windows = val.bank.centre().numpy()

    def validated(module: nn.Module) -> TorchModel:
        return TorchModel(module, norm, config.geometry, classes, dataset.vocabulary)

    log(_plan(config, train, val, recipe, steps_per_epoch, runtime))
    for epoch in range(start_epoch, tc.epochs):
        began = time.time()
        row = {"epoch": epoch + 1, "lr": learner.optimizer.param_groups[0]["lr"]}
        row |= _train_epoch(learner, train, recipe, norm, config, epoch, runtime, progress)
        if runtime.main:
            row |= val_metrics(validated(learner.kept).window_logits(val_windows), val.labels)
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
    logits = {mode: kept.window_logits(val_windows, tta) for mode, tta in MODES.items()}
    final = meta | {
        "calibration": calibrate_modes(logits, val.labels, log=log),
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
    dataset: Dataset, splits: Splits, fold: int, classes: list[str], geometry: Geometry
) -> tuple[SplitData, SplitData]:
    """The (train, val) images of a CV fold, of `classes`; every class must have training
    images."""
    train_paths, val_paths = splits.fold(fold)
    train = select(dataset, splits, train_paths, classes, geometry)
    empty = [c for i, c in enumerate(classes) if not (train.labels == i).any()]
    if empty:
        raise ValueError(
            f"no training images of class(es) {', '.join(empty)} in this split; "
            "leave them out of --classes or add data"
        )
    return train, select(dataset, splits, val_paths, classes, geometry)


def _train_epoch(
    learner: Learner,
    train: SplitData,
    recipe: Recipe,
    norm: Normalisation,
    config: RunConfig,
    epoch: int,
    runtime: Runtime,
    progress: bool,
) -> dict:
    """One epoch, its randomness seeded from (seed, epoch) alone: the same on resume."""
    tc = config.train
    generator = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
    torch.manual_seed(tc.seed * 100_003 + epoch)  # dropout
    items = recipe.items(train.labels, config.geometry, tc.seed, epoch)
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
) -> dict:
    """What every checkpoint of the run says about itself (`run.py`)."""
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
            "n_train": len(train.paths),
            "n_val": len(val.paths),
        },
        "runtime": {
            "processes": runtime.world,
            "device": runtime.device.type,
            "precision": runtime.precision,
        },
    }


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
