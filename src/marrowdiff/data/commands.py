"""`marrowdiff data`, `vocab`, `audit` and `split`: the data stage's commands."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from marrowdiff.arguments import data_args, log, progress
from marrowdiff.classes import load_vocabulary, vocabulary_template
from marrowdiff.data.audit import read_audit, run_audit
from marrowdiff.data.datasets import Dataset, open_dataset
from marrowdiff.data.public import PUBLIC_ARCHIVES, fetch, read_manifest
from marrowdiff.data.splits import SplitConfig, splits_for_dataset
from marrowdiff.fileio import write_text


def register(sub) -> None:
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
    data_args(p)
    p.add_argument(
        "--out", type=Path, required=True, help="folder for audit.json, audit.html, audit.md, PNGs"
    )
    p.set_defaults(run=cmd_audit)

    p = sub.add_parser("split", help="group-aware stratified test split and k-fold CV")
    data_args(p)
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


def cmd_fetch(args) -> int:
    args.name = args.name or args.name_option or "wbc_plosone"
    path = fetch(args.name, args.to, from_file=args.from_file, url=args.url, progress=progress())
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
        size = f"{archive.size:,} bytes" if archive.size else "checked image by image"
        print(
            f"{archive.name}\t{size}\tvocabulary {archive.vocabulary}\t{archive.citation}\n"
            f"\t{archive.url}"
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
        log(f"{args.data}: no image could be read; the audit lists why (exit 1)")
        return 1
    return 0


def _run_audit(dataset: Dataset, out: Path) -> dict:
    return run_audit(dataset, out, progress=progress(), log=lambda m: print(m, file=sys.stderr))


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
