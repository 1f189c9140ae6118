"""The `marrowdiff` command: one subcommand per pipeline stage. Thin: parse, call, print."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from marrowdiff import __version__, run
from marrowdiff.audit import read_audit, run_audit
from marrowdiff.calibration import TARGET_ACCURACY
from marrowdiff.classes import (
    VocabularyError,
    builtin_vocabularies,
    load_vocabulary,
    vocabulary_template,
)
from marrowdiff.config import PRESETS, DeviceError, RunConfig, TrainingError, load_config
from marrowdiff.datasets import Dataset, DatasetError, open_dataset
from marrowdiff.detect import DetectConfig
from marrowdiff.duplicates import WorkerError
from marrowdiff.fileio import write_text
from marrowdiff.images import ImageReadError
from marrowdiff.predict import ModelError, load_classifier, load_model
from marrowdiff.public import PUBLIC_ARCHIVES, fetch, read_manifest
from marrowdiff.recipes import RECIPES
from marrowdiff.report import ReportConfig
from marrowdiff.sources import list_inputs
from marrowdiff.splits import AUDIT_DIR, SplitConfig, SplitError, Splits, splits_for_dataset
from marrowdiff.web.accounts import ROLES, AccountError, Accounts

# PyTorch is imported by the commands that train or load checkpoints, not here: `classify` and
# `count` with an ONNX model run without it (half the memory, a second faster to start).
MODEL_NAMES = "vgg16, vgg11, effnet_lite0"  # marrowdiff.models.MODELS (a test keeps them equal)

# What a count's report heads with (report.About.CASE_FIELDS), as `count` options.
CASE_OPTIONS = {
    "case": "the specimen or accession id the report heads with",
    "patient": "a patient id for the report (optional; never needed)",
    "stain": "the stain, e.g. May-Grunwald-Giemsa",
    "operator": "who made the count",
}

USER_ERRORS = (
    DatasetError,
    VocabularyError,
    SplitError,
    ImageReadError,
    FileNotFoundError,
    DeviceError,
    TrainingError,
    run.CheckpointError,
    ModelError,
    AccountError,
    WorkerError,
)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name is printed, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except BrokenPipeError:  # `marrowdiff vocab show | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except USER_ERRORS as exc:
        print(f"marrowdiff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("marrowdiff: interrupted; finished outputs were written atomically", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marrowdiff",
        description="White-blood-cell differential counts for bone marrow smears: one command "
        "per pipeline stage (data -> audit -> split -> train -> evaluate). Start with "
        "`marrowdiff demo`.",
    )
    parser.add_argument("--version", action="version", version=f"marrowdiff {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    data = sub.add_parser("data", help="public data sets: fetch, list").add_subparsers(
        title="data commands", metavar="ACTION"
    )
    p = data.add_parser("fetch", help="download a public data set, verified by sha256")
    p.add_argument("name", nargs="?", choices=sorted(PUBLIC_ARCHIVES), help="default: wbc_plosone")
    p.add_argument("--name", dest="name_option", choices=sorted(PUBLIC_ARCHIVES), help="the same")
    p.add_argument("--to", type=Path, required=True, help="folder to put the archive in")
    p.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        help="a local copy to verify and copy instead of downloading",
    )
    p.add_argument("--url", help="download from this address instead of the published one")
    p.set_defaults(run=cmd_fetch)
    p = data.add_parser("list", help="list the public archives marrowdiff knows")
    p.set_defaults(run=cmd_data_list)

    vocab = sub.add_parser("vocab", help="cell-type vocabularies: show, init").add_subparsers(
        title="vocab commands", metavar="ACTION"
    )
    p = vocab.add_parser("show", help="print a vocabulary as JSON")
    p.add_argument("vocab", nargs="?", default="choi2017", help="built-in name or file")
    p.set_defaults(run=cmd_vocab_show)
    p = vocab.add_parser("init", help="write a vocabulary template from a data set's labels")
    p.add_argument("data", type=Path, help="the data set whose labels become the classes")
    p.add_argument("--out", type=Path, required=True, help="the .toml file to write")
    p.set_defaults(run=cmd_vocab_init)

    p = sub.add_parser("audit", help="counts, sizes, unreadable files, duplicates, conflicts")
    _data_args(p)
    p.add_argument(
        "--out", type=Path, required=True, help="folder for audit.json, audit.html, audit.md, PNGs"
    )
    p.set_defaults(run=cmd_audit)

    p = sub.add_parser("split", help="group-aware stratified test split and k-fold CV")
    _data_args(p)
    p.add_argument("--out", type=Path, required=True, help="folder for splits.json")
    p.add_argument(
        "--audit", type=Path, help="audit.json of this data set (default: audit it now, into --out)"
    )
    defaults = SplitConfig()
    p.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="shuffles which groups land in which fold (default %(default)s)",
    )
    p.add_argument(
        "--test-fold",
        type=int,
        default=defaults.test_fold,
        help=f"which of the {defaults.test_folds} outer folds is the test set",
    )
    p.add_argument(
        "--test-folds",
        type=int,
        default=defaults.test_folds,
        help="1/N of the data is the test set (paper: 6, i.e. 5:1)",
    )
    p.add_argument("--folds", type=int, default=defaults.folds, help="cross-validation folds")
    p.set_defaults(run=cmd_split)

    p = sub.add_parser("train", help="train a model (the fast default, or --config paper)")
    _data_args(p)
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument(
        "--config",
        default="default",
        help=f"preset ({', '.join(PRESETS)}) or TOML file with [model], [geometry], [train] tables",
    )
    p.add_argument("--recipe", choices=sorted(RECIPES), help="data recipe (Table 1 names)")
    p.add_argument("--model", help=f"architecture: {MODEL_NAMES}")
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
    p.add_argument(
        "--also-splits",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="splits.json of each --also data set (default: split it into OUT/also-N/)",
    )
    _runtime_args(p)
    p.set_defaults(run=cmd_train)

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

    p = sub.add_parser("calibrate", help="fit temperature and unsure threshold on validation")
    p.add_argument("run_dir", metavar="RUN", type=Path, help="run folder (or its model.pt)")
    p.add_argument("--data", type=Path, help="the data set (default: where the run was trained)")
    p.add_argument(
        "--target-accuracy",
        type=float,
        default=TARGET_ACCURACY,
        help="unflagged validation cells must be right this often (default %(default)s)",
    )
    p.set_defaults(run=cmd_calibrate)

    p = sub.add_parser("classify", help="classify single-cell patches into a CSV")
    _model_args(p)
    p.add_argument("inputs", nargs="+", help="image files, folders or zips of patches")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.set_defaults(run=cmd_classify)

    p = sub.add_parser("count", help="find and classify the cells of fields; write the report")
    _model_args(p)
    p.add_argument("inputs", nargs="+", help="field images, folders or zips of them")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    _count_args(p)
    for name, text in CASE_OPTIONS.items():
        p.add_argument(f"--{name}", help=f"{text} (default: none)")
    p.set_defaults(run=cmd_count)

    p = sub.add_parser("export", help="export a model to ONNX for deployment")
    p.add_argument("model", type=Path, help="run folder or .pt checkpoint")
    p.add_argument("--onnx", type=Path, required=True, help="ONNX file to write")
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantise to 8-bit integers (about twice the cells/s on a CPU), calibrated on the "
        "run's training cells and checked against the float model on its validation cells",
    )
    p.add_argument("--data", type=Path, help="the run's data set, if it has moved (with --int8)")
    p.set_defaults(run=cmd_export)

    users = sub.add_parser(
        "users", help="the review station's accounts: add, list, passwd, remove"
    ).add_subparsers(title="users commands", metavar="ACTION")
    for action, text in (
        ("add", "add an account (asks for its password)"),
        ("list", "list the accounts and their roles"),
        ("passwd", "set an account's password (ends its sessions)"),
        ("remove", "remove an account (ends its sessions; its name stays in the log)"),
    ):
        p = users.add_parser(action, help=text)
        if action != "list":
            p.add_argument("name", help="the person's name, as the log and reports show it")
        if action == "add":
            p.add_argument(
                "--role",
                choices=ROLES,
                required=True,
                help="reviewer: upload, review, add missed cells; signer: that, and sign off",
            )
        if action in ("add", "passwd"):
            p.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from the first line of standard input (for scripts)",
            )
        p.add_argument(
            "--data-dir",
            type=Path,
            default=Path("review-data"),
            help="the station's data folder, as given to serve (default %(default)s)",
        )
        p.set_defaults(run=cmd_users, action=action)

    p = sub.add_parser("serve", help="the review station: a web app to confirm every cell")
    _model_args(p, positional=False)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("review-data"),
        help="where cases, uploads and reports are kept (default %(default)s)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: this machine only; any other needs accounts, "
        "see `marrowdiff users add`)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients reach the station by (the Host header), e.g. "
        "marrow.lab.example; repeat for more (default: this machine's names and --host)",
    )
    _count_args(p)
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("demo", help="the main job: audit, split, train, evaluate the archive")
    p.add_argument("--data", type=Path, help="the archive or any data set (default: fetch it)")
    p.add_argument(
        "--pbc",
        type=Path,
        default=Path("data/pbc.zip"),
        help="the PBC data set from `marrowdiff data fetch pbc` (default: data/pbc.zip): "
        "pre-train on it and train on it beside the archive, a marrow14 model",
    )
    p.add_argument(
        "--no-pbc", action="store_true", help="the archive alone: a choi2017 model, 2 minutes"
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="run folder (default %(default)s)"
    )
    p.add_argument(
        "--config",
        default="default",
        help="preset (default, fast, paper, quick) or TOML file (default %(default)s)",
    )
    p.add_argument("--epochs", type=int, help="epochs of every training (default: the recipe's)")
    p.set_defaults(run=cmd_demo)
    _show_defaults(parser)
    return parser


def _device_arg(p: argparse.ArgumentParser, default: str, help: str) -> None:
    p.add_argument(
        "--device",
        default=default,
        choices=["cpu", "cuda", "auto"],
        help=help + " (auto: CUDA when there is one; under torchrun the LOCAL_RANK's GPU)",
    )


def _runtime_args(p: argparse.ArgumentParser) -> None:
    _device_arg(p, "auto", "where to train")
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


def _model_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    name, required = ("model", {}) if positional else ("--model", {"required": True})
    p.add_argument(
        name,
        **required,
        help="run folder, .pt checkpoint or .onnx file; for a dual-stage set, "
        "join global and local models with commas (global first)",
    )
    p.add_argument("--tta", action="store_true", help="average the 8 rotations/flips")
    _device_arg(p, "cpu", "where a PyTorch model runs; ONNX models run on the CPU")


def _count_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", type=int, default=ReportConfig.target, help="cells to count")
    p.add_argument(
        "--cell-diameter",
        type=float,
        default=DetectConfig.cell_diameter,
        help="typical nucleated-cell diameter in px (default %(default)s, x1000)",
    )
    p.add_argument(
        "--patch-size",
        type=int,
        default=DetectConfig.patch_size,
        help="crop side around each cell, px: the training patches' scale",
    )
    p.add_argument(
        "--include-border", action="store_true", help="count cells cut by the field border too"
    )
    p.add_argument("--myeloid", help="comma-separated class codes counted as myeloid in M:E")
    p.add_argument("--erythroid", help="comma-separated class codes counted as erythroid")
    p.add_argument(
        "--alert",
        action="append",
        default=[],
        metavar="CLASS>PERCENT",
        help="a laboratory flag on the report when a class's estimated share is above (or, "
        "with <, below) a percentage, e.g. --alert 'myeloblast>5'; repeatable (default: none)",
    )


def _count_configs(args):
    """(CountConfig, ReportConfig) from the options `_count_args` and `_model_args` add."""
    from marrowdiff.count import CountConfig

    detect = replace(DetectConfig(), cell_diameter=args.cell_diameter, patch_size=args.patch_size)
    report = ReportConfig(
        target=args.target,
        myeloid=tuple(args.myeloid.split(",")) if args.myeloid else (),
        erythroid=tuple(args.erythroid.split(",")) if args.erythroid else (),
        alerts=tuple(args.alert),
    )
    return CountConfig(detect=detect, tta=args.tta, include_border=args.include_border), report


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        type=Path,
        help="class-folder tree, zip archive of one, or CSV manifest (path,label[,group])",
    )
    p.add_argument(
        "--vocab",
        default="choi2017",
        help=f"built-in ({', '.join(builtin_vocabularies())}), a .toml/.json file, or "
        "'infer' to use the data set's own labels",
    )


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default, unless it says it already."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)
        elif (
            action.option_strings
            and action.help
            and action.default not in (None, False, [], argparse.SUPPRESS)
            and "default" not in action.help
        ):
            action.help += " (default %(default)s)"


def _log(message: str) -> None:
    print(message, flush=True)


def _progress() -> bool:
    return sys.stderr.isatty()


def cmd_fetch(args) -> int:
    args.name = args.name or args.name_option or "wbc_plosone"
    path = fetch(args.name, args.to, from_file=args.from_file, url=args.url, progress=_progress())
    archive = PUBLIC_ARCHIVES[args.name]
    if archive.manifest:
        print(
            f"{path}: {len(read_manifest(archive))} images, each verified by sha256 "
            f"(read it with --vocab {archive.vocabulary}); {archive.citation}"
        )
    else:
        print(f"{path}: verified sha256 {archive.sha256[:16]}...")
    return 0


def cmd_data_list(args) -> int:
    for archive in PUBLIC_ARCHIVES.values():
        print(
            f"{archive.name}\t"
            + (f"{archive.size:,} bytes" if archive.size else "checked image by image")
            + f"\tvocabulary {archive.vocabulary}\t"
            f"{archive.citation}\n\t{archive.url}"
        )
    return 0


def cmd_vocab_show(args) -> int:
    print(json.dumps(load_vocabulary(args.vocab).to_dict(), indent=2))
    return 0


def cmd_vocab_init(args) -> int:
    vocabulary = replace(open_dataset(args.data, "infer").vocabulary, name=args.out.stem)
    write_text(args.out, vocabulary_template(vocabulary))
    print(f"{args.out}: {len(vocabulary)} classes; edit names, lineages and orders")
    return 0


def cmd_audit(args) -> int:
    dataset = open_dataset(args.data, args.vocab)
    audit = _run_audit(dataset, args.out)
    print(
        f"{audit['n_images']} images, {len(audit['skipped'])} skipped "
        f"({audit['n_unreadable']} unreadable), {audit['n_duplicate_groups']} duplicate groups, "
        f"{audit['n_conflicting_groups']} with conflicting labels"
    )
    print(f"report: {args.out / 'audit.html'}")
    if not audit["n_images"]:
        _log(f"{args.data}: no image could be read; the audit lists why (exit 1)")
        return 1
    return 0


def _run_audit(dataset: Dataset, out: Path) -> dict:
    return run_audit(dataset, out, progress=_progress(), log=lambda m: print(m, file=sys.stderr))


def cmd_split(args) -> int:
    dataset = open_dataset(args.data, args.vocab)
    audit = read_audit(args.audit) if args.audit else _run_audit(dataset, args.out)
    config = SplitConfig(
        seed=args.seed, test_folds=args.test_folds, test_fold=args.test_fold, folds=args.folds
    )
    splits = splits_for_dataset(dataset, audit, config)
    path = splits.write(args.out)
    for warning in splits.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(splits.summary())
    print(f"splits: {path}")
    return 0


def _train_config(args) -> RunConfig:
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


def _also_sources(args, log) -> tuple:
    """The --also data sets (or the config file's [[also]] tables), each with its
    vocabulary, weight and splits."""
    from marrowdiff.config import also_sources
    from marrowdiff.splits import splits_for_run
    from marrowdiff.train import Source

    n = len(args.also)
    for option, given in (
        ("--also-vocab", args.also_vocab),
        ("--also-weight", args.also_weight),
        ("--also-splits", args.also_splits),
    ):
        if given and len(given) != n:
            raise DatasetError(
                f"{option} was given {len(given)} time(s) for {n} --also data set(s); give it "
                "once per --also, in the same order, or not at all"
            )
    entries = [
        {
            "data": data,
            "vocab": args.also_vocab[i] if args.also_vocab else None,
            "weight": args.also_weight[i] if args.also_weight else 1.0,
            "splits": args.also_splits[i] if args.also_splits else None,
        }
        for i, data in enumerate(args.also)
    ]
    from_file = also_sources(args.config)
    if entries and from_file:
        raise DatasetError(
            f"{args.config} lists [[also]] data sets and --also was given too: use one or the other"
        )
    sources = []
    for i, entry in enumerate(entries or from_file):
        if not entry["weight"] > 0:
            raise DatasetError(
                f"{entry['data']}: weight {entry['weight']}; give a weight above 0, or leave "
                "the data set out"
            )
        dataset = open_dataset(entry["data"], entry["vocab"] or args.vocab)
        splits = splits_for_run(dataset, args.out / f"also-{i + 1}", entry["splits"], log=log)
        sources.append(Source(dataset, splits, entry["weight"]))
    return tuple(sources)


def cmd_train(args) -> int:
    from marrowdiff.distributed import barrier, setup, teardown
    from marrowdiff.splits import splits_for_run
    from marrowdiff.train import fit

    runtime = setup(args.device, args.precision, compile=args.compile)
    try:
        dataset = open_dataset(args.data, args.vocab)
        config = _train_config(args)
        if not runtime.main:  # rank 0 audits and splits; the others read what it wrote
            barrier(runtime)
        log = _log if runtime.main else (lambda message: None)
        splits = splits_for_run(dataset, args.out, args.splits, log=log)
        also = _also_sources(args, log)
        if runtime.main:
            barrier(runtime)
        fit(
            config,
            dataset,
            splits,
            args.out,
            resume=args.resume,
            progress=_progress(),
            log=_log,
            runtime=runtime,
            also=also,
            init=args.init,
            stream=args.stream,
            workers=args.workers,
        )
    finally:
        teardown(runtime)
    if runtime.main:
        print(f"model: {args.out / run.MODEL}  curves: {args.out / run.CURVES}")
    return 0


def cmd_evaluate(args) -> int:
    from marrowdiff.evaluate import evaluate_run

    evaluate_run(
        args.runs,
        args.data,
        args.split,
        args.tta,
        args.out,
        args.invariance,
        log=_log,
        splits_file=args.splits,
        vocab=args.vocab,
        progress=_progress(),
    )
    return 0


def cmd_experiment(args) -> int:
    from marrowdiff.choi2017 import table1

    preset = "quick" if args.quick else args.config
    config = load_config(preset, train__epochs=args.epochs)
    recipes = args.recipes.split(",") if args.recipes else None
    summary = table1(
        args.data, args.out, config, cv=args.cv, seed=args.seed, recipes=recipes, log=_log
    )
    print((args.out / "table1.md").read_text())
    return 0 if summary else 1


def cmd_calibrate(args) -> int:
    from marrowdiff.calibration import calibrate_run

    calibrate_run(args.run_dir, args.data, args.target_accuracy, log=_log, progress=_progress())
    return 0


def cmd_classify(args) -> int:
    from marrowdiff.count import classify_to_csv

    classifier = load_classifier(args.model.split(","), args.device)
    inputs = list_inputs(args.inputs)
    found = classify_to_csv(
        classifier, inputs, args.out, tta=args.tta, log=_log, progress=_progress()
    )
    if found is None:  # another rank of a torchrun job: rank 0 writes
        return 0
    unsure = int(found.unsure.sum())
    print(f"{len(found)} of {len(inputs)} patches classified ({unsure} unsure): {args.out}")
    return 0 if len(found) or not inputs else 1


def cmd_count(args) -> int:
    from marrowdiff.report import check_config

    classifier = load_classifier(args.model.split(","), args.device)
    config, report_config = _count_configs(args)
    check_config(classifier.vocabulary, report_config)  # a wrong --myeloid: before any work
    case = {k: getattr(args, k) for k in CASE_OPTIONS if getattr(args, k)}
    inputs = list_inputs(args.inputs)
    return _count(classifier, inputs, config, report_config, args.out, args.model, case)


def _count(classifier, inputs, config, report_config, out: Path, model_name: str, case=None) -> int:
    from marrowdiff.count import count_to_report

    summary = count_to_report(
        classifier, inputs, config, report_config, out, model_name, _log, case
    )
    if summary is None:  # another rank of a torchrun job: rank 0 writes
        return 0
    guess = summary["estimate"]
    me = guess["me_ratio"]
    print(
        f"{summary['n_cells_found']} cells found in {summary['n_fields']} field(s); estimate of "
        f"{guess['n_cells']} cells, M:E {'n/a' if me is None else f'{me:.2f}'} (pre-classified, "
        f"not verified); {summary['n_counted']} sure cells: {out / 'report.html'}"
    )
    for alert in summary["alerts"]:
        print(f"alert: {alert}")
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
    if inputs and not summary["n_fields"]:
        print(f"marrowdiff: error: none of the {len(inputs)} inputs was readable", file=sys.stderr)
        return 1
    return 0


def cmd_export(args) -> int:
    from marrowdiff.export import export_onnx

    path = export_onnx(args.model, args.onnx, int8=args.int8, data=args.data, progress=_progress())
    print(f"ONNX model: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.int8:
        _log(_quantisation_summary(path))
    return 0


def _quantisation_summary(path: Path) -> str:
    q = load_model(path).metadata["quantisation"]
    line = (
        f"int8 against float on {q['cells']} {q['compared_on']} cells: {q['class_changes']} "
        f"change class, probabilities move by at most {q['max_probability_change']:.3f}"
    )
    if "accuracy_int8" in q:
        line += f"; accuracy {q['accuracy_int8']:.3f} (float {q['accuracy_float']:.3f})"
    return line


def cmd_serve(args) -> int:
    import uvicorn

    from marrowdiff.report import check_config
    from marrowdiff.web.app import create_app
    from marrowdiff.web.station import ReviewStation

    accounts = Accounts(args.data_dir) if Accounts.exist(args.data_dir) else None
    hosts = serving_hosts(args.host, args.allowed_host, accounts is not None)  # before the model
    count_config, report_config = _count_configs(args)
    classifier = load_classifier(args.model.split(","), args.device)
    check_config(classifier.vocabulary, report_config)  # a wrong --myeloid: before serving
    station = ReviewStation(
        args.data_dir,
        classifier,
        count_config,
        report_config,
        model_name=args.model,
    )
    who = f"{len(accounts.users())} accounts" if accounts else "no accounts: names are typed"
    print(f"review station: http://{args.host}:{args.port}/  (data in {args.data_dir}; {who})")
    app = create_app(station, accounts, hosts)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def serving_hosts(host: str, allowed: list[str], accounts: bool) -> tuple[str, ...]:
    """The Host names the station answers to; refused beyond this machine without accounts,
    and on every address (0.0.0.0, ::) without the names clients will use."""
    from marrowdiff.web.app import LOOPBACK

    if host not in LOOPBACK and not accounts:
        raise AccountError(
            f"serving on {host} without accounts would let anyone who reaches the port sign a "
            "count: add accounts first (marrowdiff users add NAME --role signer), or serve on "
            "127.0.0.1"
        )
    if host in ("0.0.0.0", "::", "") and not allowed:
        raise AccountError(
            f"--host {host} listens on every address: name the host names clients use with "
            "--allowed-host (e.g. --allowed-host marrow.lab.example)"
        )
    named = [] if host in ("0.0.0.0", "::") else [host]
    return tuple(dict.fromkeys([*LOOPBACK, *allowed, *named]))


def cmd_users(args) -> int:
    import getpass

    accounts = Accounts(args.data_dir)
    if args.action == "list":
        for user in accounts.users():
            print(f"{user.name}\t{user.role}")
        if not accounts.users():
            print(f"no accounts in {args.data_dir}: the station serves this machine only")
        return 0
    if args.action == "remove":
        accounts.remove(args.name)
        print(f"{args.name}: removed; their sessions are ended")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise AccountError("the two passwords differ; nothing was changed")
    if args.action == "add":
        user = accounts.add(args.name, args.role, password)
        print(f"{user.name}: added as {user.role} in {accounts.path}")
    else:
        accounts.set_password(args.name, password)
        print(f"{args.name}: password changed; their sessions are ended")
    return 0


# The demo's PBC recipe (docs/BENCHMARKS.md, "More cells: PBC"): pre-train on PBC, then train
# on the archive with PBC beside it at this weight (its draws per label, relative to the
# archive's), starting from the pre-trained weights.
PBC_PRETRAIN_EPOCHS = 30
PBC_WEIGHT = 0.5


def cmd_demo(args) -> int:
    from marrowdiff.count import CountConfig
    from marrowdiff.evaluate import evaluate_run
    from marrowdiff.export import export_onnx
    from marrowdiff.smear import write_fields
    from marrowdiff.splits import splits_for_run
    from marrowdiff.train import Source, fit

    data = args.data or fetch("wbc_plosone", Path("data"), progress=_progress())
    with_pbc = not args.no_pbc
    if with_pbc and not args.pbc.exists():
        raise DatasetError(
            f"{args.pbc}: no PBC data set; get it with `marrowdiff data fetch pbc --to "
            f"{args.pbc.parent}` (add --from FILE for a local copy), or run the archive alone "
            "with --no-pbc"
        )
    dataset = open_dataset(data, "marrow14" if with_pbc else "choi2017")
    _log(f"== audit and split {data}")
    splits = splits_for_run(dataset, args.out, log=_log)
    config = load_config(args.config, train__epochs=args.epochs)
    also, init = (), None
    if with_pbc:
        pbc = open_dataset(args.pbc, "pbc")
        _log(f"== audit and split {args.pbc} (Acevedo et al. 2020, CC BY 4.0)")
        pbc_splits = splits_for_run(pbc, args.out / "pbc", log=_log)
        epochs = args.epochs or PBC_PRETRAIN_EPOCHS
        _log(f"== pre-train on PBC ({epochs} epochs)")
        pretrain = load_config(args.config, train__epochs=epochs)
        init = args.out / "pbc" / "model"
        fit(pretrain, pbc, pbc_splits, init, resume=True, progress=_progress(), log=_log)
        also = (Source(pbc, pbc_splits, PBC_WEIGHT),)
    _log("== train" + (" on the archive and PBC, from the PBC model" if with_pbc else ""))
    fit(
        config,
        dataset,
        splits,
        args.out / "model",
        resume=True,
        progress=_progress(),
        log=_log,
        also=also,
        init=init,
    )
    _log("== evaluate on the held-out test split")
    evaluate_run([args.out / "model"], data, tta=True, log=_log)
    if with_pbc:
        _log("== evaluate on PBC's held-out test split (another laboratory, peripheral blood)")
        evaluate_run(
            [args.out / "model"],
            args.pbc,
            tta=True,
            out=args.out / "model" / "pbc-test",
            log=_log,
            splits_file=args.out / "pbc" / Splits.FILE,
            vocab="pbc",
        )
    _log("== export to ONNX, and count fields made from the held-out test cells")
    onnx = export_onnx(args.out / "model", args.out / "model.onnx")
    int8 = export_onnx(args.out / "model", args.out / "model-int8.onnx", int8=True, data=data)
    _log(f"{int8}: {_quantisation_summary(int8)}")
    fields = write_fields(dataset, splits.test, args.out / "fields")
    _count(
        load_classifier([onnx]),
        list_inputs([fields]),
        CountConfig(),
        ReportConfig(target=300),
        args.out / "count",
        str(onnx),
    )
    print(
        f"model: {args.out / 'model'} (metrics.json, confusion.png, misclassified.html, "
        f"curves.png); audit: {args.out / AUDIT_DIR / 'audit.html'}; differential report of "
        f"synthetic fields: {args.out / 'count' / 'report.html'}"
    )
    return 0
