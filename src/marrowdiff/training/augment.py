"""What another laboratory changes, simulated on training views: its stain, its light, its
optics and camera (blur, JPEG compression) and its magnification (scale); and, apart from
those, what surrounds a cell (context: its surroundings replaced by plain plasma).

Stain jitter works in the haematoxylin-eosin-DAB space of colour deconvolution (Ruifrok and
Johnston 2001; scikit-image's `hed_from_rgb`), as the HED augmentation of Tellez et al. 2019
("Quantifying the effects of data augmentation and stain color normalization in convolutional
neural networks for computational pathology"): each view's stain concentrations are scaled by
a factor in [1 - s, 1 + s] and shifted by an amount in [-s, s], stain by stain, and turned back
into RGB. Light jitter changes a view's brightness, contrast, saturation and gamma, each by a
factor in [1 - a, 1 + a]. Blur is a Gaussian of standard deviation U[0, b] px, JPEG a round
trip through Pillow's encoder at quality U[q, 95], scale a zoom about the view's centre by a
factor in [1 - z, 1 + z] (reflected at the edges). Every draw is made for the whole global
batch on every rank (as the colour gains are), so a run does not depend on the number of
processes; an amount of 0 draws nothing, so a run without jitter is the same run as before
jitter existed.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from skimage.color import hed_from_rgb, rgb_from_hed
from torch.nn import functional as F

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


def blur_draws(n: int, amount: float, generator: torch.Generator) -> torch.Tensor | None:
    """(n,) per-view Gaussian standard deviations, U[0, b] px; None for b = 0."""
    if amount <= 0:
        return None
    return amount * torch.rand(n, generator=generator)


def jpeg_draws(n: int, lowest: int, generator: torch.Generator) -> torch.Tensor | None:
    """(n,) per-view JPEG qualities, U{q..95}; None for q = 0."""
    if lowest <= 0:
        return None
    return torch.randint(lowest, 96, (n,), generator=generator)


def scale_draws(n: int, amount: float, generator: torch.Generator) -> torch.Tensor | None:
    """(n,) per-view zoom factors, 1 + U[-z, z]; None for z = 0."""
    if amount <= 0:
        return None
    return 1 + uniform(n, 1, amount, generator)[:, 0]


# The plasma a view's surroundings are replaced with: the synthetic fields' (synthetic.fields)
# pale pink, +- a spread per channel.
PLASMA = (232.0, 220.0, 215.0)
PLASMA_SPREAD = 12.0


def context_draws(n: int, share: float, generator: torch.Generator) -> torch.Tensor | None:
    """(n, 5) per-view: whether its surroundings are replaced (1 for a `share` of views), the
    disc kept about the centre (radius U[0.4, 0.55] of the view's side), and the plasma's RGB;
    None for a share of 0."""
    if share <= 0:
        return None
    chosen = (torch.rand(n, generator=generator) < share).float()
    radius = 0.4 + 0.15 * torch.rand(n, generator=generator)
    plasma = torch.tensor(PLASMA) + PLASMA_SPREAD * (2 * torch.rand(n, 3, generator=generator) - 1)
    return torch.cat([chosen[:, None], radius[:, None], plasma], 1)


def context(x: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) uint8 views, the chosen ones kept inside a disc about their centre
    (feathered over its outer 20%) and plain plasma outside it: a cell pasted on an empty
    smear, as the synthetic fields make them."""
    if draws is None or not bool(draws[:, 0].any()):
        return x
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5 - h / 2, torch.arange(w) + 0.5 - w / 2,
                            indexing="ij")  # fmt: skip
    d = torch.hypot(yy, xx)[None] / (draws[:, 1, None, None] * min(h, w))  # (B, H, W)
    alpha = ((1 - d) / 0.2).clamp(0, 1)
    alpha = torch.where(draws[:, 0, None, None] > 0, alpha, torch.ones_like(alpha))[:, None]
    f = x.float() * alpha + draws[:, 2:, None, None] * (1 - alpha)
    return f.clamp(0, 255).round().to(torch.uint8)


def blur(x: torch.Tensor, sigmas: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) uint8 views, each blurred by a Gaussian of its own standard deviation."""
    if sigmas is None:
        return x
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-(t[None] ** 2) / (2 * sigmas[:, None].clamp_min(1e-3) ** 2))
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (3B, K)
    b, c, h, w = x.shape
    f = F.pad(x.float().reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
    f = F.conv2d(f, kernels[:, None, None, :], groups=b * c)  # along rows
    f = F.conv2d(f, kernels[:, None, :, None], groups=b * c)  # along columns
    return f.reshape(b, c, h, w).clamp(0, 255).round().to(torch.uint8)


def jpeg(x: torch.Tensor, qualities: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) uint8 views, each through a JPEG encode and decode at its quality."""
    if qualities is None:
        return x
    out = torch.empty_like(x)
    for i, (view, quality) in enumerate(zip(x.numpy(), qualities.tolist(), strict=True)):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(view.transpose(1, 2, 0))).save(
            buf, "JPEG", quality=int(quality)
        )
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        out[i] = torch.from_numpy(decoded.transpose(2, 0, 1).copy())
    return out


def zoom(x: torch.Tensor, factors: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) uint8 views, each magnified about its centre by its factor (> 1: larger
    cells), reflected where a smaller view leaves the frame."""
    if factors is None:
        return x
    theta = torch.zeros((len(x), 2, 3))
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / factors
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    f = F.grid_sample(x.float(), grid, "bilinear", "reflection", align_corners=False)
    return f.clamp(0, 255).round().to(torch.uint8)


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
