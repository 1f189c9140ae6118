"""`marrowdiff train`: its options, and the call to `train.fit` (under torchrun or alone)."""

from __future__ import annotations

import argparse
from pathlib import Path

from marrowdiff import run
from marrowdiff.arguments import data_args, device_arg, log, progress
from marrowdiff.config import PRESETS, RunConfig, also_entries, load_config
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import splits_for_run
from marrowdiff.distributed.runtime import barrier, setup, teardown
from marrowdiff.models import MODELS
from marrowdiff.training.cells import open_sources
from marrowdiff.training.recipes import RECIPES
from marrowdiff.training.train import FitOptions, fit


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (the fast default, or --config paper)")
    data_args(p)
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument(
        "--config",
        default="default",
        help=f"preset ({', '.join(PRESETS)}) or TOML file with [model], [geometry], [train] tables",
    )
    p.add_argument("--recipe", choices=sorted(RECIPES), help="data recipe (Table 1 names)")
    p.add_argument("--model", choices=sorted(MODELS), help="architecture (default: the config's)")
    p.add_argument("--width", type=float, help="channel multiplier (vgg)")
    p.add_argument("--epochs", type=int, help="passes over the training cells (default: config's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the config's)")
    p.add_argument(
        "--seed", type=int, help="initial weights, augmentation and batch order (default: config's)"
    )
    p.add_argument(
        "--splits",
        type=Path,
        help="splits.json from `marrowdiff split` (default: split now with seed 0)",
    )
    p.add_argument("--fold", type=int, help="CV fold to train on (-1: all train-validation)")
    p.add_argument("--classes", help="comma-separated class codes: a local model of these only")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--init",
        type=Path,
        metavar="RUN",
        help="start from another run's weights (pre-training), e.g. one trained on PBC",
    )
    p.add_argument(
        "--mpp",
        type=float,
        help="microns per pixel of the training images, if known: the model records it, and "
        "`count --mpp` then resizes other images to it",
    )
    _also_args(p)
    p.add_argument(
        "--stream",
        choices=["auto", "memory", "disk"],
        default="auto",
        help="keep the images in memory, or decode them from disk when a batch needs them "
        "(auto: disk above 2 GB of canvases; the same views either way)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="processes decoding images from disk (default: the cores beyond 2, at most 4)",
    )
    _runtime_args(p)
    p.set_defaults(run=cmd_train)


def _also_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="DATA",
        help="another data set to train on at the same time (repeatable); its labels are read "
        "into --vocab (the target); its validation and test cells never train",
    )
    p.add_argument(
        "--also-vocab",
        action="append",
        default=[],
        metavar="VOCAB",
        help="vocabulary of each --also data set, in order (default: --vocab), e.g. pbc",
    )
    p.add_argument(
        "--also-weight",
        type=float,
        action="append",
        default=[],
        metavar="W",
        help="draws per label of each --also data set, relative to the recipe's (default 1)",
    )
    p.add_argument(
        "--also-splits",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="splits.json of each --also data set (default: split it into OUT/also-N/)",
    )


def _runtime_args(p: argparse.ArgumentParser) -> None:
    device_arg(p, "auto", "where to train")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16", "auto"],
        help="mixed precision: bf16 autocast, or fp16 with a gradient scaler (auto: bf16 on "
        "CUDA GPUs that support it, else fp16 on CUDA, fp32 on CPUs); see docs/scaling.md",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile (needs a C++ compiler on CPUs, Triton on CUDA; pays "
        "off on GPUs and long runs; the saved model is the same kind of file)",
    )


def train_config(args) -> RunConfig:
    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else None
    return load_config(
        args.config,
        train__recipe=args.recipe,
        model__name=args.model,
        model__width=args.width,
        train__epochs=args.epochs,
        train__lr=args.lr,
        train__seed=args.seed,
        train__fold=args.fold,
        train__classes=classes,
    )


def cmd_train(args) -> int:
    runtime = setup(args.device, args.precision, compile=args.compile)
    try:
        dataset = open_dataset(args.data, args.vocab)
        config = train_config(args)
        entries = also_entries(
            args.also, args.also_vocab, args.also_weight, args.also_splits, args.config
        )
        if not runtime.main:  # rank 0 audits and splits; the others read what it wrote
            barrier(runtime)
        said = log if runtime.main else (lambda message: None)
        splits = splits_for_run(dataset, args.out, args.splits, log=said)
        also = open_sources(entries, args.out, args.vocab, said)
        if runtime.main:
            barrier(runtime)
        options = FitOptions(
            also=also,
            init=args.init,
            stream=args.stream,
            workers=args.workers,
            resume=args.resume,
            progress=progress(),
            mpp=args.mpp,
        )
        fit(config, dataset, splits, args.out, options, log=log, runtime=runtime)
    finally:
        teardown(runtime)
    if runtime.main:
        print(f"model: {args.out / run.MODEL}  curves: {args.out / run.CURVES}")
    return 0
