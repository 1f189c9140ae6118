"""Where a slide count's CPU goes: each stage of the first N tiles of the counting order, run
serially in one thread and timed with `process_time`, per cell the tiles keep (a tile reads
and detects its margins too, so there are more detections than cells). Then reading alone:
six 2048 px regions, each read twice (cold, then from the cache), through the direct reader
of plain TIFF tiles (`slides.tiff_tiles`) and through OpenSlide, in CPU ms per megapixel.

    python bench/slide_stages.py MODEL SLIDE [--tiles 16]

The slide as `bench/slides.py` writes it, the model with its microns per pixel recorded.
"""

from __future__ import annotations

import argparse
import time

from marrowdiff.counting.detect import detect
from marrowdiff.inference.predict import load_classifier
from marrowdiff.slides.count import SlideCountConfig, classify_tile, held_cells, read_tile
from marrowdiff.slides.plan import plan_slide
from marrowdiff.slides.reader import Slide


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("slide")
    parser.add_argument("--tiles", type=int, default=16)
    args = parser.parse_args()
    classifier = load_classifier([args.model], spin=False)
    config = SlideCountConfig(cells=None)
    # "crop": keep the cells the core holds, and crop them (`held_cells`)
    seconds = {"read": 0.0, "detect": 0.0, "crop": 0.0, "classify": 0.0}
    cells = detections = 0
    with Slide(args.slide) as slide:
        plan = plan_slide(slide, classifier.global_.size.mpp, config)
        for index in plan.order[: args.tiles]:
            tile = plan.tiles[index]
            began = time.process_time()
            image = read_tile(slide, tile, plan.working)
            read = time.process_time()
            found = detect(image, config.count.detect)
            detected = time.process_time()
            prepared = held_cells(tile, image, found, plan.working, config.count)
            cropped = time.process_time()
            classify_tile(classifier, prepared, config.count)
            done = time.process_time()
            for key, value in zip(seconds, (read - began, detected - read, cropped - detected,
                                            done - cropped), strict=True):  # fmt: skip
                seconds[key] += value
            cells, detections = cells + len(prepared.patches), detections + len(found)
    print(f"{args.tiles} tiles, {cells} cells kept, {detections} detections "
          f"({detections / max(1, cells):.2f} a cell); CPU ms per cell:")  # fmt: skip
    for key, value in seconds.items():
        print(f"  {key:9s} {1000 * value / max(1, cells):.3f}")
    total = sum(seconds.values())
    print(f"  total     {1000 * total / max(1, cells):.3f}: at most "
          f"{2 * cells / total:.0f} cells/s on 2 cores with nothing else")  # fmt: skip

    reading(args.slide)


def reading(path: str) -> None:
    """CPU ms per megapixel of 2048 px regions, cold and warm, by each reader."""
    for direct in (True, False):
        with Slide(path) as slide:
            if not direct:
                slide._tiles = None  # every level through OpenSlide
            elif slide._tiles is None:
                print("  (not a plain tiled TIFF: OpenSlide reads every level)")
                continue
            cold = warm = 0.0
            for i in range(6):
                x = min(8192 + 4096 * i, max(0, slide.info.width - 2048))
                y = min(slide.info.height // 3, max(0, slide.info.height - 2048))
                began = time.process_time()
                slide.read(x, y, 2048, 2048)
                middle = time.process_time()
                slide.read(x, y, 2048, 2048)
                cold, warm = cold + middle - began, warm + time.process_time() - middle
            megapixels = 6 * 2048 * 2048 / 1e6
            print(f"reading through {'tiff_tiles' if direct else 'OpenSlide'}: "
                  f"{1000 * cold / megapixels:.1f} ms per megapixel cold, "
                  f"{1000 * warm / megapixels:.1f} warm")  # fmt: skip


if __name__ == "__main__":
    main()
