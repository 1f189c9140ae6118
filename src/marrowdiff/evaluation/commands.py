"""`marrowdiff evaluate`: a run scored on held-out cells (its own, or another data set's)."""

from __future__ import annotations

from pathlib import Path

from marrowdiff.arguments import log, progress
from marrowdiff.evaluation.evaluate import EvalConfig, evaluate_run


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics, confusion matrix, misclassified cells")
    p.add_argument(
        "runs",
        type=Path,
        nargs="+",
        help="run folder; more than one: global model first, then local models",
    )
    p.add_argument("--data", type=Path, help="the data set (default: where the run was trained)")
    p.add_argument(
        "--splits",
        type=Path,
        help="splits.json of another data set (--data): score the model on its test cells",
    )
    p.add_argument("--vocab", help="vocabulary to read --data with (default: the model's)")
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "val"],
        help="the held-out test cells, or fold's validation cells (default %(default)s)",
    )
    p.add_argument("--tta", action="store_true", help="average the 8 rotations/flips")
    p.add_argument("--out", type=Path, help="output folder (default: the first run folder)")
    p.add_argument(
        "--invariance",
        action="store_true",
        help="also check predictions under rotations/flips and crop shifts (Fig 5)",
    )
    p.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args) -> int:
    config = EvalConfig(
        data=args.data,
        split=args.split,
        tta=args.tta,
        out=args.out,
        invariance=args.invariance,
        splits_file=args.splits,
        vocab=args.vocab,
    )
    evaluate_run(args.runs, config, log=log, progress=progress())
    return 0
