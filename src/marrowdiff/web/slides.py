"""Slides in the review station: registered by path under the one folder the server may read
(`serve --slides DIR`: slides are gigabytes on laboratory storage, never uploads), counted as
`marrowdiff count` counts them, viewed in deep zoom (OpenSlide's DeepZoom generator, shown by
OpenSeadragon), and cropped cell by cell for review. The slide's label and macro images are
never read: deep zoom serves the pyramid's levels only."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from marrowdiff.errors import UserError
from marrowdiff.slides.reader import Slide, SlideError
from marrowdiff.slides.resolution import working_scale

TILE = 254  # px, deep zoom tiles (with 1 px overlap: 256 px images)
OPEN = 4  # slides kept open at once


class SlideAccessError(UserError, ValueError):
    """A slide path the station will not read: no slide folder (400), outside it (403), or
    not there (404): `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def resolve_slide(root: Path | None, text: str) -> Path:
    """The slide `text` names (relative to `root`, or absolute), refused unless it lies in
    `root` once every link is followed."""
    if root is None:
        raise SlideAccessError(
            "this station reads no slides: start it with `marrowdiff serve --slides DIR`, the "
            "folder of the laboratory's slide files"
        )
    base = root.resolve()
    given = Path(text.strip())
    path = (given if given.is_absolute() else base / given).resolve()
    if not path.is_relative_to(base):
        raise SlideAccessError(f"{text}: outside the slide folder this station may read", 403)
    if not path.is_file():
        raise SlideAccessError(f"{text}: no such slide file in the slide folder", 404)
    return path


class SlideViews:
    """Open slides (a few, most recently used) for deep-zoom tiles and cell crops."""

    def __init__(self, root: Path | None, model_mpp: float | None):
        self.root, self.model_mpp = root, model_mpp
        self._open: OrderedDict[str, tuple[Slide, object]] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, stored: str) -> tuple[Slide, object]:
        from openslide.deepzoom import DeepZoomGenerator

        with self._lock:
            if stored in self._open:
                self._open.move_to_end(stored)
                return self._open[stored]
            slide = Slide(resolve_slide(self.root, stored))
            zoom = DeepZoomGenerator(slide._slide, tile_size=TILE, overlap=1, limit_bounds=False)
            self._open[stored] = (slide, zoom)
            while len(self._open) > OPEN:
                old, _ = self._open.popitem(last=False)[1]
                old.close()
            return slide, zoom

    def dzi(self, stored: str) -> str:
        return self._get(stored)[1].get_dzi("jpeg")

    def tile(self, stored: str, level: int, col: int, row: int) -> bytes:
        """A deep-zoom tile as JPEG; out of range is a SlideAccessError (404)."""
        import io

        import openslide

        _, zoom = self._get(stored)
        try:
            image = zoom.get_tile(level, (col, row))
        except ValueError as exc:
            raise SlideAccessError(f"no tile {level}/{col}_{row}: {exc}", 404) from None
        except openslide.OpenSlideError as exc:
            raise SlideError(f"{stored}: the tile does not decode ({exc})") from None
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=85)
        return buffer.getvalue()

    def scale(self, stored: str) -> float:
        """Level-0 px per px of the model's scale (a cell's radius on the slide, from the
        detector's); 1.0 when the slide cannot be opened (the view says why elsewhere)."""
        try:
            slide, _ = self._get(stored)
            return working_scale(slide.info, self.model_mpp).level0_per_model_px
        except UserError:
            return 1.0

    def crop(self, stored: str, x: float, y: float, patch: int) -> np.ndarray:
        """The `patch` px crop around level-0 (x, y) at the model's scale, as `count` crops."""
        slide, _ = self._get(stored)
        working = working_scale(slide.info, self.model_mpp)
        side0 = patch * working.level0_per_model_px
        side = max(1, round(side0 / working.downsample))
        image = slide.read(int(round(x - side0 / 2)), int(round(y - side0 / 2)), side, side,
                           working.level)  # fmt: skip
        if image.shape[0] != patch:
            image = np.asarray(Image.fromarray(image).resize((patch, patch), Image.BILINEAR))
        return image
