"""Find nucleated cells in a microscope field: stain separation, thresholding and watershed.

1. Work at a reduced scale (`DetectConfig.scale`) for speed: cells are ~100 px across at x1000.
2. Separate the stains (Ruifrok & Johnston colour deconvolution, `skimage.color.rgb2hed`) and keep
   the haematoxylin channel: nuclei and basophilic cytoplasm are strong in it; red cells, plasma
   and background are not.
3. Otsu threshold (with a floor, so that a field without cells yields nothing), then a closing
   that joins the lobes of a segmented nucleus and the granules of a cell into one blob.
4. Split touching cells: a watershed on the distance transform, seeded by one peak per cell
   (peaks at least `min_separation` cell diameters apart).
5. Keep blobs of plausible area; each cell's centre is the centroid of its blob's convex hull,
   in field pixels.
   A cell whose blob touches the field border is marked `border`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.sparse.csgraph import connected_components
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.morphology import disk
from skimage.segmentation import watershed

from marrowdiff.counting.blobs import measure
from marrowdiff.stain import haematoxylin


@dataclass(frozen=True)
class DetectConfig:
    cell_diameter: float = 100.0  # typical nucleated-cell diameter in field px
    patch_size: int = 144  # side, field px, of the crop around each cell (the training patches')
    scale: float = 0.25  # detection works on the field resized by this factor
    min_area: float = 0.06  # smallest blob, as a fraction of a typical cell's area
    max_area: float = 4.0  # largest single blob before it is split anyway
    min_separation: float = 0.8  # two cells' centres at least this many diameters apart
    threshold_floor: float = 0.03  # least haematoxylin density above the plasma's for a nucleus
    closing: float = 0.05  # radius of the lobe-joining closing, in cell diameters
    cytoplasm: float = 0.2  # whole-cell threshold, as a fraction of the nucleus threshold
    red_margin: float = 10.0  # a nucleus pixel's red may exceed its blue by at most this much
    merge: float = 0.7  # two pieces whose centres are closer than this (diameters) are one cell

    @property
    def cell_radius(self) -> float:
        """px: the circle a report draws around each cell found."""
        return self.cell_diameter / 2

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    y: float  # centre, field px
    x: float
    area: float  # blob area, field px^2
    border: bool  # the blob touches the field border

    def to_dict(self) -> dict:
        return asdict(self)


def cell_mask(image: np.ndarray, config: DetectConfig) -> np.ndarray:
    """Boolean mask of nucleated-cell pixels of an RGB image at the detection scale.

    Two thresholds on the haematoxylin density: the Otsu level (with a floor) finds nuclei;
    `cytoplasm` times that level finds whole cells, kept only where they hold a nucleus."""
    d = config.cell_diameter * config.scale
    h = ndi.gaussian_filter(haematoxylin(image), sigma=max(d * 0.03, 0.5))
    # Levels are measured from the plasma's own density (the median pixel), and the darkest 1%
    # is clipped so that one very dark cell does not pull the Otsu level above the other cells.
    plasma = float(np.median(h))
    clipped = np.minimum(h, max(np.percentile(h, 99), plasma + 2 * config.threshold_floor))
    level = plasma + config.threshold_floor
    if clipped.max() > clipped.min():
        level = max(threshold_otsu(clipped), level)
    rgb = ndi.uniform_filter(image.astype(np.float32), size=(3, 3, 1))
    bluish = rgb[..., 2] - rgb[..., 0] > -config.red_margin  # not a red cell or its overlap
    nuclei = (h > level) & bluish
    radius = max(1, round(config.closing * d))
    cytoplasm = plasma + config.cytoplasm * (level - plasma)
    cells = ndi.binary_closing(h > cytoplasm, structure=disk(radius))
    cells = ndi.binary_opening(ndi.binary_fill_holes(cells), structure=disk(radius))
    labels, n = ndi.label(cells)
    holds_nucleus = np.zeros(n + 1, bool)
    holds_nucleus[np.unique(labels[nuclei & cells])] = True
    holds_nucleus[0] = False
    return holds_nucleus[labels]


def detect(image: np.ndarray, config: DetectConfig = DetectConfig()) -> list[Detection]:
    """Nucleated cells in an (H, W, 3) uint8 RGB field, in reading order (top to bottom)."""
    height, width = image.shape[:2]
    small_size = (max(1, round(width * config.scale)), max(1, round(height * config.scale)))
    small = np.asarray(Image.fromarray(image).resize(small_size, Image.BILINEAR))
    mask = cell_mask(small, config)
    d = config.cell_diameter * config.scale
    cell_area = np.pi * (d / 2) ** 2
    distance = ndi.distance_transform_edt(mask)
    # One search over the whole image (not blob by blob, which is slow with many blobs):
    # peaks lie inside blobs anyway, where the distance is above `threshold_abs`.
    peaks = peak_local_max(
        distance,
        min_distance=max(1, int(config.min_separation * d / 2)),
        threshold_abs=max(1.0, 0.1 * d),
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = watershed(-distance, markers, mask=mask)
    sy, sx = height / small.shape[0], width / small.shape[1]
    # Each cell's centre is the centroid of its blob's convex hull: a kidney-shaped nucleus or
    # a watershed cut leaves a concavity that would pull the plain centroid off the centre.
    blobs = measure(regions, config.min_area * cell_area)
    border = np.minimum.reduce(
        [blobs.top, blobs.left, mask.shape[0] - blobs.bottom, mask.shape[1] - blobs.right]
    )
    found = [
        Detection(
            y=float((blobs.y[k] + 0.5) * sy - 0.5),
            x=float((blobs.x[k] + 0.5) * sx - 0.5),
            area=float(blobs.area[k] * sy * sx),
            border=bool(border[k] <= 1),
        )
        for k in range(len(blobs))
    ]
    return sorted(merged(found, config.merge * config.cell_diameter), key=lambda c: (c.y, c.x))


def merged(found: list[Detection], within: float) -> list[Detection]:
    """Detections whose centres lie closer than `within` px joined into one (transitively):
    the pieces of one cell that the watershed cut apart (the lobes of a segmented neutrophil),
    which would each be counted. The joined cell's centre is the area-weighted mean of its
    pieces', its area their sum; it is on the border if any piece is."""
    if within <= 0 or len(found) < 2:
        return found
    yx = np.array([(d.y, d.x) for d in found])
    close = np.hypot(*(yx[:, None, :] - yx[None, :, :]).transpose(2, 0, 1)) < within
    _, group = connected_components(close, directed=False)
    groups: dict[int, list[Detection]] = {}
    for d, g in zip(found, group, strict=True):
        groups.setdefault(int(g), []).append(d)
    out = []
    for pieces in groups.values():
        area = sum(d.area for d in pieces)
        out.append(
            Detection(
                y=sum(d.y * d.area for d in pieces) / area,
                x=sum(d.x * d.area for d in pieces) / area,
                area=area,
                border=any(d.border for d in pieces),
            )
        )
    return out


