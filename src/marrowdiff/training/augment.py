"""What another laboratory changes, simulated on training views: its stain and its light.

Stain jitter works in the haematoxylin-eosin-DAB space of colour deconvolution (Ruifrok and
Johnston 2001; scikit-image's `hed_from_rgb`), as the HED augmentation of Tellez et al. 2019
("Quantifying the effects of data augmentation and stain color normalization in convolutional
neural networks for computational pathology"): each view's stain concentrations are scaled by
a factor in [1 - s, 1 + s] and shifted by an amount in [-s, s], stain by stain, and turned back
into RGB. Light jitter changes a view's brightness, contrast, saturation and gamma, each by a
factor in [1 - a, 1 + a]. Every draw is made for the whole global batch on every rank (as the
colour gains are), so a run does not depend on the number of processes; an amount of 0 draws
nothing, so a run without jitter is the same run as before jitter existed.
"""

from __future__ import annotations

import math

import torch
from skimage.color import hed_from_rgb, rgb_from_hed

HED_FROM_RGB = torch.tensor(hed_from_rgb, dtype=torch.float32)  # (3, 3): od_row @ M = hed_row
RGB_FROM_HED = torch.tensor(rgb_from_hed, dtype=torch.float32)
LOG_FLOOR = math.log(1e-6)  # scikit-image's scale: optical density / -log(1e-6), in [0, 1]


def uniform(n: int, columns: int, amount: float, generator: torch.Generator) -> torch.Tensor:
    """(n, columns) draws from U[-amount, amount]."""
    return amount * (2 * torch.rand((n, columns), generator=generator) - 1)


def stain_draws(n: int, amount: float, generator: torch.Generator) -> torch.Tensor | None:
    """(n, 6) per-view HED factors (1 + U[-s, s]) and shifts (U[-s, s]); None for s = 0."""
    if amount <= 0:
        return None
    return torch.cat([1 + uniform(n, 3, amount, generator), uniform(n, 3, amount, generator)], 1)


def light_draws(n: int, amount: float, generator: torch.Generator) -> torch.Tensor | None:
    """(n, 4) per-view brightness, contrast, saturation and gamma factors; None for a = 0."""
    if amount <= 0:
        return None
    return 1 + uniform(n, 4, amount, generator)


def stain_jitter(x: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB views with each view's stains scaled and shifted."""
    if draws is None:
        return x
    rgb = (x.float() / 255).clamp_min(1e-6)
    od = torch.log(rgb) / LOG_FLOOR  # (B, 3, H, W), 0 = white
    hed = torch.einsum("bjhw,ji->bihw", od, HED_FROM_RGB)
    hed = hed * draws[:, :3, None, None] + draws[:, 3:, None, None]
    # unclamped (scikit-image clamps negative stains): identity draws give the image back
    od = torch.einsum("bjhw,ji->bihw", hed, RGB_FROM_HED)
    return (255 * torch.exp(od * LOG_FLOOR)).clamp(0, 255).round().to(torch.uint8)


def light_jitter(x: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB views with each view's gamma, brightness, contrast and
    saturation changed."""
    if draws is None:
        return x
    brightness, contrast, saturation, gamma = (draws[:, k, None, None, None] for k in range(4))
    f = (x.float() / 255) ** gamma * brightness
    mean = f.mean(dim=(1, 2, 3), keepdim=True)
    f = (f - mean) * contrast + mean
    grey = f.mean(dim=1, keepdim=True)
    f = (f - grey) * saturation + grey
    return (255 * f).clamp(0, 255).round().to(torch.uint8)
