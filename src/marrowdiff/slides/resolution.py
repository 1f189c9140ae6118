"""The scale a slide is counted at: the model's microns per pixel (`train --mpp`,
`calibrate --mpp`; docs/slides.md says how the public sets' figures were estimated), reached
from the slide's own (or `--mpp`) by reading the finest level that is not finer than needed
and resizing its tiles. Checked before any work: a slide much coarser than the model is
refused, one somewhat coarser is counted with a warning."""

from __future__ import annotations

from dataclasses import dataclass

from marrowdiff.errors import UserError
from marrowdiff.slides.reader import SlideInfo

COARSER_WARN = 1.25  # slide px / model px above which the report warns
COARSER_REFUSE = 2.0  # ... above which a count is refused: cells would be blown up from blur


class ResolutionError(UserError):
    """A slide whose scale is unknown, or too coarse for the model."""


@dataclass(frozen=True)
class Working:
    """How tiles are read: from `level`, resized by `factor` (model px per level px)."""

    level: int
    downsample: float  # of that level, against level 0
    factor: float  # < 1: the level is finer than the model and is shrunk
    slide_mpp: float  # level 0's microns per pixel
    model_mpp: float
    source: str  # "slide" (the file's figure) or "--mpp"
    warning: str = ""

    @property
    def level0_per_model_px(self) -> float:
        """Level-0 px per px of the model's scale."""
        return self.model_mpp / self.slide_mpp

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "downsample": round(self.downsample, 4),
            "resize": round(self.factor, 4),
            "slide_mpp": self.slide_mpp,
            "slide_mpp_from": self.source,
            "model_mpp": self.model_mpp,
        }


def working_scale(
    info: SlideInfo, model_mpp: float | None, given_mpp: float | None = None
) -> Working:
    """The level and resize that bring `info`'s slide to `model_mpp` (`given_mpp`: the user's
    figure for level 0, over the file's). Raises ResolutionError naming the fix."""
    if model_mpp is None:
        raise ResolutionError(
            "the model does not record the microns per pixel of its training images, so a "
            "slide cannot be brought to its scale: record it with `marrowdiff calibrate RUN "
            "--mpp VALUE` (and export again); docs/slides.md gives the public sets' figures"
        )
    mpp, source = (given_mpp, "--mpp") if given_mpp else (info.mpp, "slide")
    if mpp is None:
        raise ResolutionError(
            f"{info.path}: the file does not record its microns per pixel; give it with "
            "--mpp (the scanner's figure for its scanning objective, e.g. 0.25 at 40x)"
        )
    coarser = mpp / model_mpp
    if coarser > COARSER_REFUSE:
        raise ResolutionError(
            f"{info.path}: scanned at {mpp:.3g} microns per pixel, {coarser:.1f} times coarser "
            f"than the model's {model_mpp:.3g}: its cells hold too little detail for it to "
            "tell maturation stages apart. Scan at oil immersion (about "
            f"{model_mpp:.2g} microns per pixel), or count with a model trained at this scale"
        )
    warning = ""
    if coarser > COARSER_WARN:
        warning = (
            f"the slide is scanned at {mpp:.3g} microns per pixel, {coarser:.2f} times coarser "
            f"than the model's {model_mpp:.3g}: its cells are enlarged to the model's scale and "
            "are blurrier than the cells it learned from; review the count"
        )
    needed = model_mpp / mpp  # level-0 px per model px: the coarsest downsample allowed
    level = max((i for i, d in enumerate(info.level_downsamples) if d <= needed * 1.01), default=0)
    downsample = info.level_downsamples[level]
    return Working(level, downsample, downsample / needed, mpp, model_mpp, source, warning)
