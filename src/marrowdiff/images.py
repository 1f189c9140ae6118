"""Decode any image Pillow reads into an (H, W, 3) uint8 RGB array, or fail with a clear reason."""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from marrowdiff.errors import UserError

# A 1080x1330 field is 1.4 MP and a whole-slide tile rarely exceeds 50 MP; anything larger is
# refused before decoding so that a decompression bomb cannot exhaust memory.
MAX_PIXELS = 100_000_000
# Every command's limit on one image file: a cell patch is kilobytes and a camera's field a few
# megabytes (a 20-megapixel uncompressed TIFF is 60 MB); whole slides are not read as images.
# A zip member declaring more is not inflated, so a small zip cannot fill memory.
MAX_FILE_BYTES = 64 * 2**20

IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".webp",
    ".ppm",
    ".pgm",
    ".jp2",
)


class ImageReadError(UserError):
    """An input could not be decoded as an image; the message names the reason."""


def read_capped(stream, limit: int, declared: int | None = None) -> bytes:
    """A file's bytes from an open binary stream; an ImageReadError when its declared size (a
    zip member's header) or its actual size is over `limit` bytes. At most limit + 1 bytes are
    ever read or inflated, so a 2 GB member of a small zip costs nothing."""
    if declared is None or declared <= limit:
        data = stream.read(limit + 1)
        if len(data) <= limit:
            return data
        declared = None
    size = f"{declared / 2**20:.0f} MB" if declared else f"over {limit // 2**20} MB"
    raise ImageReadError(f"{size} is larger than any image (limit {limit // 2**20} MB): not read")


def looks_like_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file's bytes to an (H, W, 3) uint8 RGB array."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise ImageReadError(
                    f"{image.width}x{image.height} pixels is over the limit of {max_pixels:,}; "
                    "tile the image first"
                )
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise ImageReadError(
                    f"{frames} frames (an animated or multi-page image): one image per file is "
                    "read; save the frame to use as a file of its own"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not an image format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"truncated or corrupt image data ({exc})") from None
    if image.width == 0 or image.height == 0:
        raise ImageReadError("the image is empty (0 pixels)")
    return to_rgb(image)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8; alpha is composited onto white (slide background)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = _to_uint8(np.asarray(image), mode)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.round(rgb).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale a single-channel 16-bit, 32-bit or float image to 0..255."""
    values = values.astype(np.float64)
    if mode.startswith("I;16"):
        scale = 65535.0
    else:
        top = float(np.nanmax(values)) if values.size else 0.0
        if mode == "F" and top <= 1.0:
            scale = 1.0  # float images in [0, 1]
        else:
            scale = 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
    return np.clip(np.round(values / scale * 255.0), 0, 255).astype(np.uint8)


def encode_jpeg(
    image: np.ndarray | Image.Image, side: int | None = None, quality: int = 85
) -> bytes:
    """JPEG bytes of an RGB image, resized to side x side first when `side` is given."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if side is not None:
        image = image.resize((side, side), Image.BILINEAR)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def jpeg_data_uri(
    image: np.ndarray | Image.Image, side: int | None = None, quality: int = 85
) -> str:
    """The image as a `data:` URI, for pages that must open offline as one file."""
    return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(image, side, quality)).decode()
