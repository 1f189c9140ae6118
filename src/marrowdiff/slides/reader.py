"""Slide files through OpenSlide (Aperio SVS, Hamamatsu NDPI, MIRAX, Leica SCN, Philips TIFF,
Ventana, generic pyramidal TIFF, DICOM): recognised by opening them, never by their name.

The one module that opens slide files. Every OpenSlide failure becomes a `SlideError` that
names the file and says what to do. The slide's `label` and `macro` images (which can carry a
patient's name or a barcode) are listed by name only: nothing here reads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marrowdiff.errors import UserError
from marrowdiff.slides.tiff_tiles import TiffTiles, TileDecodeError

CACHE = 128 << 20  # bytes of decoded slide tiles kept: a tile's margins are decoded once
# Associated images that may show a patient's name or a barcode: never read unless asked.
PRIVATE_IMAGES = ("label", "macro")


class SlideError(UserError):
    """A slide file that cannot be opened or read; the message names it and the fix."""


@dataclass(frozen=True)
class SlideInfo:
    """What a report says of a slide: its file, scanner format, size and scale."""

    path: str
    vendor: str  # OpenSlide's format name: aperio, hamamatsu, mirax, dicom, generic-tiff...
    width: int  # level 0, px
    height: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None  # microns per pixel of level 0 (the mean of x and y), None: not recorded
    objective: float | None  # the scanner's objective power, if recorded
    associated: tuple[str, ...]  # names of the associated images (label, macro, thumbnail)

    @property
    def private_images(self) -> list[str]:
        """The associated images that may carry a patient's name or a barcode."""
        return [name for name in self.associated if name in PRIVATE_IMAGES]

    def to_dict(self) -> dict:
        return {
            "file": self.path,
            "format": self.vendor,
            "width": self.width,
            "height": self.height,
            "levels": len(self.level_dimensions),
            "mpp": self.mpp,
            "objective": self.objective,
            "left_out": self.private_images,
        }


def slide_format(path: str | Path) -> str | None:
    """The format OpenSlide recognises `path` as (aperio, hamamatsu, dicom, generic-tiff...),
    or None: not a slide (an ordinary image, or no file OpenSlide knows)."""
    import openslide

    try:
        return openslide.OpenSlide.detect_format(str(path))
    except (OSError, openslide.OpenSlideError):
        return None


