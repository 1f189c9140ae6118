"""6-fold cross-validation of a configuration on the public archive (issue 3's target).

Each of the 6 outer folds is the test set once (train-validation : test = 5:1, group-aware);
the model trains on the whole train-validation part with hyper-parameters fixed beforehand on
validation fold 0, and is tested once, with and without 8-way test-time augmentation. A local
band/segmented model gives the dual-stage row. Prints per-fold figures, mean +- sd and times.

    python bench/cv_default.py ARCHIVE --out runs/bench-cv [--config default] [--folds 0,1,...]

With PBC (issue 15): `--init RUN` fine-tunes from a pre-trained run's weights; `--also DATA
--also-vocab pbc --also-splits FILE [--also-weight W]` trains on the archive and PBC at once
(PBC's own test cells never train), each of the four once per data set (issue 27: PBC's mined
objects that are not cells, `--also runs/demo/mined/manifest.csv --also-vocab marrow14
--also-splits runs/demo/mined/splits.json`); `--no-dual` skips the local model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from marrowdiff.config import load_config
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import SplitConfig, Splits
from marrowdiff.evaluation.metrics import HEADLINE as KEYS
from marrowdiff.pipeline.holdout import split_fit_evaluate
from marrowdiff.pipeline.table1 import LOCAL_PAIR
from marrowdiff.training.cells import Source
from marrowdiff.training.train import FitOptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-cv"))
    parser.add_argument("--config", default="default")
    parser.add_argument("--folds", default="0,1,2,3,4,5")
    parser.add_argument("--vocab", default="choi2017")
    parser.add_argument("--init", type=Path, help="pre-trained run to start from")
    parser.add_argument(
        "--also", type=Path, action="append", default=[], help="another data set to train on"
    )
    parser.add_argument("--also-vocab", action="append", default=[], help="each --also's")
    parser.add_argument("--also-splits", type=Path, action="append", default=[])
    parser.add_argument("--also-weight", type=float, action="append", default=[])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--no-dual", action="store_true")
    args = parser.parse_args()
    quiet = lambda message: None  # noqa: E731
    dataset = open_dataset(args.data, args.vocab)
    also = tuple(
        Source(open_dataset(data, vocab), Splits.read(splits), weight)
        for data, vocab, splits, weight in zip(
            args.also,
            args.also_vocab or ["pbc"] * len(args.also),
            args.also_splits,
            args.also_weight or [1.0] * len(args.also),
            strict=True,
        )
    )
    names = ("plain", "tta") if args.no_dual else ("plain", "tta", "dual_tta")
    config = load_config(args.config, train__fold=-1, train__epochs=args.epochs)
    options = FitOptions(also=also, init=args.init)
    rows = []
    began = time.time()
    for k in map(int, args.folds.split(",")):
        fold_began = time.time()
        held = split_fit_evaluate(
            dataset,
            args.out / f"test-fold-{k}",
            config,
            SplitConfig(test_fold=k),
            options,
            name="global",
            modes=("plain", "tta"),
            local_pair=None if args.no_dual else LOCAL_PAIR,
            log=quiet,
        )
        row = {"fold": k, **held.metrics}
        if held.dual is not None:
            row["dual_tta"] = held.dual
        row["seconds"] = round(time.time() - fold_began, 1)
        rows.append(row)
        print(
            f"fold {k}: "
            + " | ".join(
                f"{name} acc {row[name]['accuracy']:.3f} f1m {row[name]['f1_macro']:.3f}"
                for name in names
            )
            + f" ({row['seconds']:.0f} s)",
            flush=True,
        )
    summary = {
        name: {
            key: (
                statistics.fmean(r[name][key] for r in rows),
                statistics.stdev(r[name][key] for r in rows) if len(rows) > 1 else 0.0,
            )
            for key in KEYS
        }
        for name in names
    }
    total = time.time() - began
    for name, figures in summary.items():
        print(f"{name:9s} " + "  ".join(f"{k} {m:.3f}±{s:.3f}" for k, (m, s) in figures.items()))
    print(f"total {total / 60:.1f} min for {len(rows)} folds on {torch.get_num_threads()} threads")
    slim = [
        {
            "fold": r["fold"],
            "seconds": r["seconds"],
            **{name: {k: r[name][k] for k in KEYS} for name in names},
        }
        for r in rows
    ]
    (args.out / "cv.json").write_text(
        json.dumps(
            {"config": config.to_dict(), "folds": slim, "summary": summary, "minutes": total / 60},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
