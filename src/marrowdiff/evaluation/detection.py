"""Ground truth for detection: true cell centres, read from annotated boxes (Pascal VOC XML or
CSV), and detections scored against them (one-to-one matching, precision and recall)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TrueCell:
    y: float
    x: float
    label: str
    border: bool  # the cell is cut by the field border


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
    from marrowdiff.counting.detect import DetectConfig, detect
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
