"""The differential-count report: the numbers, and the three files."""

import json

import numpy as np
import pytest

from marrowdiff.classes import load_vocabulary
from marrowdiff.report import About, Cell, FieldImage, ReportConfig, summarise, write_report

VOCAB = load_vocabulary("choi2017")


def cells_of(*spec):
    return [Cell("f.png", 10.0 * i, 20.0, label, 0.9, flag) for i, (label, flag) in enumerate(spec)]


def test_counts_percentages_lineages_and_me_ratio():
    cells = cells_of(
        ("myeloblast", ""),
        ("myeloblast", ""),
        ("segmented_neutrophil", ""),
        ("pronormoblast", ""),
        ("pronormoblast", "unsure"),
        ("band_neutrophil", "border"),
    )
    s = summarise(cells, VOCAB, ReportConfig(target=300))
    by_code = {row["code"]: row for row in s["classes"]}
    assert [row["code"] for row in s["classes"]] == list(VOCAB.codes)  # clinical order
    assert by_code["myeloblast"] == by_code["myeloblast"] | {"count": 2, "percent": 50.0}
    assert by_code["pronormoblast"]["count"] == 1  # the unsure one is not counted
    assert by_code["band_neutrophil"]["count"] == 0  # nor the border one
    assert s["n_counted"] == 4 and s["n_cells_found"] == 6
    assert s["flagged"] == {"border": 1, "unsure": 1}
    assert s["me_ratio"]["value"] == 3.0 and "flagged cells excluded" in s["me_ratio"]["definition"]
    assert {r["lineage"]: r["count"] for r in s["lineages"]} == {"erythroid": 1, "myeloid": 3}
    assert not s["target_reached"] and any("below the target of 300" in w for w in s["warnings"])
    assert any("unsure" in w for w in s["warnings"])


def test_me_ratio_classes_are_configuration_and_undefined_without_erythroid():
    cells = cells_of(("myeloblast", ""), ("segmented_neutrophil", ""))
    assert summarise(cells, VOCAB, ReportConfig())["me_ratio"]["value"] is None
    narrow = ReportConfig(myeloid=("myeloblast",), erythroid=("segmented_neutrophil",))
    assert summarise(cells, VOCAB, narrow)["me_ratio"]["value"] == 1.0
    with pytest.raises(ValueError, match="not classes of vocabulary"):
        summarise(cells, VOCAB, ReportConfig(myeloid=("blast",)))


def test_write_report_makes_json_csv_and_a_self_contained_page(tmp_path):
    rng = np.random.default_rng(0)
    cells = cells_of(("myeloblast", ""), ("pronormoblast", "unsure"))
    for c in cells:
        c.thumbnail = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
        c.proba = np.full(10, 0.1)
    field = FieldImage("f.png", 200, 300, np.zeros((100, 150, 3), np.uint8), 0.5, "too small")
    about = About(model="m.onnx", cell_radius=25.0, tta=False)
    write_report(tmp_path, cells, [field], VOCAB, list(VOCAB.codes), ReportConfig(), about)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["about"] == {"model": "m.onnx", "cell_radius": 25.0, "tta": False}
    assert report["n_counted"] == 1 and len(report["cells"]) == 2
    assert "f.png: too small" in report["warnings"]  # what detection noticed about a field
    header = (tmp_path / "cells.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["field", "x", "y", "class", "probability", "flag"]
    page = (tmp_path / "report.html").read_text()
    assert "M:E ratio" in page and "Flagged cells, not counted (1)" in page
    assert "http://" not in page and "https://" not in page  # opens offline
    assert page.count("data:image/jpeg;base64,") == 3  # two cells and one field


def test_a_platelet_is_named_but_not_counted_in_marrow14():
    from marrowdiff.classes import load_vocabulary
    from marrowdiff.report import Cell, ReportConfig, summarise

    v = load_vocabulary("marrow14")
    cells = [
        Cell("f", 0, 0, "myelocyte", 0.9),
        Cell("f", 0, 0, "eosinophil", 0.9),
        Cell("f", 0, 0, "polychromatic_normoblast", 0.9),
        Cell("f", 0, 0, "platelet", 0.9),
        Cell("f", 0, 0, "platelet", 0.9),
    ]
    summary = summarise(cells, v, ReportConfig(target=3))
    assert summary["n_counted"] == 3 and summary["not_counted"] == {"platelet": 2}
    rows = {r["code"]: r for r in summary["classes"]}
    assert "platelet" not in rows and "immature_granulocyte" not in rows  # coarse: no output
    assert rows["eosinophil"]["percent"] == pytest.approx(33.33)
    assert summary["me_ratio"]["value"] == 2.0  # myelocyte + eosinophil : one normoblast
    assert any("2 platelet(s)" in w for w in summary["warnings"])
