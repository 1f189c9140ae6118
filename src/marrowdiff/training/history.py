"""What a run says as it trains: the plan, a line per epoch, history.csv and curves.png."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from marrowdiff import run
from marrowdiff.config import RunConfig
from marrowdiff.distributed.runtime import (
    Runtime,
)
from marrowdiff.fileio import save_image, write_text
from marrowdiff.training.cells import SplitData
from marrowdiff.training.recipes import Recipe


def plan_summary(
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


def epoch_summary(row: dict, epochs: int) -> str:
    line = f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}"
    if "val_acc" in row:
        line += (
            f" | val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
            f"f1 {row['val_f1_macro']:.3f}"
        )
    return line + f" ({row['seconds']:.0f} s)"


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
