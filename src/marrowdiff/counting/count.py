"""Images in, cells out: classify single-cell patches, or find, crop and classify the cells of
whole microscope fields (`report.Cell`s); `classify_to_csv` and `count_to_report` are the
`classify` and `count` commands, their inputs shared among the processes of a torchrun job."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from marrowdiff.cellsize import Scale, reframed
from marrowdiff.counting.detect import DetectConfig, crop, detect, size_warning
from marrowdiff.counting.report import About, Cell, FieldImage, ReportConfig
from marrowdiff.counting.report_files import write_patch_csv, write_report
from marrowdiff.counting.scale import heading
from marrowdiff.data.sources import Input, read_inputs
from marrowdiff.distributed.shards import on_every_rank
from marrowdiff.errors import UserError
from marrowdiff.inference.predict import Classifier
from marrowdiff.stain import ColourShift

THUMBNAIL = 80  # px, gallery crops
PREVIEW_WIDTH = 1000  # px, field previews in the report


@dataclass(frozen=True)
class CountConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    tta: bool = False  # average over the 8 rotations/flips
    include_border: bool = False  # count cells cut by the field border (a hematologist doesn't)
    scale: Scale = field(default_factory=Scale)  # cells are cropped at patch_size / factor

    @property
    def crop_side(self) -> int:
        """Field px cropped around each cell: the patch size, rescaled."""
        return max(8, round(self.detect.patch_size / self.scale.factor))


def thumbnail(patch: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(patch).resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR))


def classify_images(
    classifier: Classifier,
    named: list[tuple[str, np.ndarray]],
    tta: bool = False,
    thumbnails: bool = True,
) -> list[Cell]:
    """One Cell per (name, single-cell patch), x and y at the patch centre."""
    proba, unsure, distance = classifier.classify([image for _, image in named], tta)
    cells = []
    for (name, image), p, k, u, d in zip(
        named, proba, classifier.top(proba), unsure, distance, strict=True
    ):
        h, w = image.shape[:2]
        cells.append(
            Cell(
                name,
                w / 2,
                h / 2,
                classifier.classes[k],
                float(p[k]),
                "unsure" if u else "",
                p,
                thumbnail(image) if thumbnails else None,
                distance=float(d),
            )  # fmt: skip
        )
    return cells


class NothingRead(UserError):
    """No input of a count or classify could be read: nothing is written, rather than an empty
    report that looks like a result."""


def _why(inputs: list[Input]) -> str:
    if not inputs:
        return "no image among the inputs"
    return f"none of the {len(inputs)} inputs was readable; each is named above with why"


def classify_patches(
    classifier: Classifier,
    inputs: list[Input],
    tta: bool = False,
    batch: int = 256,
    log=print,
    thumbnails: bool = True,
    progress: bool = False,
    factor: float = 1.0,
) -> list[Cell]:
    """One Cell per readable single-cell patch, classified `batch` at a time, each framed so
    that its cell looks `factor` times as large (`cellsize.reframed`)."""
    found = _classified_batches(classifier, inputs, tta, batch, log, thumbnails, progress, factor)
    return [cell for cells in found for cell in cells]


def _classified_batches(classifier, inputs, tta, batch, log, thumbnails, progress, factor=1.0):
    """The Cells of each `batch` of readable patches, in input order."""
    pending: list[tuple[str, np.ndarray]] = []
    for item, image in read_inputs(inputs, log, progress):
        pending.append((item.name, reframed(image, factor)))
        if len(pending) >= batch:
            yield classify_images(classifier, pending, tta, thumbnails)
            pending = []
    if pending:
        yield classify_images(classifier, pending, tta, thumbnails)


@dataclass
class Classified:
    """Classified patches, compactly (about 130 bytes and a name each, not a Cell): what a
    process of `classify` keeps, so that memory grows little with the number of patches."""

    names: list[str]
    proba: np.ndarray  # (N, C) float64, calibrated, in the model's class order
    unsure: np.ndarray  # (N,) bool
    distance: np.ndarray  # (N,) float64 from the training cells (NaN: not known)

    @classmethod
    def of(cls, batches, n_classes: int) -> Classified:
        names, proba, unsure, distance = [], [], [], []
        for cells in batches:
            names += [c.field for c in cells]
            proba.append(np.array([c.proba for c in cells], np.float64).reshape(-1, n_classes))
            unsure.append(np.array([c.flag == "unsure" for c in cells], bool))
            distance.append(np.array([c.distance for c in cells], np.float64))
        return cls(
            names,
            np.concatenate(proba) if proba else np.zeros((0, n_classes)),
            np.concatenate(unsure) if unsure else np.zeros(0, bool),
            np.concatenate(distance) if distance else np.zeros(0),
        )

    def __len__(self) -> int:
        return len(self.names)


def field_preview(name: str, image: np.ndarray, warning: str = "") -> FieldImage:
    """The field downscaled to at most PREVIEW_WIDTH px wide, for the report, with what
    detection noticed about it (`detect.size_warning`)."""
    h, w = image.shape[:2]
    scale = min(1.0, PREVIEW_WIDTH / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    preview = np.asarray(Image.fromarray(image).resize(size))
    return FieldImage(name, h, w, preview, scale, warning)


def count_field(
    classifier: Classifier, name: str, image: np.ndarray, config: CountConfig
) -> tuple[list[Cell], FieldImage]:
    """Detect, crop and classify the nucleated cells of one field."""
    found = detect(image, config.detect)
    patches = [crop(image, d.y, d.x, config.crop_side) for d in found]
    proba, unsure, distance = classifier.classify(patches, config.tta)
    top = classifier.top(proba)
    cells = []
    for d, patch, p, k, u, far in zip(found, patches, proba, top, unsure, distance, strict=True):
        flag = "border" if d.border and not config.include_border else "unsure" if u else ""
        label, sure = classifier.classes[k], float(p[k])
        cells.append(Cell(name, d.x, d.y, label, sure, flag, p, thumbnail(patch), False, far))
    return cells, field_preview(name, image, size_warning(found, config.detect))


def count_fields(
    classifier: Classifier, inputs: list[Input], config: CountConfig, log=print
) -> tuple[list[Cell], list[FieldImage]]:
    cells: list[Cell] = []
    fields: list[FieldImage] = []
    for item, image in read_inputs(inputs, log):
        found, preview = count_field(classifier, item.name, image, config)
        cells += found
        fields.append(preview)
        log(f"{item.name}: {len(found)} cells ({sum(not c.flag for c in found)} sure)")
        if preview.warning:
            log(f"warning: {item.name}: {preview.warning}")
    return cells, fields


def _in_input_order(parts: list[list], inputs: list[Input], name) -> list:
    """The items of every rank's part, in the order of the inputs they came from (stable)."""
    order = {item.name: i for i, item in enumerate(inputs)}
    return sorted((x for part in parts for x in part), key=lambda x: order[name(x)])


