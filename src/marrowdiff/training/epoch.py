"""One pass over an epoch's items (`train_one_epoch`), the colour jitter it applies, and the
validation figures logged after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.metrics import f1_score
from torch import nn
from tqdm import tqdm

from marrowdiff.config import TrainConfig
from marrowdiff.distributed.runtime import (
    Runtime,
    all_sum,
    plan_batches,
    shard,
)
from marrowdiff.labels import LabelSpace, set_loss
from marrowdiff.normalisation import Normalisation, normalise
from marrowdiff.training import banks
from marrowdiff.training.augment import (
    blur,
    blur_draws,
    context,
    context_draws,
    jpeg,
    jpeg_draws,
    light_draws,
    light_jitter,
    scale_draws,
    stain_draws,
    stain_jitter,
    zoom,
)
from marrowdiff.training.cells import SplitData


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
    plan = epoch_plan(items, config, generator, runtime)
    cuda = runtime.device.type == "cuda"
    views = banks.batches(data.bank, [batch[mine] for batch, mine, _ in plan], workers, cuda)
    steps = tqdm(
        zip(plan, views, strict=True),
        total=len(plan),
        disable=not progress,
        leave=False,
        unit="batch",
    )
    for (batch, mine, jitter), x in steps:
        x = normalise(jitter(x), norm)
        x = x.to(runtime.device, memory_format=torch.channels_last, non_blocking=cuda)
        y = torch.from_numpy(data.labels[batch[mine, 0]]).to(runtime.device)
        with runtime.autocast():
            logits = model(x)
        # Summed over this rank's share, scaled so that DDP's average over ranks is the mean
        # over the global batch.
        loss = set_loss(logits.float(), sets[y], config.label_smoothing)
        loss = loss * (runtime.world / len(batch))
        _step(loss, optimizer, scheduler, scaler)
        if after_step is not None:
            after_step()
        total += len(y)
        correct += int(sets[y, logits.argmax(1)].sum())
        loss_sum += loss.item() * len(batch) / runtime.world
    loss_sum, correct, total = all_sum([loss_sum, correct, total], runtime)
    return {"train_loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)}


@dataclass(frozen=True)
class Jitter:
    """One step's photometric draws for this rank's views (each None when off)."""

    gains: torch.Tensor | None = None  # (b, 3, 1, 1) per-channel gains
    stain: torch.Tensor | None = None  # (b, 6) HED factors and shifts
    light: torch.Tensor | None = None  # (b, 4) brightness, contrast, saturation, gamma
    blur: torch.Tensor | None = None  # (b,) Gaussian standard deviations, px
    jpeg: torch.Tensor | None = None  # (b,) JPEG qualities
    scale: torch.Tensor | None = None  # (b,) zoom factors
    context: torch.Tensor | None = None  # (b, 5) surroundings replaced, disc radius, plasma

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, H, W) uint8 views, jittered as a microscope and camera would change them:
        scale, blur, stain, light, channel gains, then JPEG compression."""
        x = blur(zoom(context(x, self.context), self.scale), self.blur)
        x = apply_gains(light_jitter(stain_jitter(x, self.stain), self.light), self.gains)
        return jpeg(x, self.jpeg)


def epoch_plan(
    items: np.ndarray, config: TrainConfig, generator: torch.Generator, runtime: Runtime
) -> list[tuple[np.ndarray, slice, Jitter]]:
    """(global batch, this rank's share of it, its jitter) for every step of the epoch.
    Jitter is drawn for the whole global batch on every rank, so each item gets the same draw
    whichever rank takes it: the run does not depend on the number of processes."""
    plan = []
    for where in plan_batches(len(items), config.batch_size, smallest=2 * runtime.world):
        batch = items[where]
        n = len(batch)
        draws = (
            jitter_gains(n, config.colour_jitter, generator),
            stain_draws(n, config.stain_jitter, generator),
            light_draws(n, config.light_jitter, generator),
            blur_draws(n, config.blur_jitter, generator),
            jpeg_draws(n, config.jpeg_jitter, generator),
            scale_draws(n, config.scale_jitter, generator),
            context_draws(n, config.context_jitter, generator),
        )
        mine = shard(batch, runtime)
        plan.append((batch, mine, Jitter(*(None if d is None else d[mine] for d in draws))))
    return plan


def _step(loss: torch.Tensor, optimizer, scheduler, scaler: torch.amp.GradScaler | None) -> None:
    """One optimiser step on `loss`, and the schedule's."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():  # fp16: scaled against underflow
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    scheduler.step()


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