def stain_at(image: np.ndarray, y: float, x: float, config: DetectConfig) -> float:
    """The fraction of the disc of half a cell radius around field px (y, x) that is stained
    like a nucleus or its cytoplasm (haematoxylin density above the field's plasma by the
    whole-cell margin, as `cell_mask` measures it, at the detection scale). Bare plasma, red
    cells and the empty corner of a field are near 0; a nucleated cell, even one detection
    missed, is well above. The review station refuses an added cell below MIN_STAIN."""
    height, width = image.shape[:2]
    small_size = (max(1, round(width * config.scale)), max(1, round(height * config.scale)))
    small = np.asarray(Image.fromarray(image).resize(small_size, Image.BILINEAR))
    h = haematoxylin(small)
    plasma = float(np.median(h))
    level = plasma + config.cytoplasm * config.threshold_floor * 4
    sy, sx = small.shape[0] / height, small.shape[1] / width
    r = max(1.0, config.cell_radius * config.scale / 2)
    yy, xx = np.ogrid[: small.shape[0], : small.shape[1]]
    disc = (yy - y * sy) ** 2 + (xx - x * sx) ** 2 <= r**2
    if not disc.any():
        return 0.0
    return float((h[disc] > level).mean())


# An added cell needs at least this much stain under it (`stain_at`). On 30 synthetic fields
# from the archive's training patches, every one of 390 whole cells scored at least 0.42 at its
# centre (1st percentile 0.51) and every one of 675 points a cell diameter from any cell 0.00
# (`/tmp`-free re-run: the scratch script is in docs/review.md's "Adding a missed cell").
MIN_STAIN = 0.2


def size_warning(found: list[Detection], config: DetectConfig) -> str:
    """A warning ("" if none) when the cells found are much smaller or larger than
    `cell_diameter` says, as in a field taken at another magnification than the detector (and
    the classifier's patch scale) is set for. The median equivalent diameter of the blobs is
    about 1.08 cell diameters on synthetic fields at the right scale, and tracks the scale
    (0.68 at 0.6x, 1.61 at 1.5x); a field with fewer than 3 whole cells is not judged."""
    sizes = [2 * np.sqrt(d.area / np.pi) for d in found if not d.border]
    if len(sizes) < 3:
        return ""
    across = float(np.median(sizes))
    if 0.75 <= across / config.cell_diameter <= 1.45:
        return ""
    return (
        f"the cells found are about {across:.0f} px across, but detection is set for cells of "
        f"{config.cell_diameter:.0f} px: if this field is at another magnification, set "
        "--cell-diameter and --patch-size to its scale (docs/counting.md)"
    )


def crop(image: np.ndarray, y: float, x: float, size: int) -> np.ndarray:
    """A (size, size, 3) crop of `image` centred on (y, x), reflect-padded beyond the border
    (a piece around the crop is padded, not the whole image)."""
    top, left = int(round(y - size / 2)), int(round(x - size / 2))
    h, w = image.shape[:2]
    pad = max(0, -top, -left, top + size - h, left + size - w)
    if not pad:
        return np.ascontiguousarray(image[top : top + size, left : left + size])
    # The piece reaches 2 x pad beyond the crop, so that its reflection is the image's.
    y0, y1 = max(top - 2 * pad, 0), min(top + size + 2 * pad, h)
    x0, x1 = max(left - 2 * pad, 0), min(left + size + 2 * pad, w)
    above, below = max(0, y0 - top), max(0, top + size - y1)
    before, after = max(0, x0 - left), max(0, left + size - x1)
    piece = np.pad(image[y0:y1, x0:x1], ((above, below), (before, after), (0, 0)), "reflect")
    ty, tx = top - y0 + above, left - x0 + before
    return np.ascontiguousarray(piece[ty : ty + size, tx : tx + size])