def classify_to_csv(
    classifier: Classifier,
    inputs: list[Input],
    out: Path,
    tta: bool = False,
    log=print,
    progress: bool = False,
    factor: float = 1.0,
) -> Classified | None:
    """Classify single-cell patches into a CSV (path, class, probability, flag, p_<class>...),
    written row by row; returns what was classified (None on a torchrun rank other than 0,
    which writes nothing)."""
    classes = classifier.classes

    def work(mine: list[Input]) -> Classified:
        batches = _classified_batches(classifier, mine, tta, 256, log, False, progress, factor)
        return Classified.of(batches, len(classes))

    parts = on_every_rank(work, inputs)
    if parts is None:
        return None
    if not any(part.names for part in parts):
        raise NothingRead(f"{out}: no patch could be read ({_why(inputs)}): nothing was written")
    order = {item.name: i for i, item in enumerate(inputs)}
    names = [name for part in parts for name in part.names]
    rank = np.argsort([order[name] for name in names], kind="stable")  # back to input order
    found = Classified(
        [names[i] for i in rank],
        np.concatenate([part.proba for part in parts])[rank],
        np.concatenate([part.unsure for part in parts])[rank],
        np.concatenate([part.distance for part in parts])[rank],
    )
    write_patch_csv(out, found, classes, classifier.top(found.proba))
    return found


def count_to_report(
    classifier: Classifier,
    inputs: list[Input],
    config: CountConfig,
    report: ReportConfig,
    out: Path,
    model_name: str,
    log=print,
    case: dict | None = None,
    colour: ColourShift | None = None,
) -> dict | None:
    """Count the cells of fields and write one report (report.html/.json, cells.csv) into
    `out`; returns its summary (None on a torchrun rank other than 0, which writes nothing).
    `case`: the particulars the report heads with (`About.CASE_FIELDS`); `colour`: the cells'
    colours against the training cells' (`scale.colours`)."""
    parts = on_every_rank(lambda mine: count_fields(classifier, mine, config, log), inputs)
    if parts is None:
        return None
    if not any(fields for _, fields in parts):
        raise NothingRead(f"{out}: no field could be read ({_why(inputs)}): no report was written")
    cells = _in_input_order([cells for cells, _ in parts], inputs, lambda c: c.field)
    fields = _in_input_order([fields for _, fields in parts], inputs, lambda f: f.name)
    about = About(
        model=model_name,
        cell_radius=config.detect.cell_radius,
        tta=config.tta,
        calibration=classifier.calibration(config.tta).to_dict(),
        detect=config.detect.to_dict(),
        model_sha256=classifier.checksum or None,
        stain_normalisation=None if classifier.stain_method == "none" else classifier.stain_method,
        scale=config.scale.to_dict() if classifier.global_.size else None,
        colour=None if colour is None else colour.to_dict(),
        **(case or {}),
    )
    domain = classifier.check(np.array([c.distance for c in cells]))
    return write_report(
        out,
        cells,
        fields,
        classifier.vocabulary,
        classifier.classes,
        report,
        about,
        domain,
        heading(domain, config.scale, colour),
    )
