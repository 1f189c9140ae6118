"""What a detected object of a labelled field is, by where it lies and what it holds (pure).

A field of a centred-cell data set (PBC: one labelled white cell at the centre of a real
360 x 363 field) has one labelled cell; every other object the detector finds in it is, nearly
always, not a nucleated cell. Each is sorted by rules a person can check on a contact sheet
(`bench/mine_sheet.py`; the error rate is in docs/BENCHMARKS.md):

- the labelled cell: the detection nearest the field's centre, within `centre` diameters;
- small (under `small` of a cell's area): a platelet;
- little nuclear stain at its centre (under `nuclear` of the disc of a quarter diameter above
  `dense` haematoxylin density): a red cell or an overlap of red cells;
- nuclear stain: perhaps a second white cell, or most of the labelled one seen off-centre;
  left out of the mined data (`SKIP`), never taught as a non-cell.
Objects cut by the field border are left out: `count` never counts them.

Parts of a cell are not mined: of 60 objects within 0.9 diameters of the labelled cell, drawn
at random, about 55 showed a whole or nearly whole white cell (docs/BENCHMARKS.md, "Mined
objects"); the detector joins the pieces of one cell instead (`DetectConfig.merge`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from marrowdiff.counting.detect import Detection
from marrowdiff.stain import haematoxylin

LABELLED = "labelled"  # the field's own labelled cell: not mined
SKIP = "skip"  # perhaps a nucleated cell, or cut by the border: not mined
OUTCOMES = ("platelet", "red_cell")  # what mined objects are labelled


@dataclass(frozen=True)
class SortConfig:
    centre: float = 0.6  # the labelled cell lies within this many diameters of the centre
    small: float = 0.3  # an object under this fraction of a cell's area is a platelet
    nuclear: float = 0.15  # share of its central disc that holds nuclear stain, below: red
    dense: float = 0.06  # haematoxylin density of nuclear stain (`stain.haematoxylin`)

    def to_dict(self) -> dict:
        return asdict(self)


def nuclear_share(patch: np.ndarray, diameter: float, dense: float) -> float:
    """The share of the disc of a quarter `diameter` around a patch's centre whose
    haematoxylin density is above `dense`: high on a nucleus, near 0 on a red cell."""
    h = haematoxylin(patch)
    yy, xx = np.ogrid[: h.shape[0], : h.shape[1]]
    cy, cx = (h.shape[0] - 1) / 2, (h.shape[1] - 1) / 2
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 4) ** 2
    return float((h[disc] > dense).mean())


def sort_objects(
    shape: tuple[int, int],
    found: list[Detection],
    shares: list[float],
    diameter: float,
    config: SortConfig = SortConfig(),
    centred: bool = True,
) -> list[str]:
    """The outcome of each detection of a field of `shape` (H, W) whose labelled cell is at
    its centre: LABELLED, one of OUTCOMES, or SKIP; `shares`: each one's `nuclear_share`.
    `centred` False: the field's labelled object is not a nucleated cell (a platelet image),
    so every object is sorted by the same rules and none is LABELLED."""
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    cell_area = np.pi * (diameter / 2) ** 2
    whole = [i for i, d in enumerate(found) if not d.border]
    labelled = min(whole, key=lambda i: np.hypot(found[i].y - cy, found[i].x - cx), default=None)
    if not centred:
        labelled = None
    elif labelled is not None and np.hypot(found[labelled].y - cy, found[labelled].x - cx) > (
        config.centre * diameter
    ):
        labelled = None  # the labelled cell was not found: its parts cannot be told
    outcomes = []
    for i, d in enumerate(found):
        if i == labelled:
            outcomes.append(LABELLED)
        elif d.border:
            outcomes.append(SKIP)
        elif d.area < config.small * cell_area:
            outcomes.append("platelet")
        elif shares[i] < config.nuclear:
            outcomes.append("red_cell")
        else:
            outcomes.append(SKIP)
    return outcomes
