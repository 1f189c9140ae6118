"""Detection precision and recall on a public set of labelled fields (boxes around cells), e.g.
BCCD's peripheral-blood smears (Pascal VOC XML, white cells labelled "WBC").

    python bench/detection_boxes.py ANNOTATIONS IMAGES [--label WBC] [--cell-diameter 100] \
        [--tolerance 12]

ANNOTATIONS is a folder of VOC .xml files, one VOC file, or a CSV
(image,xmin,ymin,xmax,ymax[,label][,width,height]); IMAGES is the folder the names refer to.
Set --cell-diameter to the cells' size in those images' pixels.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from marrowdiff.counting.detect import DetectConfig
from marrowdiff.evaluation.detection import evaluate_on_boxes, read_boxes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("annotations")
    parser.add_argument("images")
    parser.add_argument("--label", action="append", help="keep boxes of this label (repeatable)")
    parser.add_argument("--cell-diameter", type=float, default=DetectConfig.cell_diameter)
    parser.add_argument("--tolerance", type=float, default=12.0)
    args = parser.parse_args()
    boxes = read_boxes(args.annotations, set(args.label) if args.label else None)
    config = replace(DetectConfig(), cell_diameter=args.cell_diameter)
    result = evaluate_on_boxes(args.images, boxes, config, args.tolerance)
    print(
        f"{result['fields']} fields: precision {result['precision']:.3f}  recall "
        f"{result['recall']:.3f}  (tp {result['tp']}, fp {result['fp']}, fn {result['fn']}; "
        f"right within {args.tolerance:g} px)"
    )


if __name__ == "__main__":
    main()
