"""Training and inference throughput of the registered models on this machine.

For each model: training images/s (batch 40, forward + backward + SGD step) and inference
cells/s (batch 128, fp32, eager PyTorch), and what one epoch of the paper's largest recipe
(augmented+oversampled-600: 48,000 views) and its 150 epochs would take at that rate.

    python bench/speed_models.py [--models vgg16,effnet_lite0] [--steps 5]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from marrowdiff.config import PRESETS
from marrowdiff.models import ModelConfig, build_model

PAPER_EPOCH = 600 * 10 * 8  # views per epoch of augmented+oversampled-600


def throughput(config: ModelConfig, steps: int) -> tuple[float, float]:
    model = build_model(config).to(memory_format=torch.channels_last)  # frozen layers: no grads
    size = config.input_size
    x = torch.randn(40, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, config.num_classes, (40,))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for step in range(steps + 1):
        if step == 1:
            began = time.perf_counter()  # the first step warms up
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    train = 40 * steps / (time.perf_counter() - began)
    model.eval()
    x = torch.randn(128, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        began = time.perf_counter()
        for _ in range(steps):
            model(x)
    infer = 128 * steps / (time.perf_counter() - began)
    return train, infer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cases = {
        "paper vgg16 (96 px)": PRESETS["paper"].model,
        "default effnet_lite0 (112 px)": PRESETS["default"].model,
        "  the same, nothing frozen": replace(PRESETS["default"].model, extra={}),
        "fast effnet_lite0 (96 px)": PRESETS["fast"].model,
        "vgg16 width 0.25 (96 px)": ModelConfig(
            name="vgg16", input_size=96, width=0.25, pretrained=False
        ),
    }
    for name, config in cases.items():
        train, infer = throughput(config, args.steps)
        epoch = PAPER_EPOCH / train
        print(
            f"{name:32s} train {train:7.1f} img/s  infer {infer:7.1f} cells/s  "
            f"AG+OS600 epoch {epoch / 60:6.1f} min, 150 epochs {150 * epoch / 3600:6.1f} h"
        )


if __name__ == "__main__":
    main()
