"""Training: plain functions (train_one_epoch, predict_logits, fit) and self-describing
checkpoints, written atomically every epoch so that `--resume` continues a run killed at any
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
from sklearn.metrics import f1_score
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from marrowdiff import __version__
from marrowdiff.calibration import TARGET_ACCURACY, calibrate
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
from marrowdiff.fileio import save_image, write_bytes, write_json, write_text
from marrowdiff.images import ImageReadError
from marrowdiff.models import build_model
from marrowdiff.transforms import (
    Normalisation,
    PatchBank,
    d4,
    fit_normalisation,
    get_recipe,
    normalise,
)

CHECKPOINT_FORMAT = "marrowdiff.checkpoint/1"


@dataclass
class SplitData:
    """The images of one side of a split, on canvases, with label indices into `classes`."""

    paths: list[str]
    labels: np.ndarray  # (N,) int64
    bank: PatchBank


def select(
    splits: dict,
    paths: list[str],
    classes: list[str],
    images: dict[str, np.ndarray],
    config: RunConfig,
) -> SplitData:
    """Images of `paths` whose class is in `classes`, as a SplitData."""
    keep = [p for p in paths if splits["labels"][p] in classes]
    labels = np.array([classes.index(splits["labels"][p]) for p in keep], dtype=np.int64)
    return SplitData(keep, labels, PatchBank([images[p] for p in keep], config.geometry))


def fold_paths(splits: dict, fold: int) -> tuple[list[str], list[str]]:
    """(train, val) paths of a CV fold; fold -1 trains on all of train-validation, no val."""
    if fold == -1:
        return sorted(set(splits["labels"]) - set(splits["test"])), []
    if not 0 <= fold < len(splits["folds"]):
        raise ValueError(f"fold {fold} does not exist: the splits have {len(splits['folds'])}")
    return splits["folds"][fold]["train"], splits["folds"][fold]["val"]


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


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    bank: PatchBank,
    norm: Normalisation,
    tta: bool = False,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    items: np.ndarray | None = None,
) -> torch.Tensor:
    """(N, C) logits of the centre views (or of `items`, (N, 4) [index, dy, dx, d4]); with
    tta, the mean log-softmax over the 8 rotations/flips of each view."""
    model.eval()
    outputs = []
    n = len(bank) if items is None else len(items)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        views = (
            bank.centre(np.arange(start, stop)) if items is None else bank.views(items[start:stop])
        )
        x = normalise(views, norm).to(device, memory_format=torch.channels_last)
        if tta:
            turned = torch.stack([model(d4(x, k)).log_softmax(1) for k in range(8)])
            outputs.append(turned.mean(0).cpu())
        else:
            outputs.append(model(x).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def val_metrics(logits: torch.Tensor, labels: np.ndarray) -> dict:
    if len(labels) == 0:
        return {}
    y = torch.from_numpy(labels)
    pred = logits.argmax(1).numpy()
    return {
        "val_loss": float(nn.functional.cross_entropy(logits, y)),
        "val_acc": float((pred == labels).mean()),
        "val_f1_macro": float(f1_score(labels, pred, average="macro", zero_division=0)),
    }


def fit(
    config: RunConfig,
    dataset: Dataset,
    splits: dict,
    out: str | Path,
    resume: bool = False,
    progress: bool = False,
    log=print,
    stop_after: int | None = None,
    runtime: Runtime | None = None,
) -> dict | None:
    """Train a model on a split; write checkpoints, history and curves into `out`.

    `stop_after` ends the run after that many epochs as a kill would (last.pt only, no
    model.pt, returns None); `resume` then continues it. Under torchrun (`runtime` from
    `distributed.setup`) every rank trains its share of each global batch with
    DistributedDataParallel and rank 0 alone writes files."""
    runtime = runtime or Runtime()
    log = log if runtime.main else _silent
    out = Path(out)
    tc = config.train
    present = set(splits["labels"].values())
    classes = list(tc.classes) or [c for c in dataset.vocabulary.codes if c in present]
    unknown = set(classes) - set(dataset.vocabulary.codes)
    if unknown:
        raise ValueError(
            f"--classes {sorted(unknown)} are not in vocabulary {dataset.vocabulary.name!r}"
        )
    torch.manual_seed(tc.seed)
    train_paths, val_paths = fold_paths(splits, tc.fold)
    images = load_split_images(dataset, [*train_paths, *val_paths])
    train = select(splits, train_paths, classes, images, config)
    empty = [c for i, c in enumerate(classes) if not (train.labels == i).any()]
    if empty:
        raise ValueError(
            f"no training images of class(es) {', '.join(empty)} in this split; "
            "leave them out of --classes or add data"
        )
    val = select(splits, val_paths, classes, images, config)
    norm = fit_normalisation(train.bank.centre(), tc.colour)
    model_config = _with_classes(config, len(classes))
    model = build_model(model_config.model)
    if runtime.distributed:
        globalise_batch_norm(model)
    model = model.to(runtime.device, memory_format=torch.channels_last)
    trained = model
    if runtime.distributed:
        trained = DistributedDataParallel(
            model,
            device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
            broadcast_buffers=False,  # global batch norm keeps the buffers equal on all ranks
        )
    recipe = get_recipe(tc.recipe)
    steps_per_epoch = math.ceil(
        len(recipe.items(train.labels, config.geometry, tc.seed, 0)) / tc.batch_size
    )
    optimizer = make_optimizer(model, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, tc)
    )
    # With `ema`, the model validated, calibrated and kept is the moving average of the
    # weights (and batch-norm statistics), updated after every step.
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True)
        if tc.ema
        else None
    )
    kept = averaged.module if averaged is not None else model
    history: list[dict] = []
    start_epoch = 0
    last = out / "last.pt"
    if resume and last.is_file():
        state = torch.load(last, map_location=runtime.device, weights_only=True)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        history, start_epoch = state["history"], state["epoch"]
        log(f"resuming {out} after epoch {start_epoch}")
    elif resume:
        log(f"nothing to resume in {out}; starting afresh")
    if runtime.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", model_config.to_dict())
        write_json(out / "splits.json", splits)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "marrowdiff_version": __version__,
        "config": model_config.to_dict(),
        "classes": classes,
        "vocabulary": dataset.vocabulary.to_dict(),
        "normalisation": norm.to_dict(),
        "data": {
            "source": str(dataset.source),
            "fingerprint": dataset.fingerprint,
            "fold": tc.fold,
            "n_train": len(train.paths),
            "n_val": len(val.paths),
        },
        "runtime": {
            "processes": runtime.world,
            "device": runtime.device.type,
            "precision": runtime.precision,
        },
    }
    log(
        f"training {model_config.model.name} on {len(train.paths)} images "
        f"({len(val.paths)} val), recipe {recipe.name}, {tc.epochs} epochs, "
        f"{steps_per_epoch} steps/epoch"
    )
    if runtime.distributed:
        log(
            f"{runtime.world} processes ({runtime.device.type}): effective batch size "
            f"{tc.batch_size} ({tc.batch_size / runtime.world:.0f} per process), learning rate "
            f"{tc.lr} (unchanged: each step is one step of the configured global batch)"
        )
    for epoch in range(start_epoch, tc.epochs):
        began = time.time()
        generator = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
        torch.manual_seed(tc.seed * 100_003 + epoch)  # dropout: same on resume
        items = recipe.items(train.labels, config.geometry, tc.seed, epoch)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        row |= train_one_epoch(
            trained,
            train,
            items,
            norm,
            optimizer,
            scheduler,
            tc,
            generator,
            runtime,
            progress and runtime.main,
            after_step=None if averaged is None else lambda: averaged.update_parameters(model),
        )
        if runtime.main:
            logits = predict_logits(kept, val.bank, norm, device=runtime.device)
            row |= val_metrics(logits, val.labels)
        row["seconds"] = round(time.time() - began, 1)
        history.append(row)
        if runtime.main:
            save_checkpoint(
                last,
                meta
                | {
                    "state_dict": model.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                }
                | ({} if averaged is None else {"averaged": averaged.state_dict()}),
            )
            write_history(out, history)
        barrier(runtime)  # last.pt is whole before any rank goes on
        log(_epoch_summary(row, tc.epochs))
        if stop_after is not None and epoch + 1 >= stop_after < tc.epochs:
            return None
    if not runtime.main:
        return None
    final = meta | {
        "calibration": calibrate_split(kept, val, norm, log),
        "state_dict": kept.state_dict(),
        "epoch": tc.epochs,
        "history": history,
        "metrics": {k: v for k, v in history[-1].items() if k.startswith("val_")}
        if history
        else {},
    }
    save_checkpoint(out / "model.pt", final)
    return final


def calibrate_split(
    model: nn.Module,
    val: SplitData,
    norm: Normalisation,
    log=print,
    target: float = TARGET_ACCURACY,
) -> dict:
    """Temperature and "unsure" threshold for plain and TTA inference, fitted on the
    validation split ({} when it is too small to fit them)."""
    if len(val.labels) < 10:
        log("no validation split to calibrate on: probabilities stay uncalibrated, no cell flagged")
        return {}
    out = {}
    for name, tta in (("plain", False), ("tta", True)):
        device = next(model.parameters()).device
        logits = predict_logits(model, val.bank, norm, tta=tta, device=device).double().numpy()
        out[name] = calibrate(logits, val.labels, target).to_dict()
    c = out["plain"]
    log(
        f"calibrated on {c['n']} validation cells: temperature {c['temperature']:.2f}, "
        f"unsure below p={c['threshold']:.2f} ({c['coverage']:.0%} of cells sure, "
        f"{c['accepted_accuracy']:.1%} of them right)"
    )
    return out


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


def load_split_images(dataset: Dataset, paths: list[str]) -> dict[str, np.ndarray]:
    """path -> image for the given split paths; raises, naming some, if any is unreadable or
    not in the data set."""
    wanted, images = set(paths), {}
    for record in dataset.records:
        if record.path in wanted:
            try:
                images[record.path] = dataset.load(record)
            except ImageReadError:
                continue
    missing = wanted - set(images)
    if missing:
        raise ValueError(
            f"{len(missing)} split image(s) are unreadable or not in {dataset.source}"
            f", e.g. {sorted(missing)[:3]}; run `marrowdiff split` again"
        )
    return images


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint file, or the model.pt of a run folder; safe (weights_only) loading."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint; give a run folder from `marrowdiff train` or a .pt file"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a marrowdiff checkpoint (format {state.get('format')!r})")
    return state


def write_history(out: Path, history: list[dict]) -> None:
    """history.csv and curves.png (training loss, validation accuracy, as the paper's Fig 4A)."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text(out / "history.csv", buf.getvalue())
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
    save_image(out / "curves.png", fig)
