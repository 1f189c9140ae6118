"""The network's input normalisation: a colour space and per-channel statistics, fitted on the
training images and stored in every checkpoint (an ONNX file carries them inside its graph)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# RGB -> YUV as Torch7's image.rgb2yuv (BT.601), which the paper used.
RGB_TO_YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]]
)


@dataclass(frozen=True)
class Normalisation:
    colour: str  # "yuv" or "rgb"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"colour": self.colour, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalisation:
        return cls(d["colour"], tuple(d["mean"]), tuple(d["std"]))


def to_colour(x: torch.Tensor, colour: str) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> the colour space the model was trained in."""
    if colour == "rgb":
        return x
    if colour == "yuv":
        return torch.einsum("ij,bjhw->bihw", RGB_TO_YUV.to(x.dtype), x)
    raise ValueError(f"unknown colour space {colour!r}; use 'yuv' or 'rgb'")


def fit_normalisation(images: torch.Tensor, colour: str) -> Normalisation:
    """Per-channel mean and std of (N, 3, H, W) uint8 training images in `colour` space."""
    sums = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for chunk in images.split(256):
        x = to_colour(chunk.float() / 255.0, colour).double()
        sums += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // 3
    mean = sums / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return Normalisation(colour, tuple(mean.tolist()), tuple(std.tolist()))


def normalise(x: torch.Tensor, norm: Normalisation) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB -> normalised float input."""
    x = to_colour(x.float() / 255.0, norm.colour)
    mean = torch.tensor(norm.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
