"""Synthetic microscope fields with known cell positions, for testing and benchmarking detection.

No labelled bone-marrow fields are public, so fields are made from labelled single-cell patches:
each patch is pasted through a feathered disc onto a smear-like background (pale plasma with red
cells), at known centres, some of them touching another cell and some cut by the field border.
The truth is each patch's centre, where the archive's annotators centred the cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi


@dataclass(frozen=True)
class FieldConfig:
    height: int = 1080
    width: int = 1330  # the paper's fields: 1080 x 1330 px at x1000
    cells: int = 14  # nucleated cells per field
    patch_size: int = 144  # side, px, that each patch covers in the field
    disc: float = 0.40  # radius of the pasted disc, as a fraction of the patch side
    touching: float = 0.3  # fraction of cells placed touching an earlier one
    border_cells: int = 1  # cells placed across the field border
    red_cells: int = 160  # red-cell discs in the background


@dataclass(frozen=True)
class TrueCell:
    y: float
    x: float
    label: str
    border: bool  # the cell is cut by the field border


def smear_background(
    rng: np.random.Generator, height: int, width: int, red_cells: int, radius: float
) -> np.ndarray:
    """(H, W, 3) float32: pale, slightly uneven plasma with pink red-cell discs (pale centres)."""
    base = np.array([232, 220, 215], np.float32) + rng.normal(0, 5, 3)
    shade = ndi.zoom(rng.normal(0, 1, (6, 7)), (height / 6, width / 7), order=3)[:height, :width]
    image = base + 6 * shade[..., None].astype(np.float32)
    yy, xx = np.ogrid[:height, :width]
    red = np.array([222, 165, 160], np.float32) + rng.normal(0, 4, 3)
    for _ in range(red_cells):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.45, 0.6) * radius
        y0, y1 = int(max(cy - r - 1, 0)), int(min(cy + r + 2, height))
        x0, x1 = int(max(cx - r - 1, 0)), int(min(cx + r + 2, width))
        d = np.hypot(yy[y0:y1] - cy, xx[:, x0:x1] - cx) / r
        alpha = np.clip((1 - d) * 4, 0, 1)[..., None]
        pallor = 0.35 * np.exp(-((d / 0.45) ** 2))[..., None]  # central pallor
        colour = red * (1 - pallor) + base * pallor
        image[y0:y1, x0:x1] = image[y0:y1, x0:x1] * (1 - alpha) + colour * alpha
    return image


def paste(field: np.ndarray, patch: np.ndarray, cy: float, cx: float, radius: float) -> None:
    """Blend `patch` (already at field scale) into float `field`, centred at (cy, cx), through a
    disc of `radius` px feathered over its outer 20%."""
    side = patch.shape[0]
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, field.shape[0]), min(left + side, field.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = np.hypot(yy - cy, xx - cx) / radius
    alpha = np.clip((1 - d) / 0.2, 0, 1)[..., None]
    region = patch[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
    field[y0:y1, x0:x1] = field[y0:y1, x0:x1] * (1 - alpha) + region * alpha


def make_field(
    patches: list[np.ndarray], labels: list[str], config: FieldConfig, seed: int
) -> tuple[np.ndarray, list[TrueCell]]:
    """A (H, W, 3) uint8 field with up to `config.cells` of the given patches pasted in, and their
    true centres. Patches are drawn at random; cells that cannot be placed are left out."""
    rng = np.random.default_rng(seed)
    side, radius = config.patch_size, config.disc * config.patch_size
    field = smear_background(rng, config.height, config.width, config.red_cells, radius)
    order = rng.permutation(len(patches))[: config.cells]
    placed: list[TrueCell] = []
    for n, i in enumerate(order):
        patch = np.asarray(
            Image.fromarray(patches[i]).resize((side, side), Image.BICUBIC)
            if patches[i].shape[:2] != (side, side)
            else patches[i]
        )
        position = _place(rng, placed, config, radius, border=n < config.border_cells)
        if position is None:
            continue
        cy, cx = position
        paste(field, patch, cy, cx, radius)
        border = min(cy, cx, config.height - cy, config.width - cx) < radius * 0.9
        placed.append(TrueCell(float(cy), float(cx), labels[i], bool(border)))
    field += rng.normal(0, 1.5, field.shape)
    return np.clip(field, 0, 255).round().astype(np.uint8), placed


def _place(
    rng: np.random.Generator,
    placed: list[TrueCell],
    config: FieldConfig,
    radius: float,
    border: bool,
) -> tuple[float, float] | None:
    """A centre for the next cell: across the border, touching an earlier cell (its discs
    overlapping by a tenth), or free; never closer than 1.6 radii to another cell."""
    h, w = config.height, config.width
    for _ in range(200):
        if border:
            cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
            edge = rng.integers(4)
            inset = rng.uniform(0.2, 0.6) * radius
            cy = inset if edge == 0 else h - inset if edge == 1 else cy
            cx = inset if edge == 2 else w - inset if edge == 3 else cx
        elif placed and rng.random() < config.touching:
            anchor = placed[rng.integers(len(placed))]
            angle = rng.uniform(0, 2 * np.pi)
            gap = rng.uniform(1.6, 1.8) * radius
            cy, cx = anchor.y + gap * np.sin(angle), anchor.x + gap * np.cos(angle)
        else:
            cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
        if not border and min(cy, cx, h - cy, w - cx) < radius:
            continue
        if all(np.hypot(cy - c.y, cx - c.x) >= 1.6 * radius for c in placed):
            return cy, cx
    return None


def match(
    found: np.ndarray, truth: np.ndarray, tolerance: float = 12.0
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of (N, 2) found centres to (M, 2) true centres within `tolerance` px
    (Hungarian, on distance). Returns index arrays (found_i, truth_j) of the matched pairs."""
    if len(found) == 0 or len(truth) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    from scipy.optimize import linear_sum_assignment

    d = np.hypot(found[:, None, 0] - truth[None, :, 0], found[:, None, 1] - truth[None, :, 1])
    cost = np.where(d <= tolerance, d, 1e6)
    rows, cols = linear_sum_assignment(cost)
    keep = d[rows, cols] <= tolerance
    return rows[keep], cols[keep]


