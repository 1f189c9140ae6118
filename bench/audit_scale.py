"""The audit and split at scale: a generated set of synthetic cells with planted re-crops.

    python bench/audit_scale.py --cells 200000 --planted 500 --data runs/bench-200k

writes the set once (JPEG files in a class-folder tree, `marrowdiff.synthetic.cells`; re-used when
it is there), then runs `marrowdiff audit` and `marrowdiff split` on it as a user would, each in its
own process, and prints their wall time, peak memory (max RSS) and whether every planted re-crop was
found (and how many groups were found that were not planted). A planted re-crop is one cell written
twice: centred, and re-cropped 2-8 px away and re-encoded, half of them under another class.
Figures: docs/BENCHMARKS.md ("The data stage").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from marrowdiff.synthetic.cells import recrop, synthetic_cell

SIZE = 64  # px: a small patch keeps generation and decoding quick; the audit works at 96 px


def _write(path: Path, image: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, "JPEG", quality=quality)


def _chunk(args: tuple[Path, int, int, int]) -> None:
    root, start, stop, seed = args
    rng = np.random.default_rng([seed, start])
    for i in range(start, stop):
        label = i % 10
        cell = synthetic_cell(rng, SIZE, radius=rng.uniform(10, 20), hue=rng.uniform(-1, 1))
        _write(root / str(label) / f"cell{i:07d}.jpg", cell)


def _planted(root: Path, n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng([seed, 10**9])
    pairs = []
    for k in range(n):
        base = synthetic_cell(rng, SIZE + 20, radius=rng.uniform(10, 20), hue=rng.uniform(-1, 1))
        dy, dx = rng.integers(2, 9, 2) * rng.choice([-1, 1], 2)
        a = f"{k % 10}/planted{k:05d}a.jpg"
        b = f"{(k + k % 2) % 10}/planted{k:05d}b.jpg"  # odd k: filed under another class
        _write(root / a, recrop(base, 0, 0, SIZE))
        _write(root / b, recrop(base, int(dy), int(dx), SIZE), quality=75)
        pairs.append((a, b))
    return pairs


def make_set(root: Path, cells: int, planted: int, seed: int = 0) -> list[tuple[str, str]]:
    """The set in `root` (made once): `cells` distinct cells plus `planted` re-cropped pairs."""
    marker = root / "planted.json"
    if marker.is_file():
        made = json.loads(marker.read_text())
        if made["cells"] == cells and len(made["pairs"]) == planted:
            return [tuple(p) for p in made["pairs"]]
    began = time.time()
    step = 5000
    jobs = [(root, s, min(s + step, cells), seed) for s in range(0, cells, step)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_chunk, jobs))
    pairs = _planted(root, planted, seed)
    marker.write_text(json.dumps({"cells": cells, "pairs": pairs}))
    print(f"made {cells + 2 * planted:,} images in {time.time() - began:.0f} s: {root}")
    return pairs


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command run to completion."""
    began = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return time.time() - began, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--planted", type=int, default=500)
    parser.add_argument("--data", type=Path, default=Path("runs/bench-200k"))
    args = parser.parse_args()
    root = args.data / "cells"
    planted = make_set(root, args.cells, args.planted)
    audit_dir = args.data / "audit"
    seconds, peak = timed([sys.executable, "-m", "marrowdiff", "audit", str(root), "--out",
                           str(audit_dir)])  # fmt: skip
    audit = json.loads((audit_dir / "audit.json").read_text())
    group_of = {m["path"]: g for g, grp in enumerate(audit["duplicate_groups"])
                for m in grp["members"]}  # fmt: skip
    found = sum(a in group_of and group_of.get(a) == group_of.get(b) for a, b in planted)
    planted_paths = {p for pair in planted for p in pair}
    other = [g for g in audit["duplicate_groups"]
             if not {m["path"] for m in g["members"]} <= planted_paths]  # fmt: skip
    print(
        f"audit of {audit['n_images']:,} images: {seconds / 60:.1f} min, peak {peak:,.0f} MB; "
        f"planted re-crops found {found}/{len(planted)}; other groups {len(other)}"
    )
    split_dir = args.data / "split"
    seconds, _ = timed([sys.executable, "-m", "marrowdiff", "split", str(root), "--audit",
                        str(audit_dir / "audit.json"), "--out", str(split_dir)])  # fmt: skip
    print(f"split: {seconds:.0f} s (peak of the two processes above: RUSAGE_CHILDREN)")


if __name__ == "__main__":
    main()
