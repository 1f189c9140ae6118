"""`marrowdiff classify`: patches into a CSV; and what `count` (`slides.commands`, which
counts slides too) does with fields: count them into a differential report."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from marrowdiff.arguments import log, model_args, progress
from marrowdiff.counting.count import CountConfig, classify_to_csv, count_to_report
from marrowdiff.counting.detect import DetectConfig
from marrowdiff.counting.report import MOSTLY_UNSURE, ReportConfig
from marrowdiff.counting.scale import (
    RESCALE,
    choose_scale,
    colours,
    heading,
    patch_sample,
)
from marrowdiff.data.datasets import Skipped
from marrowdiff.data.sources import Input, list_inputs
from marrowdiff.inference.predict import Classifier, load_classifier
from marrowdiff.stain import ColourShift

# What a count's report heads with (report.About.CASE_FIELDS), as `count` options.
CASE_OPTIONS = {
    "case": "the specimen or accession id the report heads with",
    "patient": "a patient id for the report (optional; never needed)",
    "stain": "the stain, e.g. May-Grunwald-Giemsa",
    "operator": "who made the count",
}


def register(sub) -> None:
    p = sub.add_parser("classify", help="classify single-cell patches into a CSV")
    model_args(p)
    p.add_argument("inputs", nargs="+", help="image files, folders or zips of patches")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    scale_args(p)
    p.set_defaults(run=cmd_classify)


def scale_args(p: argparse.ArgumentParser) -> None:
    """How `classify` and `count` set the scale they read cells at (`cellsize.py`)."""
    p.add_argument(
        "--rescale",
        choices=RESCALE,
        default="none",
        help="auto: frame every cell so that it has the size of the model's training cells "
        "(measured on 200 cells spread over the inputs); none (default): read them as they "
        "are, and warn when their size differs",
    )
    p.add_argument(
        "--mpp",
        type=float,
        help="microns per pixel of these images: cells are framed to the model's own, when it "
        "records it (`train --mpp`, `calibrate --mpp`)",
    )


def count_args(p: argparse.ArgumentParser) -> None:
    """The detection and report options of `count` (and of `serve`, which counts too)."""
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


def count_configs(args) -> tuple[CountConfig, ReportConfig]:
    """(CountConfig, ReportConfig) from the options `count_args` and `model_args` add."""
    detect = replace(DetectConfig(), cell_diameter=args.cell_diameter, patch_size=args.patch_size)
    report = ReportConfig(
        target=args.target,
        myeloid=tuple(args.myeloid.split(",")) if args.myeloid else (),
        erythroid=tuple(args.erythroid.split(",")) if args.erythroid else (),
        alerts=tuple(args.alert),
    )
    return CountConfig(detect=detect, tta=args.tta, include_border=args.include_border), report


def cmd_classify(args) -> int:
    classifier = load_classifier(args.model.split(","), args.device, args.normalise_stain)
    inputs, passed = listed(args.inputs)
    sample = patch_sample(inputs)
    scale = choose_scale(classifier, sample, args.rescale, args.mpp)
    colour = colours(classifier, sample)
    found = classify_to_csv(classifier, inputs, args.out, args.tta, log, progress(), scale.factor)
    if found is None:  # another rank of a torchrun job: rank 0 writes
        return 0
    entries = len(inputs) + len(passed)
    for said in heading(classifier.check(found.distance), scale, colour):
        log(f"warning: {said}")  # first: the figures below are not to be trusted then
    if scale.source != "none":
        log(f"cells framed x{scale.factor:.2f} from {scale.source} ({scale.to_dict()})")
    if len(found) and found.unsure.mean() > MOSTLY_UNSURE:
        log(
            f"warning: the model is unsure of most patches ({int(found.unsure.sum())} of "
            f"{len(found)}): they may differ from the images it learned from; review every "
            'one, or train with your own verified cells (docs/training.md, "Your own cells")'
        )
    print(
        f"{len(found)} of {entries} entries classified ({int(found.unsure.sum())} unsure, "
        f"{entries - len(found)} skipped: named above): {args.out}"
    )
    return 0


def listed(paths: list[str]) -> tuple[list[Input], list[Skipped]]:
    """The inputs of `classify` or `count`, saying which entries are passed over and why."""
    inputs, passed = list_inputs(paths)
    for entry in passed:
        log(f"skipped {entry.path}: {entry.reason}")
    return inputs, passed


def count_and_say(
    classifier: Classifier,
    inputs: list[Input],
    config: CountConfig,
    report_config: ReportConfig,
    out: Path,
    model_name: str,
    case: dict | None = None,
    colour: ColourShift | None = None,
) -> int:
    """Count the fields into OUT/report.html and say what it found; the exit code."""
    summary = count_to_report(
        classifier, inputs, config, report_config, out, model_name, log, case, colour
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
    say_flags(summary)
    return 0


def say_flags(summary: dict) -> None:
    """A report's laboratory alerts and warnings, one line each, after its headline."""
    for alert in summary["alerts"]:
        print(f"alert: {alert}")
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
