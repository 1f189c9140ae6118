"""`marrowdiff mine`: training data for the objects that are not nucleated cells."""

from __future__ import annotations

from pathlib import Path

from marrowdiff.arguments import data_args, log, progress
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.mining.mine import MineConfig, mine


def register(sub) -> None:
    defaults = MineConfig()
    p = sub.add_parser(
        "mine",
        help="mine the fields of a centred-cell data set (PBC) for red cells and platelets, "
        "with debris drawn on their backgrounds: a data set to train on beside it",
    )
    data_args(p)
    p.set_defaults(vocab="pbc")
    p.add_argument(
        "--splits",
        type=Path,
        required=True,
        help="the data set's splits.json: each object goes with its field's side (leak-free)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for manifest.csv and crops/")
    p.add_argument(
        "--debris",
        type=float,
        default=defaults.debris,
        help="drawn debris crops per field, on the field's own background",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="of the drawn debris")
    p.set_defaults(run=cmd_mine)


def cmd_mine(args) -> int:
    dataset = open_dataset(args.data, args.vocab)
    splits = Splits.read(args.splits, dataset)
    config = MineConfig(debris=args.debris, seed=args.seed)
    mine(dataset, splits, args.out, config, log=log, progress=progress())
    return 0
