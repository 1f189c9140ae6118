"""`marrowdiff count`: fields and whole slides into differential reports. Fields are counted
as `counting` counts them; each slide (recognised by opening it) gets its own report."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from marrowdiff.arguments import log, model_args, progress
from marrowdiff.counting.commands import (
    CASE_OPTIONS,
    count_and_say,
    count_args,
    count_configs,
    listed,
    say_flags,
    scale_args,
)
from marrowdiff.counting.count import NothingRead
from marrowdiff.counting.report import check_config
from marrowdiff.counting.scale import choose_scale, colours, field_sample
from marrowdiff.data.sources import SLIDE_SUFFIXES, Input
from marrowdiff.errors import UserError
from marrowdiff.inference.predict import load_classifier
from marrowdiff.slides.count import SlideCountConfig
from marrowdiff.slides.job import count_slide
from marrowdiff.slides.reader import slide_format


def register(sub) -> None:
    p = sub.add_parser(
        "count",
        help="find and classify the cells of fields or whole slides; write the report",
        description="Fields (images) are counted whole. A whole-slide file (SVS, NDPI, MIRAX, "
        "SCN, Philips TIFF, generic pyramidal TIFF, DICOM...) is mapped, and its best "
        "countable tiles are counted until --cells cells are in the differential "
        "(docs/slides.md).",
    )
    model_args(p)
    p.add_argument("inputs", nargs="+", help="field images or slide files, folders or zips")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    count_args(p)
    scale_args(p)
    slide_args(p)
    for name, text in CASE_OPTIONS.items():
        p.add_argument(f"--{name}", help=f"{text} (default: none)")
    p.set_defaults(run=cmd_count)


def slide_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("whole slides")
    g.add_argument(
        "--cells",
        default="500",
        help="cells a slide's differential counts, best tiles first (default 500, as a manual "
        "differential); 'all': every cell of the countable area",
    )
    g.add_argument(
        "--region",
        metavar="X,Y,W,H",
        help="count every tile of this area (level-0 px) instead of choosing tiles",
    )
    g.add_argument(
        "--tile",
        type=int,
        default=SlideCountConfig.tile,
        help="side of a counting tile, px at the model's scale (default %(default)s); the map "
        "counts a tile only when nearly all of it is countable",
    )
    g.add_argument(
        "--with-label",
        action="store_true",
        help="copy the slide's label image into the report (left out by default: it can carry "
        "a patient's name)",
    )


def slide_config(args, count) -> SlideCountConfig:
    cells = args.cells.strip().lower()
    if cells != "all" and not (cells.isdigit() and int(cells) > 0):
        raise UserError(f"--cells {args.cells!r}: a number of cells above 0, or 'all'")
    if args.tile < 2 * count.detect.patch_size:
        raise UserError(f"--tile {args.tile}: at least {2 * count.detect.patch_size} px")
    return SlideCountConfig(
        count=count,
        cells=None if cells == "all" else int(cells),
        region=args.region,
        mpp=args.mpp,
        with_label=args.with_label,
        tile=args.tile,
    )


def partition(inputs: list[Input]) -> tuple[list[Input], list[Input]]:
    """(fields, slides): a file OpenSlide opens is a slide, whatever its name; a file named
    as a scanner's that it does not open is a slide too, so that its error is said. Only a
    file that could be one (a TIFF or DICOM by its first bytes, or a scanner's name) is shown
    to OpenSlide: counting PNG or JPEG fields never loads it (about 50 MB)."""
    fields, slides = [], []
    for item in inputs:
        named = item.path.suffix.lower() in SLIDE_SUFFIXES
        if item.member is None and (named or (_could_be_slide(item) and slide_format(item.path))):
            slides.append(item)
        else:
            fields.append(item)
    return fields, slides


def _could_be_slide(item: Input) -> bool:
    """A TIFF (classic or BigTIFF, either byte order) or a DICOM file, by its first bytes."""
    try:
        with open(item.path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False  # reading it as a field says why
    return head[:4] in TIFF_MAGIC or head[128:132] == b"DICM"


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def cmd_count(args) -> int:
    inputs, _ = listed(args.inputs)
    fields, slides = partition(inputs)
    # Beside a slide's tile readers, ONNX Runtime's idle threads sleep rather than spin
    classifier = load_classifier(args.model.split(","), args.device, args.normalise_stain,
                                 spin=not slides)  # fmt: skip
    config, report_config = count_configs(args)
    check_config(classifier.vocabulary, report_config)  # a wrong --myeloid: before any work
    case = {k: getattr(args, k) for k in CASE_OPTIONS if getattr(args, k)}
    if slides:
        if args.rescale != "none":
            raise UserError("--rescale: slides are brought to the model's scale by their "
                            "microns per pixel; give --mpp if the file lacks it")  # fmt: skip
        sconfig = slide_config(args, config)
        counted = count_slides(classifier, slides, sconfig, report_config, args, case,
                               args.out / "fields" if fields else args.out)  # fmt: skip
        if not fields:
            return 0 if counted else 2
    elif args.region or args.cells != "500" or args.with_label:
        log("note: --cells, --region and --with-label apply to whole slides; none was given")
    sample = field_sample(fields, config.detect)
    config = replace(config, scale=choose_scale(classifier, sample, args.rescale, args.mpp))
    colour = colours(classifier, sample)
    out = args.out / "fields" if slides else args.out
    return count_and_say(classifier, fields, config, report_config, out, args.model, case,
                         colour)  # fmt: skip


def count_slides(classifier, slides, config, report_config, args, case, out) -> int:
    """Count each slide into its own folder (OUT itself for one slide alone); a slide that
    cannot be read is named with why and skipped. Returns how many were counted."""
    counted = 0
    for item, name in zip(slides, report_names(slides), strict=True):
        where = args.out if len(slides) == 1 else args.out / name
        try:
            summary = count_slide(classifier, item.path, config, report_config, where,
                                  args.model, log, progress(), case)  # fmt: skip
        except UserError as exc:
            log(f"skipped {item.name}: {exc}")
            continue
        counted += 1
        if summary is not None:
            say(summary, where)
    if not counted:
        raise NothingRead(f"{out}: no slide could be counted (each is named above with why)")
    return counted


def report_names(slides: list[Input]) -> list[str]:
    """A report folder's name for each slide: its file name's stem, numbered when two slides
    share one (a/x.svs and b/x.svs: x, x-2)."""
    seen: dict[str, int] = {}
    names = []
    for item in slides:
        stem = Path(item.name).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def say(summary: dict, where: Path) -> None:
    guess, slide = summary["estimate"], summary["slide"]
    me = guess["me_ratio"]
    print(
        f"{slide['file']}: {summary['n_cells_found']} cells found in "
        f"{slide['tiles']['counted']} tile(s); estimate of {guess['n_cells']} cells, M:E "
        f"{'n/a' if me is None else f'{me:.2f}'} (pre-classified, not verified): "
        f"{where / 'report.html'}"
    )
    say_flags(summary)
