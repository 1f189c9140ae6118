"""Patch geometry and the preprocessing that inference shares with training, in numpy only.

The ONNX inference path (`classify`, `count` with an exported model) runs without PyTorch, so
what it needs lives here: resizing a patch to the model's scale, white balance, and the centred
input window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Geometry:
    input_size: int = 96  # network input side, px
    field: float = 1.0  # fraction of the patch side the input covers (1.0: the whole patch)
    max_shift: float = 1 / 12  # largest re-crop shift, as a fraction of the patch side (8/96 px)
    white_balance: bool = False  # scale each patch so its background (brightest 20%) is grey

    @property
    def canvas(self) -> int:
        """Side, px, that a whole patch is resized to."""
        return round(self.input_size / self.field)

    @property
    def pad(self) -> int:
        return int(np.ceil(self.max_shift * self.canvas))

    def to_dict(self) -> dict:
        return asdict(self)


def white_balance_gains(images: np.ndarray, level: float = 235.0) -> np.ndarray:
    """(..., H, W, 3) uint8 images -> (..., 1, 1, 3) float32 gains that divide out the colour
    cast of the slide background, estimated from the brightest 20% of pixels, so the
    background becomes neutral grey at `level` (stain, lamp and camera white balance vary
    strongly between patches). The background is estimated on every other row and column:
    the same figure to within a grey level, at a quarter of the cost. A batch of equal-sized
    images gives each its own gains, as one image at a time would, in one pass."""
    sample = images[..., ::2, ::2, :].astype(np.float32)  # a patch's sums stay below 2**24: exact
    luminance = sample[..., 0] + sample[..., 1] + sample[..., 2]
    flat = luminance.reshape(*luminance.shape[:-2], -1)
    bright = (flat >= np.percentile(flat, 80, axis=-1)[..., None]).astype(np.float32)
    pixels = sample.reshape(*flat.shape, 3)
    totals = np.matmul(bright[..., None, :], pixels)[..., 0, :].astype(np.float64)
    background = (totals / bright.sum(axis=-1)[..., None]).astype(np.float32)
    gains = np.float32(level) / np.maximum(background, np.float32(1.0))
    return gains[..., None, None, :]


def scale_channels(images: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """uint8 images times per-channel float32 gains (broadcast), rounded back to uint8; the
    result is C-contiguous whatever the layout of `images`."""
    out = np.multiply(images, gains, dtype=np.float32, order="C")
    np.clip(out, 0, 255, out=out)
    return np.rint(out, out=out).astype(np.uint8)


def white_balance(image: np.ndarray, level: float = 235.0) -> np.ndarray:
    """An (H, W, 3) uint8 image, or an (N, H, W, 3) batch, with its background made neutral
    grey (`white_balance_gains`)."""
    return scale_channels(image, white_balance_gains(image, level))


def centre_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    """The centred `fraction` of each side of an (H, W, 3) image (1.0: the image itself)."""
    if fraction >= 1.0:
        return image
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def resize_patch(image: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (side, side, 3): centre square crop, then area-preserving resize."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = np.ascontiguousarray(image[top : top + s, left : left + s])
    if s == side:
        return square
    resample = Image.BICUBIC if s < side else Image.LANCZOS
    return np.asarray(Image.fromarray(square).resize((side, side), resample))


def square(image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(C, C, 3) uint8: a patch resized to the canvas, white-balanced if the model is."""
    out = resize_patch(image, geometry.canvas)
    return white_balance(out) if geometry.white_balance else out


def canvas(image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(C + 2P, C + 2P, 3) uint8: a patch's `square`, reflect-padded by the largest shift,
    from which every training view is cut."""
    square_ = square(image, geometry)
    p = geometry.pad
    return np.pad(square_, ((p, p), (p, p), (0, 0)), mode="reflect")


def shifted_views(images: list[np.ndarray], geometry: Geometry, dy: int, dx: int) -> np.ndarray:
    """(N, 3, S, S) uint8: the `input_size` window of each canvas, its centre moved (dy, dx)
    px from the patch centre (at most the pad); (0, 0) is `centre_views`."""
    s = geometry.input_size
    base = geometry.pad + (geometry.canvas - s) // 2
    if max(abs(dy), abs(dx)) > geometry.pad:
        raise ValueError(f"shift ({dy}, {dx}) is larger than the pad, {geometry.pad} px")
    out = np.empty((len(images), 3, s, s), np.uint8)
    for i, image in enumerate(images):
        window = canvas(image, geometry)[base + dy : base + dy + s, base + dx : base + dx + s]
        out[i] = window.transpose(2, 0, 1)
    return out


def centre_views(images: list[np.ndarray], geometry: Geometry) -> np.ndarray:
    """(N, 3, S, S) uint8: each patch resized to the canvas, white-balanced if the model was,
    and its centred `input_size` window (what `PatchBank.centre` gives, without PyTorch).
    The batch is white-balanced at once, and only the windows are scaled."""
    c, s = geometry.canvas, geometry.input_size
    top = (c - s) // 2
    if not images:
        return np.empty((0, 3, s, s), np.uint8)
    squares = np.stack([resize_patch(image, c) for image in images])
    windows = squares[:, top : top + s, top : top + s].transpose(0, 3, 1, 2)
    if geometry.white_balance:
        return scale_channels(windows, white_balance_gains(squares).transpose(0, 3, 1, 2))
    return np.ascontiguousarray(windows)


def d4_numpy(x: np.ndarray, k: int) -> np.ndarray:
    """View k (0..7) of the dihedral group on the last two axes, as `training.transforms.d4`."""
    y = np.rot90(x, k % 4, axes=(-2, -1)) if k % 4 else x
    return np.ascontiguousarray(np.flip(y, axis=-1) if k >= 4 else y)
