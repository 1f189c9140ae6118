"""Only nucleated cells counted, on real fields (issue 27): every PBC image is a real 360 x 363
CellaVision field with its labelled cell at the centre, red cells and platelets around it.

`count` runs on whole held-out test images, as on any field. A counted object (in the
differential: not cut by the border, of a counted class, sure or unsure) is the labelled cell
when it is the counted object nearest the centre and within `--radius` cell diameters of it;
every other counted object is not that cell (a red cell, a platelet, a part of a cell, or now
and then a real second white cell: `--sheet` draws them, to look at). Prints the precision
(counted objects that are the labelled cell), the recall (labelled cells counted), what was
set aside and why, and how many platelet images still give a counted cell.

    python bench/real_fields.py --model runs/demo/model --pbc data/pbc.zip \
        --splits runs/demo/pbc/splits.json [--images 200 --platelets 60 --sheet fp.png]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from marrowdiff.cellsize import spread
from marrowdiff.counting.count import CountConfig, count_field
from marrowdiff.counting.detect import detect
from marrowdiff.counting.report import ESTIMATED_FLAGS
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.inference.predict import load_classifier
from marrowdiff.mining.objects import SortConfig

SMALL = SortConfig().small  # of a cell's area: the mining's platelet rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a run folder or .onnx")
    parser.add_argument("--pbc", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True, help="PBC's splits.json")
    parser.add_argument("--images", type=int, default=200, help="white-cell test images")
    parser.add_argument("--platelets", type=int, default=60, help="platelet test images")
    parser.add_argument("--radius", type=float, default=0.45, help="cell diameters")
    parser.add_argument(
        "--side",
        choices=["test", "val"],
        default="test",
        help="PBC's test split, or fold 0's validation side (to choose between models)",
    )
    parser.add_argument("--sheet", type=Path, help="PNG of the objects counted that are not")
    args = parser.parse_args()
    classifier = load_classifier([args.model])
    vocabulary = classifier.vocabulary
    dataset = open_dataset(args.pbc, "pbc")
    splits = Splits.read(args.splits, dataset)
    test = sorted(splits.test if args.side == "test" else splits.fold(0)[1])
    cells = spread([p for p in test if splits.labels[p] != "platelet"], args.images)
    platelets = spread([p for p in test if splits.labels[p] == "platelet"], args.platelets)
    config = CountConfig()
    reach = args.radius * config.detect.cell_diameter

    def counted_objects(path: str):
        image = dataset.load(dataset.record(path), whole=True)
        found, _ = count_field(classifier, path, image, config)
        for cell, d in zip(found, detect(image, config.detect), strict=True):
            area[id(cell)] = d.area / (np.pi * config.detect.cell_radius**2)
        counted = [c for c in found if c.flag in ESTIMATED_FLAGS and vocabulary.counted(c.label)]
        aside = [c for c in found if c.flag in ESTIMATED_FLAGS and not vocabulary.counted(c.label)]
        return image, found, counted, aside

    def labelled(image, counted) -> tuple[bool, list]:
        """Whether the labelled cell is among `counted`, and the others."""
        centre_y, centre_x = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
        near = sorted(counted, key=lambda c: np.hypot(c.y - centre_y, c.x - centre_x))
        hit = bool(near) and np.hypot(near[0].y - centre_y, near[0].x - centre_x) <= reach
        return hit, near[1:] if hit else near

    hits, wrong, aside_by, found_n, extra, area = 0, 0, Counter(), 0, [], {}
    sure = Counter()
    for path in cells:
        image, found, counted, aside = counted_objects(path)
        found_n += len(found)
        aside_by.update(c.label for c in aside)
        hit, others = labelled(image, counted)
        hits += hit
        wrong += len(others)
        extra += [(image, c) for c in others]
        hit, others = labelled(image, [c for c in counted if not c.flag])
        sure.update(hits=hit, wrong=len(others))
    counted_n = hits + wrong
    print(
        f"{len(cells)} white-cell {args.side} fields: {found_n} objects found, "
        f"{counted_n} counted; "
        f"precision {hits / max(1, counted_n):.3f} ({wrong} counted objects are not the "
        f"labelled cell), recall {hits / len(cells):.3f} ({hits} of {len(cells)} labelled "
        f"cells counted)"
    )
    n_sure = sure["hits"] + sure["wrong"]
    print(
        f"sure cells only (the count of sure cells): precision "
        f"{sure['hits'] / max(1, n_sure):.3f} ({sure['wrong']} of {n_sure}), recall "
        f"{sure['hits'] / len(cells):.3f}"
    )
    print(f"set aside, by outcome: {dict(aside_by.most_common()) or 'none'}")
    small = sum(area[id(c)] < SMALL for _, c in extra)
    print(
        f"of the {len(extra)} counted objects that are not the labelled cell, {small} are "
        f"under {SMALL} of a cell's area (what a size rule at the detector would drop)"
    )
    with_cell = sum(bool(counted_objects(p)[2]) for p in platelets)
    print(f"{len(platelets)} platelet {args.side} fields: {with_cell} give a counted cell")
    if args.sheet:
        draw_sheet(extra, args.sheet, config.crop_side)
        print(f"{args.sheet}: the {len(extra)} objects counted that are not the labelled cell")


def draw_sheet(items, out: Path, side: int, columns: int = 10) -> None:
    """A contact sheet of (field, Cell) crops, each captioned with its class."""
    tile = 120
    rows = max(1, -(-len(items) // columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, cell) in enumerate(items):
        top, left = int(cell.y - side / 2), int(cell.x - side / 2)
        patch = Image.fromarray(image).crop((left, top, left + side, top + side))
        x, y = (i % columns) * tile, (i // columns) * (tile + 14)
        sheet.paste(patch.resize((tile - 4, tile - 4)), (x + 2, y + 2))
        draw.text((x + 3, y + tile - 2), f"{i} {cell.label[:16]}", fill="black")
    sheet.save(out)


if __name__ == "__main__":
    main()
