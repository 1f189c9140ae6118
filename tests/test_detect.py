"""Cell detection in whole fields, and the synthetic fields that check it."""

import numpy as np
import pytest

from marrowdiff.boxes import TrueCell, match, score_detection
from marrowdiff.detect import DetectConfig, crop, detect, size_warning
from marrowdiff.smear import FieldConfig, make_field
from marrowdiff.synthetic import synthetic_cell

SMALL_FIELD = FieldConfig(height=540, width=660, cells=6, red_cells=40)


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(0)
    return [
        synthetic_cell(rng, 144, radius=rng.uniform(38, 50), hue=rng.uniform(-1, 1))
        for _ in range(20)
    ]


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


def test_the_field_generator_places_touching_and_border_cells(patches):
    config = FieldConfig(height=540, width=660, cells=8, touching=1.0, border_cells=1)
    field, truth = make_field(patches, [str(i) for i in range(20)], config, seed=3)
    assert field.shape == (540, 660, 3) and field.dtype == np.uint8
    assert truth[0].border and not any(c.border for c in truth[1:])
    radius = config.disc * config.patch_size
    xy = np.array([[c.y, c.x] for c in truth])
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))[np.triu_indices(len(xy), 1)]
    assert gaps.min() >= 1.6 * radius - 1e-6  # close, never on top of each other
    assert (gaps < 1.85 * radius).any()  # some touch


def test_a_cell_cut_by_the_border_is_marked(patches):
    field, truth = make_field(patches, ["x"] * 20, SMALL_FIELD, seed=1)
    found = detect(field, DetectConfig(cell_diameter=90))
    on_border = [c for c in truth if c.border]
    near = [d for d in found if min(np.hypot(d.y - c.y, d.x - c.x) for c in on_border) < 60]
    assert near and all(d.border for d in near)


def test_an_empty_smear_has_no_cells():
    rng = np.random.default_rng(0)
    from marrowdiff.smear import smear_background

    background = smear_background(rng, 400, 500, red_cells=60, radius=55).astype(np.uint8)
    assert detect(background, DetectConfig(cell_diameter=90)) == []
    assert detect(np.full((300, 300, 3), 240, np.uint8)) == []


def test_crop_is_centred_and_reflect_padded_at_the_border():
    image = np.arange(20 * 30 * 3, dtype=np.int64).reshape(20, 30, 3).astype(np.uint8)
    inner = crop(image, 10, 15, 8)
    assert inner.shape == (8, 8, 3) and (inner == image[6:14, 11:19]).all()
    assert crop(image, 0, 0, 12).shape == (12, 12, 3)


def test_scoring_leaves_border_cells_out_on_both_sides():
    truth = [
        TrueCell(50, 50, "a", False),
        TrueCell(5, 100, "a", True),
        TrueCell(80, 200, "a", False),
    ]
    found = np.array([[52, 49], [7, 101], [300, 300]])
    score = score_detection(found, np.array([False, True, False]), truth)
    assert score == {"tp": 1, "fp": 1, "fn": 1}
    fi, tj = match(found, np.array([[c.y, c.x] for c in truth]), tolerance=12)
    assert sorted(zip(fi.tolist(), tj.tolist(), strict=True)) == [(0, 0), (1, 1)]


def test_public_field_boxes_are_read_and_scored(patches, tmp_path):
    from marrowdiff.boxes import evaluate_on_boxes, read_boxes

    from .conftest import write_image

    field, truth = make_field(patches, ["x"] * 20, SMALL_FIELD, seed=2)
    write_image(tmp_path / "images" / "f1.png", field)
    r = SMALL_FIELD.disc * SMALL_FIELD.patch_size * 0.8
    objects = (
        "".join(
            f"<object><name>WBC</name><bndbox><xmin>{c.x - r:.0f}</xmin><ymin>{c.y - r:.0f}</ymin>"
            f"<xmax>{c.x + r:.0f}</xmax><ymax>{c.y + r:.0f}</ymax></bndbox></object>"
            for c in truth
        )
        + "<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>5</ymin>"
        + "<xmax>9</xmax><ymax>20</ymax></bndbox></object>"
    )
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "f1.xml").write_text(
        f"<annotation><filename>f1.png</filename><size><width>{SMALL_FIELD.width}</width>"
        f"<height>{SMALL_FIELD.height}</height></size>{objects}</annotation>"
    )
    boxes = read_boxes(tmp_path / "voc", {"WBC"})
    assert len(boxes["f1.png"]) == len(truth)
    for got, want in zip(boxes["f1.png"], truth, strict=True):
        assert abs(got.x - want.x) <= 1 and abs(got.y - want.y) <= 1
    assert [c.border for c in boxes["f1.png"]] == [c.border for c in truth]
    result = evaluate_on_boxes(tmp_path / "images", boxes, DetectConfig(cell_diameter=90))
    assert result["fields"] == 1 and result["precision"] >= 0.8 and result["recall"] >= 0.8

    (tmp_path / "boxes.csv").write_text("image,xmin,ymin,xmax,ymax,label\nf1.png,10,20,50,60,WBC\n")
    assert read_boxes(tmp_path / "boxes.csv")["f1.png"][0].x == 30
    (tmp_path / "bad.csv").write_text("file,x\n")
    with pytest.raises(ValueError, match="needs the columns"):
        read_boxes(tmp_path / "bad.csv")
