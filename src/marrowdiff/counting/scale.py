"""How a count or classify reads its cells, against the model's training cells, from a sample
of them: their scale (`cellsize.Scale`), corrected when asked (`--rescale auto`, or `--mpp`
with a model that records its own microns per pixel), and their colours
(`stain.ColourShift`), which the domain check's warning quotes."""

from __future__ import annotations

import numpy as np

from marrowdiff.cellsize import Scale, median_diameter, rescale_factor, spread
from marrowdiff.counting.detect import DetectConfig, crop, detect
from marrowdiff.data.sources import Input, read_inputs
from marrowdiff.domain import DomainCheck
from marrowdiff.errors import UserError
from marrowdiff.inference.predict import Classifier
from marrowdiff.preprocess import centre_views, square
from marrowdiff.stain import ColourShift, colour_shift

RESCALE = ("none", "auto")


class ScaleError(UserError, ValueError):
    """A scale that cannot be set as asked."""


def choose_scale(
    classifier: Classifier,
    cells: list[np.ndarray],
    rescale: str = "none",
    mpp: float | None = None,
) -> Scale:
    """The scale to read cells at, from a sample of them (single-cell patches, or crops around
    detected cells at the model's patch size; `patch_sample`, `field_sample`): always
    measured, corrected by `rescale` ("auto": to the training cells' median size) or by `mpp`
    (this input's microns per pixel, against the model's)."""
    reference = classifier.global_.size
    if mpp is not None and rescale != "none":
        raise ScaleError("give --mpp or --rescale auto, not both")
    if mpp is not None and (reference is None or reference.mpp is None):
        raise ScaleError(
            f"--mpp {mpp}: the model does not record the microns per pixel of its training "
            "images, so there is nothing to resize to; use --rescale auto, or record it with "
            "`marrowdiff calibrate RUN --mpp VALUE`"
        )
    if rescale not in RESCALE:
        raise ScaleError(f"--rescale {rescale!r}: one of {', '.join(RESCALE)}")
    if reference is None:
        if rescale == "auto":
            raise ScaleError(
                "--rescale auto: the model holds no size of its training cells; run "
                "`marrowdiff calibrate` on its run folder (and export it again)"
            )
        return Scale()
    measured = median_diameter([square(cell, classifier.geometry) for cell in cells])
    given = None if not np.isfinite(measured) else measured
    if mpp is not None:
        factor, source = mpp / reference.mpp, "mpp"
    elif rescale == "auto" and given is not None:
        factor, source = rescale_factor(measured, reference), "cell size"
    else:
        factor, source = 1.0, "none"
    return Scale(factor, source, given, reference.diameter)


def colours(classifier: Classifier, cells: list[np.ndarray]) -> ColourShift | None:
    """The sample's colours against the training cells' (None: the model keeps no colours)."""
    reference = classifier.global_.stain
    if reference is None:
        return None
    return colour_shift(centre_views(cells, classifier.geometry), reference)


def heading(
    domain: DomainCheck, scale: Scale | None = None, colour: ColourShift | None = None
) -> list[str]:
    """The warnings a report and `classify` head with, in order: the domain check's (quoting
    the cells' measured colour and size, to say what differs), then the scale check's."""
    scale = scale or Scale()
    figures = [] if colour is None else [colour.phrase()]
    if scale.ratio is not None:
        figures.append(f"cell size: {scale.ratio:.2f} times the training cells'")
    return [w for w in (domain.sentence("; ".join(figures)), scale.warning()) if w]


def patch_sample(inputs: list[Input]) -> list[np.ndarray]:
    """`SAMPLE` readable single-cell patches spread evenly over the inputs (a folder sorted by
    class gives every class), unreadable ones skipped quietly here: classifying says why."""
    return [image for _, image in read_inputs(spread(inputs), log=lambda message: None)]


FIELDS = 5  # fields, at most, a count's scale is measured on (each is detected twice)


def field_sample(inputs: list[Input], detect_config: DetectConfig) -> list[np.ndarray]:
    """Crops at the model's patch size around the cells of `FIELDS` fields spread over the
    inputs, at most `cellsize.SAMPLE` of them."""
    found: list[np.ndarray] = []
    for _, image in read_inputs(spread(inputs, FIELDS), log=lambda message: None):
        found += [
            crop(image, d.y, d.x, detect_config.patch_size) for d in detect(image, detect_config)
        ]
    return spread(found)
