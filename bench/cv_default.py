"""6-fold cross-validation of a configuration on the public archive (issue 3's target).

Each of the 6 outer folds is the test set once (train-validation : test = 5:1, group-aware);
the model trains on the whole train-validation part with hyper-parameters fixed beforehand on
validation fold 0, and is tested once, with and without 8-way test-time augmentation. A local
band/segmented model gives the dual-stage row. Prints per-fold figures, mean +- sd and times.

    python bench/cv_default.py ARCHIVE --out runs/bench-cv [--config default] [--folds 0,1,...]

With PBC (issue 15): `--init RUN` fine-tunes from a pre-trained run's weights; `--also DATA
--also-vocab pbc --also-splits FILE [--also-weight W]` trains on the archive and PBC at once
(PBC's own test cells never train); `--no-dual` skips the local model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from marrowdiff.choi2017 import LOCAL_PAIR
from marrowdiff.config import load_config
from marrowdiff.datasets import open_dataset
from marrowdiff.evaluate import evaluate_run
from marrowdiff.metrics import HEADLINE as KEYS
from marrowdiff.splits import SplitConfig, Splits, splits_for_run
from marrowdiff.train import Source, fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-cv"))
    parser.add_argument("--config", default="default")
    parser.add_argument("--folds", default="0,1,2,3,4,5")
    parser.add_argument("--vocab", default="choi2017")
    parser.add_argument("--init", type=Path, help="pre-trained run to start from")
    parser.add_argument("--also", type=Path, help="a second data set to train on (PBC)")
    parser.add_argument("--also-vocab", default="pbc")
    parser.add_argument("--also-splits", type=Path)
    parser.add_argument("--also-weight", type=float, default=1.0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--no-dual", action="store_true")
    args = parser.parse_args()
    quiet = lambda message: None  # noqa: E731
    dataset = open_dataset(args.data, args.vocab)
    also = ()
    if args.also:
        extra = open_dataset(args.also, args.also_vocab)
        also = (Source(extra, Splits.read(args.also_splits), args.also_weight),)
    names = ("plain", "tta") if args.no_dual else ("plain", "tta", "dual_tta")
    config = load_config(args.config, train__fold=-1, train__epochs=args.epochs)
    rows = []
    began = time.time()
    for k in map(int, args.folds.split(",")):
        fold_began = time.time()
        fold_dir = args.out / f"test-fold-{k}"
        splits = splits_for_run(dataset, fold_dir, config=SplitConfig(test_fold=k), log=quiet)
        fit(
            config,
            dataset,
            splits,
            fold_dir / "global",
            resume=True,
            log=quiet,
            also=also,
            init=args.init,
        )
        trained = time.time() - fold_began
        row = {"fold": k, "train_seconds": round(trained, 1)}
        row["plain"] = evaluate_run([fold_dir / "global"], log=quiet)
        row["tta"] = evaluate_run([fold_dir / "global"], tta=True, out=fold_dir / "tta", log=quiet)
        if not args.no_dual:
            local = replace(config, train=replace(config.train, classes=LOCAL_PAIR))
            fit(local, dataset, splits, fold_dir / "local", resume=True, log=quiet)
            row["dual_tta"] = evaluate_run(
                [fold_dir / "global", fold_dir / "local"],
                tta=True,
                out=fold_dir / "dual",
                log=quiet,
            )
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
            "train_seconds": r["train_seconds"],
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