class Slide:
    """An open slide: `read` regions of any level as RGB; a context manager. `twin` opens the
    file again for another thread, sharing this one's cache of decoded tiles. The levels of a
    plain tiled TIFF (8-bit RGB, uncompressed or deflate) are read from their tiles directly
    (`tiff_tiles`: the same pixels, at a third of OpenSlide's time); the rest by OpenSlide."""

    def __init__(self, path: str | Path, cache=None, tiles: TiffTiles | None = None):
        import openslide

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such slide file")
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(
                f"{self.path}: not a slide OpenSlide can read ({exc}): a damaged or incomplete "
                "file, or a format it does not know; copy it again from the scanner, or export "
                "it as a pyramidal TIFF"
            ) from exc
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideError(
                f"{self.path}: the slide could not be opened ({exc}); copy it again from the "
                "scanner, or export it as a pyramidal TIFF with deflate or JPEG tiles"
            ) from exc
        self._cache = cache if cache is not None else openslide.OpenSlideCache(CACHE)
        self._slide.set_cache(self._cache)
        self.info = _info(self.path, self._slide)
        self._owns_tiles = tiles is None
        if tiles is None and self.info.vendor == "generic-tiff":
            tiles = TiffTiles.open(self.path, self.info.level_dimensions, CACHE)
        self._tiles = tiles

    def read(self, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """(height, width, 3) uint8 RGB of a region whose top left is (x, y) in level-0 px,
        `width` x `height` px of `level`; outside the slide and transparent pixels are white
        (the glass). A tile that does not decode is a SlideError naming the file and where."""
        import openslide

        try:
            direct = self._direct(x, y, level)
            if direct is not None:
                return self._tiles.read(*direct, width, height, level)
            argb = _read_argb(self._slide, x, y, width, height, level)
        except (openslide.OpenSlideError, TileDecodeError) as exc:
            raise SlideError(
                f"{self.path}: the tiles at ({x}, {y}) level {level} do not decode ({exc}): "
                "the file is damaged there; copy it again from the scanner"
            ) from exc
        bgra = argb.view(np.uint8).reshape(height, width, 4)  # little-endian 0xAARRGGBB
        rgb = np.empty((height, width, 3), np.uint8)
        for channel in range(3):  # one plain copy each: a third of one reversed-stride copy
            rgb[..., channel] = bgra[..., 2 - channel]
        if argb.size and argb.min() < 0xFF000000:  # alpha below 255 somewhere: premultiplied,
            rgb += (255 - bgra[..., 3])[..., None]  # so composite onto white (no data: glass)
        return rgb

    def _direct(self, x: int, y: int, level: int) -> tuple[int, int] | None:
        """(x, y) in `level`'s px when the tiles are read directly: a plain TIFF level, and a
        region that starts on one of its pixels (OpenSlide interpolates between them)."""
        if self._tiles is None or not self._tiles.reads(level):
            return None
        scale = self.info.level_downsamples[level]
        lx, ly = x / scale, y / scale
        if abs(lx - round(lx)) > 1e-9 or abs(ly - round(ly)) > 1e-9:
            return None
        return round(lx), round(ly)

    def twin(self) -> Slide:
        """The same file opened again (OpenSlide keeps a failed read's error per handle), with
        the same caches of decoded tiles."""
        return Slide(self.path, self._cache, self._tiles)

    def reopen(self) -> None:
        """Open the file again: OpenSlide refuses every read after one has failed."""
        import openslide

        self._slide.close()
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideError(f"{self.path}: could not be opened again ({exc})") from exc
        self._slide.set_cache(self._cache)

    def close(self) -> None:
        self._slide.close()
        if self._owns_tiles and self._tiles is not None:
            self._tiles.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_argb(slide, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
    """(height, width) uint32 premultiplied ARGB, as OpenSlide paints it: straight into a
    NumPy buffer through openslide-python's binding of `openslide_read_region` (half the
    time of its PIL image, which converts twice); its public `read_region` where that
    binding is not there."""
    import sys
    from ctypes import POINTER, c_uint32

    from openslide import lowlevel

    if sys.byteorder != "little" or not hasattr(lowlevel, "_read_region"):
        rgba = np.asarray(slide.read_region((x, y), level, (width, height)))
        a = rgba[..., 3].astype(np.uint32)
        premultiplied = (rgba[..., :3].astype(np.uint32) * a[..., None] + 127) // 255
        r, g, b = (premultiplied[..., i] for i in range(3))
        return (a << 24) | (r << 16) | (g << 8) | b
    out = np.empty((height, width), np.uint32)
    if width and height:
        lowlevel._read_region(slide._osr, out.ctypes.data_as(POINTER(c_uint32)), x, y, level,
                              width, height)  # fmt: skip
    return out


def _number(properties, key: str) -> float | None:
    try:
        value = float(properties.get(key, ""))
    except ValueError:
        return None
    return value if np.isfinite(value) and value > 0 else None


def _info(path: Path, slide) -> SlideInfo:
    import openslide

    p = slide.properties
    mpp_x, mpp_y = (
        _number(p, openslide.PROPERTY_NAME_MPP_X),
        _number(p, openslide.PROPERTY_NAME_MPP_Y),
    )
    mpp = None if mpp_x is None else (mpp_x + (mpp_y or mpp_x)) / 2
    width, height = slide.dimensions
    return SlideInfo(
        path=str(path),
        vendor=p.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
        width=int(width),
        height=int(height),
        level_dimensions=tuple((int(w), int(h)) for w, h in slide.level_dimensions),
        level_downsamples=tuple(float(d) for d in slide.level_downsamples),
        mpp=mpp,
        objective=_number(p, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
        associated=tuple(sorted(slide.associated_images.keys())),
    )


def associated_image(slide: Slide, name: str) -> np.ndarray:
    """An associated image (label, macro, thumbnail) as RGB: only when a user asks for it, as
    a label can carry a patient's name."""
    try:
        image = slide._slide.associated_images[name]
    except KeyError as exc:
        raise SlideError(
            f"{slide.path}: has no {name!r} image ({', '.join(slide.info.associated) or 'none'})"
        ) from exc
    return np.asarray(image.convert("RGB"))
