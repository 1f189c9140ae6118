"""Whole slides: cells per second end to end, peak memory at two slide sizes 4x apart, and the
count against the truth, on synthetic marrow-like slides (`synthetic.slide`).

Each slide is a tiled pyramidal TIFF (deflate) pasted from the held-out test cells of the
archive's splits, written once into --work and reused. Each size is counted by the command a
user runs, in a fresh process (`marrowdiff count MODEL SLIDE --cells all`), timed from start
to exit (load, map, detect, classify, write the report); its peak resident memory is that
process's. Then against the truth file beside the slide:
- cells counted twice across seams: pairs of counted cells closer than 0.3 cell diameters;
- recall (true cells inside the counted tiles that were found, within 0.3 diameters) and
  precision (found cells that are true cells);
- the share of counted tiles wholly inside the countable zone the slide was drawn with;
- the differential against the truth of the counted tiles: each class's share, and the sum
  of absolute differences in percentage points.

    python bench/slides.py --model runs/demo/model-int8.onnx \
        --data data/data_WBC_torch.zip --splits runs/demo/splits.json --work /tmp/slides \
        [--width 56000 --height 50000] [--sizes large,small]

The model must record its microns per pixel (`marrowdiff calibrate RUN --mpp 0.136`, then
`export`; docs/slides.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.slides.pyramid import tiles_in
from marrowdiff.synthetic.slide import SlideConfig, read_truth, truth_path, write_slide

DIAMETER = 100.0  # px of level 0: the cell diameter detection is set for (slide at 0.136)


def bench_config(width: int, height: int) -> SlideConfig:
    """A slide that is mostly countable area, with particles, a thick zone and an edge."""
    return SlideConfig(width=width, height=height, thick_end=0.1, countable_end=0.9,
                       edge_end=0.96, margin=0.03, particles=2)  # fmt: skip


def make(path: Path, config: SlideConfig, data: str, splits: str) -> None:
    if path.exists() and truth_path(path).exists():
        return
    dataset = open_dataset(data)
    wanted = set(Splits.read(splits, dataset).test)
    records = [r for r in dataset.records if r.path in wanted]
    patches, labels = [dataset.load(r) for r in records], [r.label for r in records]
    started = time.perf_counter()
    with tqdm(total=tiles_in(config.height, config.width), unit="tile", desc=path.name) as bar:
        write_slide(path, patches, labels, config, bar.update)
    print(f"{path}: written in {time.perf_counter() - started:.0f} s "
          f"({path.stat().st_size / 1e9:.2f} GB)")  # fmt: skip


def count(model: str, slide: Path, out: Path) -> dict:
    """`marrowdiff count` in a fresh process: wall seconds and peak resident MB."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " code)\n"
    )
    command = [sys.executable, "-m", "marrowdiff", "count", model, str(slide), "--cells", "all",
               "--out", str(out)]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True,
                          text=True, check=True)  # fmt: skip
    seconds, rss_kb, code = done.stdout.strip().splitlines()[-1].split()
    if int(code):
        raise SystemExit(f"count failed ({code}):\n{done.stdout}\n{done.stderr}")
    return {"seconds": float(seconds), "peak_mb": int(rss_kb) / 1024}


def score(slide: Path, out: Path, config: SlideConfig) -> dict:
    truth = read_truth(truth_path(slide))
    report = json.loads((out / "report.json").read_text())
    with open(out / "cells.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    found = np.array([[float(r["x"]), float(r["y"])] for r in rows]).reshape(-1, 2)
    true = np.stack([truth["x"], truth["y"]], axis=1)
    boxes = [t["box"] for t in report["slide"]["counted_tiles"]]
    inside = np.zeros(len(true), bool)
    for x, y, w, h in boxes:
        inside |= (
            (true[:, 0] >= x) & (true[:, 0] < x + w) & (true[:, 1] >= y) & (true[:, 1] < y + h)
        )
    tolerance = 0.3 * DIAMETER
    twice = len(cKDTree(found).query_pairs(tolerance)) if len(found) else 0
    distance, nearest = (
        cKDTree(true).query(found) if len(found) else (np.zeros(0), np.zeros(0, int))
    )
    hit = distance <= tolerance
    recall = len(set(nearest[hit]) & set(np.flatnonzero(inside))) / max(1, inside.sum())

    def in_countable(x, y, w, h) -> bool:
        corners = [(y, x), (y, x + w - 1), (y + h - 1, x), (y + h - 1, x + w - 1)]
        return all(config.zone(cy, cx) == "countable" for cy, cx in corners)

    share = np.mean([in_countable(*b) for b in boxes]) if boxes else float("nan")
    counted = [r["class"] for r in rows if r["flag"] != "border"]
    true_mix, found_mix = Counter(truth["class"][inside]), Counter(counted)
    n_true, n_found = max(1, sum(true_mix.values())), max(1, len(counted))
    classes = sorted(set(true_mix) | set(found_mix))
    mix = {c: (100 * true_mix[c] / n_true, 100 * found_mix[c] / n_found) for c in classes}
    return {
        "cells": len(rows),
        "seam_duplicates_dropped": report.get("seam_duplicates_dropped", 0),
        "counted_twice": twice,
        "recall": recall,
        "precision": float(hit.mean()) if len(hit) else float("nan"),
        "tiles": len(boxes),
        "tiles_in_countable_zone": float(share),
        "differential_error": sum(abs(a - b) for a, b in mix.values()),
        "mix": mix,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--width", type=int, default=56000)
    p.add_argument("--height", type=int, default=50000)
    p.add_argument("--sizes", default="large,small", help="large, small (half each side)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        k = 1 if size == "large" else 2
        config = bench_config(args.width // k, args.height // k)
        slide = args.work / f"marrow-{config.width}x{config.height}.tiff"
        make(slide, config, args.data, args.splits)
        out = args.work / f"count-{size}"
        timing = count(args.model, slide, out)
        s = score(slide, out, config)
        print(f"\n{size}: {config.width} x {config.height} px at {config.mpp} um/px, "
              f"{s['tiles']} tiles counted")  # fmt: skip
        print(f"  {s['cells']} cells in {timing['seconds']:.1f} s end to end: "
              f"{s['cells'] / timing['seconds']:.0f} cells/s; peak memory "
              f"{timing['peak_mb']:.0f} MB")  # fmt: skip
        print(f"  counted twice across seams: {s['counted_twice']} (the report dropped "
              f"{s['seam_duplicates_dropped']} seen by two tiles); recall {s['recall']:.3f}, "
              f"precision {s['precision']:.3f}; counted tiles in the countable zone: "
              f"{s['tiles_in_countable_zone']:.3f}")  # fmt: skip
        print(f"  differential against the truth: sum of |differences| "
              f"{s['differential_error']:.1f} points")  # fmt: skip
        for c, (a, b) in s["mix"].items():
            print(f"    {c:28s} truth {a:5.1f}%  counted {b:5.1f}%")


if __name__ == "__main__":
    main()
