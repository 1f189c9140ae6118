"""What an optimiser step changes: the model (DDP-wrapped under torchrun), its optimiser,
learning-rate schedule and moving average of the weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from marrowdiff.config import RunConfig, TrainConfig
from marrowdiff.distributed.runtime import (
    Runtime,
    globalise_batch_norm,
)
from marrowdiff.models import build_model
from marrowdiff.training import TrainingError


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
