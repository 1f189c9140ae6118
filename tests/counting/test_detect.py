"""Cell detection in whole fields, and the synthetic fields that check it."""

import numpy as np

from marrowdiff.counting.detect import DetectConfig, crop, detect, size_warning
from marrowdiff.evaluation.detection import score_detection
from marrowdiff.synthetic.fields import make_field

from ..conftest import SMALL_FIELD


def test_finds_the_cells_of_synthetic_fields_touching_ones_included(patches):
    totals = {"tp": 0, "fp": 0, "fn": 0}
    for seed in range(4):
        field, truth = make_field(patches, ["x"] * len(patches), SMALL_FIELD, seed=seed)
        found = detect(field, DetectConfig(cell_diameter=90))
        score = score_detection(
            np.array([[d.y, d.x] for d in found]), np.array([d.border for d in found]), truth
        )
        for key in totals:
            totals[key] += score[key]
    assert totals["tp"] >= 18
    assert totals["fp"] <= 1 and totals["fn"] <= 1


def test_a_field_at_another_magnification_is_told_apart(patches):
    field, _ = make_field(patches, ["x"] * len(patches), SMALL_FIELD, seed=0)
    assert size_warning(detect(field, DetectConfig(cell_diameter=90)), DetectConfig(90)) == ""
    for wrong in (50.0, 180.0):  # set for x500 or x2000 fields
        config = DetectConfig(cell_diameter=wrong)
        warning = size_warning(detect(field, config), config)
        assert f"set for cells of {wrong:.0f} px" in warning and "--cell-diameter" in warning


def test_a_cell_cut_by_the_border_is_marked(patches):
    field, truth = make_field(patches, ["x"] * 20, SMALL_FIELD, seed=1)
    found = detect(field, DetectConfig(cell_diameter=90))
    on_border = [c for c in truth if c.border]
    near = [d for d in found if min(np.hypot(d.y - c.y, d.x - c.x) for c in on_border) < 60]
    assert near and all(d.border for d in near)


def test_an_empty_smear_has_no_cells():
    rng = np.random.default_rng(0)
    from marrowdiff.synthetic.fields import smear_background

    background = smear_background(rng, 400, 500, red_cells=60, radius=55).astype(np.uint8)
    assert detect(background, DetectConfig(cell_diameter=90)) == []
    assert detect(np.full((300, 300, 3), 240, np.uint8)) == []


def test_crop_is_centred_and_reflect_padded_at_the_border():
    image = np.arange(20 * 30 * 3, dtype=np.int64).reshape(20, 30, 3).astype(np.uint8)
    inner = crop(image, 10, 15, 8)
    assert inner.shape == (8, 8, 3) and (inner == image[6:14, 11:19]).all()
    assert crop(image, 0, 0, 12).shape == (12, 12, 3)


def test_pieces_of_one_cell_are_joined_and_neighbours_are_not():
    from marrowdiff.counting.detect import Detection, merged

    pieces = [
        Detection(100.0, 100.0, 3000.0, False),  # two lobes 40 px apart: one cell
        Detection(100.0, 140.0, 1000.0, True),
        Detection(100.0, 240.0, 4000.0, False),  # a neighbour 100+ px away: its own cell
    ]
    joined = merged(pieces, 70.0)
    assert len(joined) == 2
    cell = min(joined, key=lambda d: d.x)
    assert cell.x == 110.0 and cell.y == 100.0  # area-weighted: (100*3000 + 140*1000) / 4000
    assert cell.area == 4000.0 and cell.border  # a piece on the border: the cell is
    assert merged(pieces, 0.0) == pieces  # switched off
    chain = [Detection(0.0, 60.0 * i, 100.0, False) for i in range(3)]  # joined transitively
    assert len(merged(chain, 70.0)) == 1
