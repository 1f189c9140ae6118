"""Training memory and speed, images in memory against images decoded from disk (issue 14).

    python bench/train_scale.py scale runs/bench-20k/cells runs/bench-200k/cells
    python bench/train_scale.py speed data/data_WBC_torch.zip [--epochs 3]

`scale`: for each class-folder set (made by bench/audit_scale.py), split it (`marrowdiff
split`; audit_scale.py's split is used when it is there) and train the `quick` model one epoch
with `--stream disk`, each in its own process; prints wall time and peak memory (max RSS of the
process, from wait4). `speed`: the default model
on the archive, `--stream memory` and `--stream disk` side by side, in that order, in the same
run; prints training images/s of each (from history.csv: items per epoch over epoch seconds,
validation included as in every run).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path


def _run(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `marrowdiff ARGS` in a child process (that child's own
    peak, from wait4; decoding workers are its children and not counted)."""
    began = time.time()
    child = subprocess.Popen([sys.executable, "-m", "marrowdiff", *args])
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"marrowdiff {' '.join(args)} failed ({child.returncode})")
    return time.time() - began, usage.ru_maxrss / 1024


def scale(sets: list[Path], out: Path) -> None:
    for cells in sets:
        name = cells.parent.name
        split = cells.parent / "split"  # audit_scale.py's, when it ran
        if not (split / "splits.json").is_file():
            split = out / name / "split"
            _run(["split", str(cells), "--out", str(split)])
        run = out / name / "train-disk"
        seconds, peak = _run(
            ["train", str(cells), "--out", str(run), "--splits", str(split / "splits.json"),
             "--config", "quick", "--epochs", "1", "--stream", "disk"]
        )  # fmt: skip
        print(f"{name}: 1 epoch from disk {seconds:.0f} s, peak memory {peak:.0f} MB", flush=True)


def speed(archive: Path, out: Path, epochs: int) -> None:
    for stream in ("memory", "disk"):
        run = out / f"speed-{stream}"
        seconds, _ = _run(
            ["train", str(archive), "--out", str(run), "--epochs", str(epochs),
             "--stream", stream]
        )  # fmt: skip
        rows = list(csv.DictReader((run / "history.csv").open()))
        per_epoch = [float(r["seconds"]) for r in rows]
        items = 1000  # balanced-random: 100 views per class and epoch, 10 classes
        rate = items * len(rows) / sum(per_epoch)
        print(f"{stream}: {rate:.0f} images/s over {len(rows)} epochs ({seconds:.0f} s in all)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["scale", "speed"])
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if args.what == "scale":
        scale(args.data, args.out)
    else:
        speed(args.data[0], args.out, args.epochs)


if __name__ == "__main__":
    main()
