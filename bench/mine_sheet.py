"""A contact sheet of a random sample of mined objects (`marrowdiff mine`), each captioned
with its outcome, to count by eye how many are wrong (docs/BENCHMARKS.md, "Mined objects").
The sheet stays out of git.

    python bench/mine_sheet.py runs/demo/mined --n 120 --out mined-sheet.png [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mined", type=Path, help="the folder `marrowdiff mine` wrote")
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--label", help="one outcome only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with open(args.mined / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if not args.label or r["label"] == args.label]
    rng = np.random.default_rng(args.seed)
    sample = [rows[i] for i in sorted(rng.choice(len(rows), min(args.n, len(rows)), False))]
    tile, columns = 110, 12
    sheet = Image.new("RGB", (columns * tile, -(-len(sample) // columns) * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(sample):
        x, y = (i % columns) * tile, (i // columns) * (tile + 14)
        with Image.open(args.mined / row["path"]) as patch:
            sheet.paste(patch.convert("RGB").resize((tile - 4, tile - 4)), (x + 2, y + 2))
        draw.text((x + 3, y + tile - 2), f"{i} {row['label']}", fill="black")
    sheet.save(args.out)
    print(f"{args.out}: {len(sample)} of {len(rows)} mined objects (seed {args.seed})")


if __name__ == "__main__":
    main()
