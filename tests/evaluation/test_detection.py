"""Detection ground truth: annotated boxes, and scoring against them."""

import numpy as np
import pytest

from marrowdiff.counting.detect import DetectConfig
from marrowdiff.evaluation.detection import (
    TrueCell,
    evaluate_on_boxes,
    match,
    read_boxes,
    score_detection,
)
from marrowdiff.synthetic.fields import make_field

from ..conftest import SMALL_FIELD


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

    from ..conftest import write_image

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
