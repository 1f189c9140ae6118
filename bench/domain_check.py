"""The domain check on the two public sources: does it warn on the other source's cells and
stay quiet on each source's own held-out cells? (issue 26; figures in docs/BENCHMARKS.md,
"The domain check")

For each model the reference is fitted as training fits it (`inference.reference.fit_references`:
a sample of the training cells of every data set it trained on, the threshold from its own
validation cells), then cells are scored:

- per cell: the share beyond the threshold, of each source's own test cells and of every cell
  of a source the model never trained on;
- per set: how often a differential of `--set-size` random cells of each would be called
  unlike the training cells (`domain.check_cells`), over `--draws` draws.

    python bench/domain_check.py --archive ARCHIVE --pbc PBC \\
        --archive-run runs/loso/archive --pbc-run runs/demo/pbc/model \\
        --joint-run runs/demo/model --pbc-splits runs/demo/pbc/splits.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from marrowdiff.data.datasets import Dataset, open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.domain import bank_sample, check_cells
from marrowdiff.inference.predict import TorchModel
from marrowdiff.inference.reference import fit_references, window_features
from marrowdiff.preprocess import centre_views
from marrowdiff.run import load_checkpoint


def windows(model: TorchModel, dataset: Dataset, paths: list[str], chunk: int = 256):
    for i in range(0, len(paths), chunk):
        yield centre_views(dataset.load_paths(paths[i : i + chunk]), model.geometry)


def set_rate(distances: np.ndarray, reference, size: int, draws: int, seed: int = 0) -> float:
    """How often a random set of `size` of these cells is called unlike the training cells."""
    rng = np.random.default_rng(seed)
    size = min(size, len(distances))
    return float(
        np.mean(
            [
                check_cells(distances[rng.choice(len(distances), size, False)], reference).unlike
                for _ in range(draws)
            ]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--pbc", type=Path, required=True)
    parser.add_argument("--archive-run", type=Path, required=True, help="trained on the archive")
    parser.add_argument("--pbc-run", type=Path, required=True, help="trained on PBC only")
    parser.add_argument("--joint-run", type=Path, help="trained on both (the demo's model)")
    parser.add_argument("--pbc-splits", type=Path, required=True, help="PBC's splits.json")
    parser.add_argument("--set-size", type=int, default=100)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("domain_check.json"))
    args = parser.parse_args()
    archive = open_dataset(args.archive, "marrow14")
    pbc = open_dataset(args.pbc, "pbc")
    archive_splits = Splits.read(args.archive_run / Splits.FILE)
    pbc_splits = Splits.read(args.pbc_splits)
    every = {"archive": [r.path for r in archive.records], "PBC": [r.path for r in pbc.records]}
    data = {"archive": (archive, archive_splits), "PBC": (pbc, pbc_splits)}
    runs = {"archive only": (args.archive_run, ["archive"]), "PBC only": (args.pbc_run, ["PBC"])}
    if args.joint_run:
        runs["both"] = (args.joint_run, ["archive", "PBC"])
    rows = {}
    for name, (run, trained) in runs.items():
        model = TorchModel.from_checkpoint(load_checkpoint(run))
        # as training does: one sample over the training cells of every data set, in order
        train = [(source, p) for source in trained for p in data[source][1].fold(0)[0]]
        picked = [train[k] for k in bank_sample(len(train), 0)]
        train_windows = (
            w
            for source in trained
            for w in windows(model, data[source][0], [p for s, p in picked if s == source])
        )
        own, own_splits = data[trained[0]]
        held_out = windows(model, own, own_splits.fold(0)[1])
        reference = fit_references(model, train_windows, held_out, []).domain
        row = {"bank": len(reference.bank), "expected": round(reference.expected, 4)}
        for source, (dataset, splits) in data.items():
            seen = source in trained
            paths = splits.test if seen else every[source]
            distances = reference.distances(window_features(model, windows(model, dataset, paths)))
            label = f"{source} {'test cells' if seen else 'every cell (never trained on)'}"
            row[label] = {
                "cells": len(paths),
                "share_beyond": round(float((distances > reference.threshold).mean()), 4),
                f"sets_of_{args.set_size}_called_unlike": set_rate(
                    distances, reference, args.set_size, args.draws
                ),
                "all_called_unlike": check_cells(distances, reference).unlike,
            }
        rows[name] = row
        print(name, json.dumps(row, indent=1))
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
