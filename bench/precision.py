"""fp32 against bf16 autocast on this CPU: training and inference speed of the default model, and
how far bf16 moves the probabilities of a trained model on real patches; and training through
`torch.compile` (`train --compile`) against eager, with the time the compilation takes.

    python bench/precision.py --model runs/demo/model --data data/data_WBC_torch.zip
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from marrowdiff.config import PRESETS
from marrowdiff.data.datasets import open_dataset
from marrowdiff.inference.predict import load_model
from marrowdiff.models import build_model
from marrowdiff.normalisation import normalise
from marrowdiff.preprocess import centre_views


def train_rate(precision: str, steps: int = 6, compiled: bool = False) -> tuple[float, float]:
    """(images/s of training steps after the first, seconds of the first step)."""
    config = PRESETS["default"].model
    model = build_model(replace(config, pretrained=False)).to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compiled else model
    x = torch.randn(40, 3, config.input_size, config.input_size).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, config.num_classes, (40,))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    first = time.perf_counter()
    for step in range(steps + 1):
        if step == 1:
            began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = step_model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return 40 * steps / (time.perf_counter() - began), began - first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model"))
    parser.add_argument("--data", type=Path, default=Path("data/data_WBC_torch.zip"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for precision in ("fp32", "bf16"):
        print(f"training {precision}: {train_rate(precision)[0]:6.1f} img/s (batch 40)")
    rate, first = train_rate("fp32", steps=20, compiled=True)
    eager, _ = train_rate("fp32", steps=20)
    print(
        f"training fp32, torch.compile: {rate:6.1f} img/s against {eager:.1f} eager (20 steps of "
        f"40; the first step, compiling, took {first:.0f} s)"
    )
    model = load_model(args.model)
    dataset = open_dataset(args.data)
    images = [dataset.load(r) for r in dataset.records]
    x = normalise(
        torch.from_numpy(centre_views(images, model.geometry)),
        model.normalisation,
    ).contiguous(memory_format=torch.channels_last)
    proba, rates = {}, {}
    with torch.inference_mode():
        for precision in ("fp32", "bf16"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                model.module(x[:128])
                began = time.perf_counter()
                logits = torch.cat([model.module(x[i : i + 128]) for i in range(0, len(x), 128)])
                rates[precision] = len(x) / (time.perf_counter() - began)
            proba[precision] = torch.softmax(logits.float(), 1).numpy()
    diff = np.abs(proba["fp32"] - proba["bf16"])
    agree = (proba["fp32"].argmax(1) == proba["bf16"].argmax(1)).mean()
    print(
        f"inference: fp32 {rates['fp32']:.1f}, bf16 {rates['bf16']:.1f} cells/s; on the "
        f"{len(x)} archive patches bf16 moves a probability by at most {diff.max():.4f} "
        f"(mean {diff.mean():.5f}); the predicted class agrees on {agree:.1%}"
    )


if __name__ == "__main__":
    main()
