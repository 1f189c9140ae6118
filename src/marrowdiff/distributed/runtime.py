"""Running under `torchrun`: process group, device, precision, sharding and global batch norm.

Launched by torchrun (WORLD_SIZE > 1 in the environment), `setup` joins the process group: NCCL
when the device is CUDA, gloo on CPUs. Run as one plain process, nothing is initialised and every
helper here is the identity, so single-process behaviour is unchanged.

Training keeps the configured batch size as the *global* batch: each optimiser step takes the
next `batch_size` items of the epoch's item list and every rank takes its contiguous share of
them (`shard`). Each rank's loss is its share's summed loss scaled by world / global batch, so
DDP's gradient average is the mean over the global batch: the same step as one process takes.
Batch norm sees the global batch too (`GlobalBatchNorm`: statistics all-reduced across ranks,
with gradients), because PyTorch's SyncBatchNorm refuses CPU tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from marrowdiff.distributed import launched
from marrowdiff.errors import UserError


class DeviceError(UserError, ValueError):
    """A --device or --precision this machine cannot give; the message says what to use."""


_NORM_GROUP = None  # the process group GlobalBatchNorm reduces over (made by `setup`)


@dataclass(frozen=True)
class Runtime:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (autocast; fp16 with a gradient scaler)
    compile: bool = False  # train through torch.compile (the saved weights are the plain model's)

    @property
    def main(self) -> bool:
        """The process that writes files and talks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self):
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.precision != "fp32")

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 gradients scaled against underflow (a no-op scaler otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA device here; use --device cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {name!r}; use cpu, cuda or auto")


def resolve_precision(name: str, device: torch.device) -> str:
    """fp32, bf16, fp16, or auto: on CUDA bf16 autocast where the GPU supports it, else fp16
    with a gradient scaler; fp32 on CPUs (where bf16 autocast trains slower than fp32;
    docs/scaling.md)."""
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name not in ("fp32", "bf16", "fp16"):
        raise DeviceError(f"unknown precision {name!r}; use fp32, bf16, fp16 or auto")
    return name


def setup(
    device: str = "auto", precision: str = "fp32", timeout_s: float = 600, compile: bool = False
) -> Runtime:
    """Join the process group when launched by torchrun; otherwise a one-process runtime."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device, local_rank)
    mode = resolve_precision(precision, chosen)
    if not launched():
        return Runtime(device=chosen, precision=mode, compile=compile)
    if not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(
            "nccl" if chosen.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s)
        )
    global _NORM_GROUP
    if _NORM_GROUP is None:
        # Batch norm's collectives (in forward and, through autograd, in backward) get a group
        # of their own: DDP's reducer issues its gradient all-reduces while backward runs, and
        # on one group the two streams could interleave differently on different ranks.
        _NORM_GROUP = dist.new_group(backend=dist.get_backend())
    return Runtime(dist.get_rank(), dist.get_world_size(), local_rank, chosen, mode, compile)


def teardown(runtime: Runtime) -> None:
    global _NORM_GROUP
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()
        _NORM_GROUP = None


def shard(batch: np.ndarray, runtime: Runtime) -> slice:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    bounds = np.linspace(0, len(batch), runtime.world + 1).round().astype(int)
    return slice(bounds[runtime.rank], bounds[runtime.rank + 1])


def plan_batches(n: int, batch_size: int, smallest: int) -> list[slice]:
    """Global batches over n items in order; a last batch smaller than `smallest` (batch norm
    needs two samples on every rank) joins the one before, so no item is dropped."""
    batches = [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(batches) > 1 and batches[-1].stop - batches[-1].start < smallest:
        batches[-2:] = [slice(batches[-2].start, n)]
    return batches


def all_sum(values: list[float], runtime: Runtime) -> list[float]:
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def gather(obj, runtime: Runtime) -> list | None:
    """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
    if not runtime.distributed:
        return [obj]
    out = [None] * runtime.world if runtime.main else None
    dist.gather_object(obj, out, dst=0)
    return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of all ranks (a CPU-capable SyncBatchNorm): per-channel
    sums and sums of squares are all-reduced with autograd, so the gradients are those of one
    process normalising the whole batch. Same parameters and buffers as BatchNorm1d/2d."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32, device=x.device)
        xf = x.float()
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        stats = all_reduce(stats, group=_NORM_GROUP or dist.group.WORLD)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None:
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(m * unbiased)
                self.num_batches_tracked.add_(1)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def globalise_batch_norm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm1d/2d for a GlobalBatchNorm holding the same tensors (in place)."""
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            swapped = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            swapped.load_state_dict(child.state_dict())
            swapped.train(child.training)
            for new, old in zip(swapped.parameters(), child.parameters(), strict=True):
                new.requires_grad_(old.requires_grad)  # a frozen layer stays frozen
            setattr(module, name, swapped)
        else:
            globalise_batch_norm(child)
    return module