def score_detection(
    found: np.ndarray, found_border: np.ndarray, truth: list[TrueCell], tolerance: float = 12.0
) -> dict:
    """True/false positives and misses of detections against true cells. Cells cut by the
    border are left out on both sides: a true border cell neither counts as missed nor makes
    its detection a false positive, and a detection marked border is not scored."""
    true_xy = np.array([[c.y, c.x] for c in truth]).reshape(-1, 2)
    true_border = np.array([c.border for c in truth], bool)
    found = np.asarray(found, float).reshape(-1, 2)
    found_border = np.asarray(found_border, bool)
    fi, tj = match(found, true_xy, tolerance)
    matched_found = np.zeros(len(found), bool)
    matched_found[fi] = True
    matched_true = np.zeros(len(truth), bool)
    matched_true[tj] = True
    excluded = found_border.copy()
    excluded[fi[true_border[tj]]] = True  # found a border cell: neither right nor wrong
    lost = int((found_border[fi] & ~true_border[tj]).sum())  # an inner cell called border
    tp = int((matched_true & ~true_border).sum()) - lost
    return {
        "tp": tp,
        "fp": int((~matched_found & ~excluded).sum()),
        "fn": int((~matched_true & ~true_border).sum()) + lost,
    }


# ---------------------------------------------------------------------------------------------
# Labelled fields from elsewhere: boxes around cells (Pascal VOC XML, or CSV)


def read_boxes(path: str | Path, labels: set[str] | None = None) -> dict[str, list[TrueCell]]:
    """Image file name -> its labelled cells (box centres), from Pascal VOC XML files (one file,
    or a folder of them, as BCCD and many public smear sets ship) or a CSV with columns
    `image,xmin,ymin,xmax,ymax[,label][,width,height]`. `labels` keeps only boxes of those
    labels (e.g. {"WBC"}). A box touching the image edge is a border cell (the right and bottom
    edges only where the image size is given: VOC's <size>, or the CSV's width and height)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.xml"))
        if not files:
            raise FileNotFoundError(f"{path}: no Pascal VOC .xml files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"{path}: no such box file or folder")
    out: dict[str, list[TrueCell]] = {}
    for file in files:
        rows = _voc_boxes(file) if file.suffix.lower() == ".xml" else _csv_boxes(file)
        for image, label, box, size in rows:
            if labels and label not in labels:
                continue
            xmin, ymin, xmax, ymax = box
            border = xmin <= 1 or ymin <= 1
            if size is not None:
                border = border or xmax >= size[0] - 1 or ymax >= size[1] - 1
            cell = TrueCell((ymin + ymax) / 2, (xmin + xmax) / 2, label, bool(border))
            out.setdefault(image, []).append(cell)
    return out


def _voc_boxes(file: Path):
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as error:
        raise ValueError(f"{file}: not a Pascal VOC annotation ({error})") from None
    image = (root.findtext("filename") or file.with_suffix(".jpg").name).strip()
    size = root.find("size")
    wh = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        wh = (float(size.findtext("width")), float(size.findtext("height")))
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        coords = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        yield image, (obj.findtext("name") or "").strip(), coords, wh


def _csv_boxes(file: Path):
    import csv

    with file.open(newline="") as fh:
        reader = csv.DictReader(fh)
        needed = {"image", "xmin", "ymin", "xmax", "ymax"}
        if not needed <= set(reader.fieldnames or []):
            raise ValueError(
                f"{file}: a box CSV needs the columns {', '.join(sorted(needed))} (and label)"
            )
        for row in reader:
            coords = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            size = None
            if row.get("width") and row.get("height"):
                size = (float(row["width"]), float(row["height"]))
            yield row["image"], (row.get("label") or "").strip(), coords, size


def evaluate_on_boxes(
    images: str | Path,
    boxes: dict[str, list[TrueCell]],
    config=None,
    tolerance: float = 12.0,
    log=print,
) -> dict:
    """Detection precision and recall on labelled fields: `images` is the folder the boxes'
    image names are relative to. Images that are missing or unreadable are named and left out."""
    from marrowdiff.detect import DetectConfig, detect
    from marrowdiff.images import ImageReadError, decode_rgb

    config = config or DetectConfig()
    totals = {"tp": 0, "fp": 0, "fn": 0, "fields": 0}
    for name, truth in sorted(boxes.items()):
        try:
            image = decode_rgb((Path(images) / name).read_bytes())
        except (OSError, ImageReadError) as error:
            log(f"skipped {name}: {error}")
            continue
        found = detect(image, config)
        score = score_detection(
            np.array([[d.y, d.x] for d in found]),
            np.array([d.border for d in found]),
            truth,
            tolerance,
        )
        for key in ("tp", "fp", "fn"):
            totals[key] += score[key]
        totals["fields"] += 1
    totals["precision"] = totals["tp"] / max(1, totals["tp"] + totals["fp"])
    totals["recall"] = totals["tp"] / max(1, totals["tp"] + totals["fn"])
    return totals
