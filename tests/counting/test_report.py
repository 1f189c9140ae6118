"""The differential-count report: the numbers, and the three files."""

import json

import numpy as np
import pytest

from marrowdiff.classes import load_vocabulary
from marrowdiff.counting.report import (
    About,
    Cell,
    FieldImage,
    ReportConfig,
    summarise,
)
from marrowdiff.counting.report_files import write_report

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
    assert "band neutrophil" in s["me_ratio"]["definition"]  # names, not codes
    assert "band_neutrophil" not in s["me_ratio"]["definition"]
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
    assert report["about"] == {"model": "m.onnx", "cell_radius": 25.0, "tta": False,
                               "version": "0.1.0"}  # fmt: skip
    assert report["n_counted"] == 1 and len(report["cells"]) == 2
    assert "f.png: too small" in report["warnings"]  # what detection noticed about a field
    header = (tmp_path / "cells.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["field", "x", "y", "class", "probability", "flag"]
    page = (tmp_path / "report.html").read_text()
    assert "M:E ratio" in page and "Flagged cells, not counted (1)" in page
    assert "Pre-classified by the model, not verified by a person" in page
    assert "Differential: estimate of 2.0 cells (target 500)" in page and "95% interval (%)" in page
    assert report["estimate"]["classes"][0]["code"] == "pronormoblast"
    assert "http://" not in page and "https://" not in page  # opens offline
    assert page.count("data:image/jpeg;base64,") == 3  # two cells and one field


def test_a_platelet_is_named_but_not_counted_in_marrow14():
    from marrowdiff.classes import load_vocabulary
    from marrowdiff.counting.report import Cell, ReportConfig, summarise

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
    assert any("2 object(s) set aside" in w and "2 platelet" in w for w in summary["warnings"])


def test_the_estimate_counts_unsure_cells_by_their_class_and_leaves_out_border_ones():
    v = load_vocabulary("marrow14")
    cells = [
        Cell("f", 0, 0, "myeloblast", 0.95),
        Cell("f", 0, 0, "myeloblast", 0.95),
        Cell("f", 0, 0, "pronormoblast", 0.5, "unsure"),
        Cell("f", 0, 0, "pronormoblast", 0.6, "unsure"),
        Cell("f", 0, 0, "band_neutrophil", 0.9, "border"),
        Cell("f", 0, 0, "myelocyte", 0.3, "not a cell"),
        Cell("f", 0, 0, "myelocyte", 0.2, "", verified=True),
        Cell("f", 0, 0, "platelet", 0.9, "unsure"),  # named, counted as no cell
    ]
    s = summarise(cells, v, ReportConfig())
    rows = {r["code"]: r for r in s["estimate"]["classes"]}
    assert s["estimate"]["n_cells"] == 5.0 and s["estimate"]["n_verified"] == 1
    assert [rows[c]["expected"] for c in ("myeloblast", "pronormoblast", "myelocyte")] == [2, 2, 1]
    assert rows["band_neutrophil"]["expected"] == 0.0  # cut by the border
    assert rows["myeloblast"]["percent"] == 40.0
    assert rows["myeloblast"]["low"] < 40.0 < rows["myeloblast"]["high"]
    assert s["estimate"]["me_ratio"] == pytest.approx(1.5)  # 2 MBL + 1 MYE : 2 PRN
    assert {r["code"]: r["count"] for r in s["classes"]}["pronormoblast"] == 0  # sure only


def test_the_interval_widens_with_the_model_error_only_for_cells_not_verified():
    cells = cells_of(*[("myeloblast", "")] * 6 + [("pronormoblast", "")] * 4)
    plain = summarise(cells, VOCAB, ReportConfig())["estimate"]["classes"][0]
    wide = summarise(cells, VOCAB, ReportConfig(), interval_scale=2.0)["estimate"]["classes"][0]
    assert wide["high"] - wide["low"] > 1.4 * (plain["high"] - plain["low"])
    for c in cells:
        c.verified = True
    checked = summarise(cells, VOCAB, ReportConfig(), interval_scale=2.0)["estimate"]
    assert checked["classes"][0] == plain  # every cell verified: the sampling interval


def test_a_laboratory_alert_is_raised_on_the_estimate_and_a_wrong_one_is_refused():
    from marrowdiff.classes import VocabularyError
    from marrowdiff.counting.report import check_config

    cells = cells_of(("myeloblast", ""), ("myeloblast", ""), ("pronormoblast", ""))
    config = ReportConfig(alerts=("myeloblast>50", "PMY > 10", "pronormoblast<20", "PRN<40"))
    s = summarise(cells, VOCAB, config)
    assert s["alerts"] == [
        "Myeloblast > 50%: estimated 66.7%",
        "Pronormoblast < 40%: estimated 33.3%",
    ]
    for bad, says in (("blast>5", "not a counted class"), ("myeloblast=5", "CLASS>PERCENT")):
        with pytest.raises(VocabularyError, match=says):
            check_config(VOCAB, ReportConfig(alerts=(bad,)))


def test_the_page_heads_with_the_case_and_a_signed_one_says_what_review_changed(tmp_path):
    cells = cells_of(("myeloblast", ""))
    review = {"reviewed": 5, "reclassified": 2, "added": 1, "rejected": 1, "unidentified": 0,
              "changes": [{"from": "myelocyte", "to": "metamyelocyte", "cells": 2}]}  # fmt: skip
    about = About(model="m.onnx", cell_radius=25.0, case="BM-26-0117", stain="MGG",
                  operator="Zoë", signed_by="Sam", reviewed_by=["Bea"], review=review)  # fmt: skip
    write_report(tmp_path, cells, [], VOCAB, list(VOCAB.codes), ReportConfig(), about)
    page = (tmp_path / "report.html").read_text()
    for text in ("<th>Case</th><td>BM-26-0117</td>", "<th>Stain</th><td>MGG</td>",
                 "<th>Operator</th><td>Zoë</td>", "marrowdiff 0.1.0",
                 "2 of 5 cells re-classified, 1 missed cell(s) added, 1 rejected",
                 "<td>Myelocyte</td><td>Metamyelocyte</td><td class='n'>2</td>"):  # fmt: skip
        assert text in page, text
    assert "Patient" not in page  # none given: no empty line for it
    assert "Pre-classified by the model" not in page  # signed


def test_a_differential_of_mostly_unsure_cells_says_so_first():
    mostly = cells_of(
        ("myeloblast", "unsure"),
        ("myeloblast", "unsure"),
        ("pronormoblast", "unsure"),
        ("pronormoblast", ""),
        ("band_neutrophil", ""),
        ("band_neutrophil", "border"),  # not in the differential: 3 of 5 unsure
    )
    warnings = summarise(mostly, VOCAB, ReportConfig())["warnings"]
    assert warnings[0].startswith("the model is unsure of most cells (3 of 5, 60%)")
    half = cells_of(("myeloblast", "unsure"), ("pronormoblast", ""))  # 1 of 2: not most
    assert not any("most cells" in w for w in summarise(half, VOCAB, ReportConfig())["warnings"])


MARROW = load_vocabulary("marrow14")
CELL_CLASSES = [c for c in MARROW.fine_codes if MARROW.counted(c)]
NONCELLS = ["platelet", "red_cell", "cell_part", "artefact"]


def test_objects_that_are_not_cells_are_set_aside_by_reason_never_counted():
    cells = cells_of(
        ("myeloblast", ""),
        ("myelocyte", "unsure"),
        ("red_cell", ""),
        ("red_cell", "unsure"),  # unsure, but its top class is not a cell: set aside too
        ("artefact", ""),
        ("red_cell", "border"),  # cut by the border: flagged, not set aside
    )
    s = summarise(cells, MARROW, ReportConfig(target=2), classes=CELL_CLASSES + NONCELLS)
    assert s["not_counted"] == {"red_cell": 2, "artefact": 1}
    assert s["n_counted"] == 1 and s["estimate"]["n_cells"] == 2  # myeloblast, myelocyte
    assert "red_cell" not in {r["code"] for r in s["estimate"]["classes"]}
    said = [w for w in s["warnings"] if "set aside" in w]
    assert said == [
        "3 object(s) set aside as not nucleated cells, never counted: 2 red cell or overlap, "
        "1 debris or artefact"
    ]
    assert not any("no outcome" in w for w in s["warnings"])  # this model has them all


def test_a_model_without_outcomes_for_non_cells_says_so():
    cells = cells_of(("myeloblast", ""))
    without = summarise(cells, MARROW, ReportConfig(target=1), classes=CELL_CLASSES)
    assert any(
        "this model has no outcome for objects that are not nucleated cells" in w
        for w in without["warnings"]
    )
    some = summarise(cells, MARROW, ReportConfig(target=1), classes=CELL_CLASSES + ["platelet"])
    assert any(
        "no outcome for red cell or overlap, smudge, broken cell or part of a cell, debris or "
        "artefact" in w
        for w in some["warnings"]
    )
    # The archive's vocabulary names no such outcome: its model cannot set anything aside.
    archive = summarise(cells, VOCAB, ReportConfig(target=1), classes=list(VOCAB.fine_codes))
    assert any("no outcome for objects that are not" in w for w in archive["warnings"])


@pytest.mark.parametrize(
    "spec, why",
    [
        ((), "none was found"),
        ((("red_cell", ""), ("red_cell", ""), ("artefact", "")), "all 3 object(s) found were"),
    ],
)
def test_a_field_with_no_nucleated_cell_gives_an_empty_differential_that_says_why(spec, why):
    s = summarise(cells_of(*spec), MARROW, ReportConfig(), ["empty.png"], classes=NONCELLS)
    assert s["n_counted"] == 0 and s["estimate"]["n_cells"] == 0
    assert s["warnings"][0].startswith("no nucleated cell was counted") and why in s["warnings"][0]
    assert all(r["expected"] in (0, None) for r in s["estimate"]["classes"])


def test_the_report_page_shows_the_set_aside_objects_apart(tmp_path):
    rng = np.random.default_rng(0)
    cells = cells_of(("myeloblast", ""), ("red_cell", ""), ("platelet", ""))
    for c in cells:
        c.thumbnail = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        c.proba = np.full(len(MARROW.fine_codes), 1 / len(MARROW.fine_codes))
    field = FieldImage("f.png", 100, 100, np.zeros((10, 10, 3), np.uint8), 0.1)
    write_report(tmp_path, cells, [field], MARROW, list(MARROW.fine_codes), ReportConfig(),
                 About(model="m", cell_radius=50))  # fmt: skip
    page = (tmp_path / "report.html").read_text()
    aside = page.index("Set aside as not nucleated cells (2)")
    assert page.index("Red cell or overlap (1)") > aside
    assert page.index("Platelet (1)") > aside
    assert page.index("Cells by class") > page.index("Red cell or overlap (1)")
    assert page.count("Myeloblast (1)") == 1  # the counted cell, under its class only


def test_an_object_is_first_a_cell_or_not_by_summed_probability_then_its_class():
    from marrowdiff.inference.predict import top_classes

    def top_class(p, counted):
        return int(top_classes(p[None, :], counted)[0])

    def counted_mask(vocabulary, classes):
        return np.array([vocabulary.counted(c) for c in classes])

    classes = ["myeloblast", "promyelocyte", "myelocyte", "red_cell", "platelet"]
    counted = counted_mask(MARROW, classes)
    assert counted.tolist() == [True, True, True, False, False]
    # 0.3 on a red cell, 0.7 spread over three stages: a cell, of its likeliest stage
    assert top_class(np.array([0.2, 0.26, 0.24, 0.3, 0.0]), counted) == 1
    # 0.55 over the two outcomes that are not counted: set aside, as its likelier one
    assert top_class(np.array([0.45, 0.0, 0.0, 0.25, 0.3]), counted) == 4
    assert top_class(np.array([0.5, 0.0, 0.0, 0.5, 0.0]), counted) == 0  # a tie: a cell
    every = counted_mask(VOCAB, list(VOCAB.fine_codes))  # the archive's: argmax
    p = np.random.default_rng(0).dirichlet(np.ones(10))
    assert every.all() and top_class(p, every) == int(p.argmax())
