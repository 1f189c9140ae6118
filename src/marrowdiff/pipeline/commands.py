"""`marrowdiff demo` (the main job) and `experiment table1` (the paper's Table 1)."""

from __future__ import annotations

from pathlib import Path

from marrowdiff.arguments import log, progress
from marrowdiff.config import load_config
from marrowdiff.pipeline.demo import DemoConfig, demo
from marrowdiff.pipeline.table1 import table1


def register(sub) -> None:
    p = sub.add_parser("experiment", help="reproduce the paper's experiments")
    p.add_argument("name", choices=["table1"], help="table1: the paper's Table 1")
    p.add_argument("data", type=Path, help="the paper's archive (data_WBC_torch.zip)")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and table1.md")
    p.add_argument("--config", default="paper", help="preset or TOML file (default: paper)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="narrow model, few epochs: minutes on 2 cores (smoke test)",
    )
    p.add_argument("--epochs", type=int, help="epochs of every training (default: the config's)")
    p.add_argument("--cv", action="store_true", help="all 6 test folds, mean +- sd")
    p.add_argument(
        "--recipes",
        help="comma-separated subset of the Table 1 recipes; the last "
        "one is the dual-stage global model",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="of the splits and the trainings (default %(default)s)"
    )
    p.set_defaults(run=cmd_experiment)

    defaults = DemoConfig()
    p = sub.add_parser("demo", help="the main job: audit, split, train, evaluate the archive")
    p.add_argument("--data", type=Path, help="the archive or any data set (default: fetch it)")
    p.add_argument(
        "--pbc",
        type=Path,
        default=defaults.pbc,
        help="the PBC data set from `marrowdiff data fetch pbc` (default: data/pbc.zip): "
        "pre-train on it and train on it beside the archive, a marrow14 model",
    )
    p.add_argument(
        "--no-pbc", action="store_true", help="the archive alone: a choi2017 model, 2 minutes"
    )
    p.add_argument(
        "--out", type=Path, default=defaults.out, help="run folder (default %(default)s)"
    )
    p.add_argument(
        "--config",
        default=defaults.config,
        help="preset (default, fast, paper, quick) or TOML file (default %(default)s)",
    )
    p.add_argument("--epochs", type=int, help="epochs of every training (default: the recipe's)")
    p.set_defaults(run=cmd_demo)


def cmd_demo(args) -> int:
    pbc = None if args.no_pbc else args.pbc
    config = DemoConfig(args.data, pbc, args.out, args.config, args.epochs)
    return demo(config, log=log, progress=progress())


def cmd_experiment(args) -> int:
    preset = "quick" if args.quick else args.config
    config = load_config(preset, train__epochs=args.epochs)
    recipes = args.recipes.split(",") if args.recipes else None
    summary = table1(
        args.data, args.out, config, cv=args.cv, seed=args.seed, recipes=recipes, log=log
    )
    print((args.out / "table1.md").read_text())
    return 0 if summary else 1
